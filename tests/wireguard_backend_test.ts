/**
 * The wireguard backend end to end on the userspace path (this kernel has no WireGuard
 * module): three hosts in namespaces on one underlay, a real etcd, a container per host.
 * Containers reach each other; the underlay carries only WireGuard messages; a restart
 * keeps the key; hostile datagrams are dropped and counted.
 */
import assert from "node:assert/strict";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost } from "../lab/lab.ts";
import { checkWireguardCapture } from "../lab/pcap.ts";

const SEND_DATAGRAMS = new URL("./fixtures/send_datagrams.ts", import.meta.url).pathname;
const CONFIG = { Network: "10.10.0.0/16", Backend: { Type: "wireguard" } };
const PORT = 51820;
/** ping -p fills the payload with this pattern: it must never show on the underlay. */
const PATTERN = "c0ffee5eed";

async function lease(lab: Lab, host: LabHost): Promise<Record<string, unknown>> {
  const subnet = (await lab.subnetOf(host)).replace("/", "-");
  const result = await lab.etcdctl(
    "get",
    `/coreos.com/network/subnets/${subnet}`,
    "--print-value-only",
  );
  return JSON.parse(result.stdout);
}

async function reachableWithin(
  lab: Lab,
  from: LabContainer,
  to: string,
  ms: number,
): Promise<number | undefined> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (await lab.ping(from, to, { timeoutS: 0.2 }) !== undefined) {
      return performance.now() - started;
    }
  }
  return undefined;
}

Deno.test({
  name: "wireguard backend end to end on the userspace path",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create({ prefix: "wg" });
    await lab.setConfig(CONFIG);
    const hosts = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
    for (const host of hosts) lab.startAgent(host, ["--healthz-port=18081"]);
    for (const host of hosts) await lab.waitReady(host);
    const containers: LabContainer[] = [];
    for (const host of hosts) containers.push(await lab.addContainer(host));

    await t.step("three hosts: every container reaches the containers on the others", async () => {
      const pairs = containers.flatMap((from) =>
        containers.filter((to) => to !== from).map((to) => [from, to] as const)
      );
      const results = await Promise.all(
        pairs.map(async ([from, to]) =>
          [`${from.name}→${to.name}`, await reachableWithin(lab, from, to.ip, 10_000)] as const
        ),
      );
      assert.deepEqual(results.filter(([, ms]) => ms === undefined).map(([pair]) => pair), []);
    });

    await t.step("flannel's device, address, route, MTU and lease", async () => {
      const host = hosts[0];
      const subnet = await lab.subnetOf(host);
      const link = (await lab.exec(host.ns, ["ip", "-d", "link", "show", "flannel-wg"])).stdout;
      assert.match(link, /mtu 1420 /);
      assert.match(link, /\btun\b/);
      const address = (await lab.exec(host.ns, ["ip", "-4", "addr", "show", "flannel-wg"])).stdout;
      assert.match(address, new RegExp(`inet ${subnet.replace(".0/24", ".0")}/32`));
      const route = (await lab.exec(host.ns, ["ip", "route", "show", "10.10.0.0/16"])).stdout;
      assert.match(route, /10\.10\.0\.0\/16 dev flannel-wg/);
      assert.match(await Deno.readTextFile(host.subnetFile), /FLANNEL_MTU=1420\n/);
      const value = await lease(lab, host);
      assert.equal(value.BackendType, "wireguard");
      const data = value.BackendData as { PublicKey: string; Port: number };
      assert.equal(data.Port, PORT);
      // The key file: mode 0600, and `wg pubkey` derives the lease's PublicKey from it.
      const keyFile = `${host.stateDir}/wgkey`;
      assert.equal((await Deno.stat(keyFile)).mode! & 0o777, 0o600);
      const derived = await lab.sh(host.ns, `wg pubkey < ${keyFile}`);
      assert.equal(derived.stdout.trim(), data.PublicKey);
    });

    await t.step("status, log and /metrics say the data path is userspace wireguard", async () => {
      const status = await lab.status(hosts[0]);
      assert.match(status.state!.dataPath!, /^userspace wireguard/);
      assert.equal(status.state!.backend, "wireguard");
      const peers = status.state!.peerList!;
      assert.equal(peers.length, 2);
      await waitFor(async () => {
        const list = (await lab.status(hosts[0])).state!.peerList!;
        return list.every((peer) => (peer.lastHeard ?? 0) > 0);
      }, { what: "every peer heard from" });
      assert.match(
        lab.agent(hosts[0])!.log(),
        /kernel module not present; encrypting in the agent \(userspace WireGuard\)/,
      );
      const metrics = await lab.metrics(hosts[0], 18081);
      assert.match(
        metrics,
        /overlay_data_path_info\{backend="wireguard",mode="userspace wireguard/,
      );
      assert.match(metrics, /overlay_wireguard_events_total\{event="handshakes_completed"\} [1-9]/);
      const text = await lab.overlay(hosts[0].ns, ["status", ...lab.hostFlags(hosts[0])]);
      assert.match(text.stdout, /data path\s+userspace wireguard/);
      assert.match(text.stdout, /HANDSHAKE/);
    });

    await t.step("the underlay carries only WireGuard messages, no inner packet", async () => {
      const file = await Deno.makeTempFile({ suffix: ".pcap" });
      const capture = await lab.capture(lab.underlayNs, [
        "-i",
        "sw",
        "-n",
        "-U",
        "-s",
        "0",
        "-w",
        file,
        "not tcp port 2379",
      ]);
      for (const [from, to] of [[0, 1], [1, 2], [2, 0]]) {
        const args = ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-s", "200", "-p", PATTERN];
        const result = await lab.exec(containers[from].ns, [...args, containers[to].ip]);
        assert.equal(result.code, 0, result.stdout + result.stderr);
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      await capture.stop("SIGINT");
      const bytes = await Deno.readFile(file);
      await Deno.remove(file);
      const needle = Uint8Array.from(PATTERN.match(/../g)!, (h) => parseInt(h, 16));
      const check = checkWireguardCapture(bytes, PORT, new Uint8Array([...needle, ...needle]), {
        ip: 0x0a0a0000,
        prefixLen: 16,
      });
      // 9 echoes and 9 replies when nothing is lost; a busy machine may lose a few, and what
      // is checked is that whatever crossed was WireGuard.
      assert.ok((check.byType[4] ?? 0) >= 6, JSON.stringify(check));
      assert.equal(check.notWireguard, 0, JSON.stringify(check));
      assert.equal(check.withNeedle, 0, JSON.stringify(check));
      assert.equal(check.innerOnWire, 0, JSON.stringify(check));
    });

    await t.step(
      "hostile datagrams to the port are dropped and counted; the agent stays ready",
      async () => {
        const target = hosts[0];
        const before = await lab.counters(target);
        for (const kind of ["random", "truncated"]) {
          const spec = { to: target.ip, port: PORT, kind, count: 300 };
          const sent = await lab.exec(lab.underlayNs, [
            "deno",
            "run",
            "--allow-all",
            SEND_DATAGRAMS,
            JSON.stringify(spec),
          ]);
          assert.equal(sent.code, 0, sent.stderr);
        }
        // Forged: a data message naming a receiver index no session has, and a bogus
        // initiation of the right size whose MAC cannot check out.
        const forged = [
          "04000000" + "deadbeef" + "0000000000000000" + "00".repeat(32),
          "01000000" + "11".repeat(144),
          "02000000" + "22".repeat(88),
          "03000000" + "33".repeat(60),
        ];
        const spec = { to: target.ip, port: PORT, kind: "hex", count: 50, payloads: forged };
        const sent = await lab.exec(lab.underlayNs, [
          "deno",
          "run",
          "--allow-all",
          SEND_DATAGRAMS,
          JSON.stringify(spec),
        ]);
        assert.equal(sent.code, 0, sent.stderr);
        await waitFor(async () => {
          const after = await lab.counters(target);
          const dropped = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
          return dropped("drop_malformed") >= 300 && dropped("drop_unknown_index") >= 100 &&
            dropped("drop_bad_mac") >= 50;
        }, { what: "hostile datagrams counted", timeoutMs: 10_000 });
        assert.equal((await lab.health(target)).code, 0);
        assert.notEqual(await lab.ping(containers[1], containers[0].ip, { count: 2 }), undefined);
      },
    );

    await t.step("a restart keeps the key, and traffic resumes within one handshake", async () => {
      const host = hosts[1];
      const keyBefore = (await lease(lab, host)).BackendData;
      const agent = lab.agent(host)!;
      assert.equal(await agent.stop(), 0);
      lab.startAgent(host, ["--healthz-port=18081"]);
      await lab.waitReady(host);
      assert.deepEqual((await lease(lab, host)).BackendData, keyBefore);
      // The peers still hold the old sessions; ours are gone: the first packet starts a
      // handshake (one round trip), and it answers. WireGuard's REKEY_TIMEOUT is 5 s.
      const ms = await reachableWithin(lab, containers[0], containers[1].ip, 5_000);
      assert.notEqual(ms, undefined, "no answer within 5 s of the restart");
      const back = await reachableWithin(lab, containers[1], containers[2].ip, 5_000);
      assert.notEqual(back, undefined);
      console.log(`  first answer after the restart in ${ms!.toFixed(0)} ms`);
    });

    await t.step("the Network route deleted by hand comes back within 10 s", async () => {
      const h1 = hosts[0];
      await lab.sh(h1.ns, "ip route del 10.10.0.0/16 dev flannel-wg");
      await waitFor(
        async () =>
          (await lab.exec(h1.ns, ["ip", "route", "show", "10.10.0.0/16"])).stdout.includes(
            "dev flannel-wg",
          ),
        { timeoutMs: 10_000, what: "route restored" },
      );
      assert.notEqual(
        await reachableWithin(lab, containers[0], containers[2].ip, 5_000),
        undefined,
      );
    });

    await t.step("overlay cleanup removes the device and the key file", async () => {
      const host = hosts[2];
      assert.equal(await lab.agent(host)!.stop(), 0);
      // SIGTERM keeps both: a restart keeps the key.
      await Deno.stat(`${host.stateDir}/wgkey`);
      assert.equal((await lab.exec(host.ns, ["ip", "link", "show", "flannel-wg"])).code, 0);
      const result = await lab.overlay(host.ns, [
        "cleanup",
        ...lab.hostFlags(host),
        `--etcd-endpoints=${lab.etcdEndpoint}`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.notEqual((await lab.exec(host.ns, ["ip", "link", "show", "flannel-wg"])).code, 0);
      await assert.rejects(Deno.stat(`${host.stateDir}/wgkey`), Deno.errors.NotFound);
      assert.equal(
        (await lab.exec(host.ns, ["ip", "route", "show", "10.10.0.0/16"])).stdout.trim(),
        "",
      );
    });
  },
});
