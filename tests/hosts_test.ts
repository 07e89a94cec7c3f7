/**
 * Hosts as they come: the lab prepares nothing an agent should make or check itself
 * (a fresh namespace forwards nothing), hosts boot before etcd or before the config,
 * etcd holds hostile or mistaken leases, and other people's routes sit where the agent
 * wants one of its own.
 */
import assert from "node:assert/strict";
import { INTEGRATION, overlayArgv, waitFor } from "./helpers.ts";
import { Lab, type LabHost, UNDERLAY_PREFIX } from "../lab/lab.ts";

const PREFIX = "/coreos.com/network";

async function forwarding(lab: Lab, host: LabHost): Promise<string> {
  return (await lab.exec(host.ns, ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim();
}

/** Polls `--health` until it matches; returns the line. */
async function healthSays(lab: Lab, host: LabHost, pattern: RegExp, timeoutMs = 15_000) {
  return await waitFor(async () => {
    const { stdout } = await lab.health(host);
    return pattern.test(stdout) ? stdout : undefined;
  }, { timeoutMs, intervalMs: 50, what: `${host.name} health to match ${pattern}` });
}

/** Milliseconds from `since` until the host is ready (polling every 50 ms). */
async function readyAfter(lab: Lab, host: LabHost, since: number): Promise<number> {
  await healthSays(lab, host, /^ready /, 20_000);
  return Date.now() - since;
}

Deno.test({
  name:
    "IPv4 forwarding: run turns it on and says so; turned off later, --health and status say not-ready ip-forwarding-disabled",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    assert.equal(await forwarding(lab, h1), "0", "a fresh host forwards nothing");
    lab.startAgent(h1);
    lab.startAgent(h2);
    await lab.waitReady(h1);
    await lab.waitReady(h2);
    assert.equal(await forwarding(lab, h1), "1");
    const said = lab.agent(h1)!.log().split("\n").filter((l) => l.includes("turned on IPv4"));
    assert.equal(said.length, 1, lab.agent(h1)!.log());
    const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
    assert.notEqual(await lab.ping(c2, c1.ip, { count: 2 }), undefined);

    await lab.sh(h1.ns, "echo 0 > /proc/sys/net/ipv4/ip_forward"); // an administrator's doing
    const health = await lab.health(h1);
    assert.equal(health.code, 1);
    assert.match(
      health.stdout,
      /^not-ready ip-forwarding-disabled \(net\.ipv4\.ip_forward is 0: .*sysctl -w net\.ipv4\.ip_forward=1\)\n$/,
    );
    const status = await lab.status(h1);
    assert.match(status.health, /^not-ready ip-forwarding-disabled/);
    assert.equal(await lab.ping(c2, c1.ip), undefined, "health told the truth");
    await waitFor(() => /IPv4 forwarding was turned off/.test(lab.agent(h1)!.log()), {
      what: "the agent to notice",
    });

    await lab.sh(h1.ns, "echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert.equal((await lab.health(h1)).code, 0);
    assert.equal(await lab.agent(h1)!.stop(), 0);
    const cleanup = await lab.overlay(h1.ns, ["cleanup", ...lab.agentFlags(h1)]);
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.equal(await forwarding(lab, h1), "1", "stop and cleanup leave forwarding on");
  },
});

Deno.test({
  name:
    "boot order: started before the config, with an invalid config, before etcd: each comes up by itself within 2 s of the fix",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create();
    const host = await lab.addHost();
    const config = { Network: "10.10.0.0/16", Backend: { Type: "udp" } };
    const wait = () =>
      lab.spawn(host.ns, [
        ...overlayArgv(),
        "wait",
        "--timeout=60s",
        `--subnet-file=${host.subnetFile}`,
        `--state-dir=${host.stateDir}`,
      ]);

    await t.step("before the config: waits, then comes up when it is written", async () => {
      lab.startAgent(host);
      const line = await healthSays(lab, host, /^not-ready (waiting|invalid)/);
      assert.equal(line, "not-ready waiting-for-config\n");
      const waiting = wait();
      await new Promise((resolve) => setTimeout(resolve, 3_000)); // several retries
      const fixed = Date.now();
      await lab.etcdctl("put", `${PREFIX}/config`, JSON.stringify(config));
      const ms = await readyAfter(lab, host, fixed);
      console.log(`boot: ready ${ms} ms after the config was written`);
      assert.ok(ms < 2_000, `ready ${ms} ms after the config was written`);
      assert.equal(await waiting.child.status.then((s) => s.code), 0, "wait kept waiting");
      const log = lab.agent(host)!.log();
      assert.equal(log.split("\n").filter((l) => l.includes("waiting-for-config")).length, 1, log);
    });

    await t.step("an invalid config: says what is wrong, comes up when it is fixed", async () => {
      assert.equal(await lab.agent(host)!.stop(), 0);
      await lab.etcdctl("put", `${PREFIX}/config`, `{"Network":"10.10.0.0/16","SubnetLen":31}`);
      lab.startAgent(host);
      const line = await healthSays(lab, host, /^not-ready (waiting|invalid)/);
      assert.match(
        line,
        /^not-ready invalid-config: "SubnetLen" 31 is out of range for 10\.10\.0\.0\/16/,
      );
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const fixed = Date.now();
      await lab.etcdctl("put", `${PREFIX}/config`, JSON.stringify(config));
      const ms = await readyAfter(lab, host, fixed);
      console.log(`boot: ready ${ms} ms after the config was fixed`);
      assert.ok(ms < 2_000, `ready ${ms} ms after the fix`);
    });

    await t.step("before etcd: waits, then comes up when etcd is back", async () => {
      assert.equal(await lab.agent(host)!.stop(), 0);
      await lab.stopEtcdMember(0);
      lab.startAgent(host);
      const line = await healthSays(lab, host, /^not-ready (waiting|invalid)/);
      assert.match(
        line,
        new RegExp(
          `^not-ready waiting-for-etcd: etcd at http://${UNDERLAY_PREFIX}\\.1:2379: connection refused`,
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      lab.startEtcdMember(0);
      await waitFor(async () => (await lab.etcdctl("endpoint", "health")).code === 0, {
        intervalMs: 20,
        what: "etcd back",
      });
      const fixed = Date.now();
      const ms = await readyAfter(lab, host, fixed);
      console.log(`boot: ready ${ms} ms after etcd answered`);
      assert.ok(ms < 2_000, `ready ${ms} ms after etcd answered`);
      const log = lab.agent(host)!.log();
      assert.equal(log.split("\n").filter((l) => l.includes("waiting-for-etcd")).length, 1, log);
    });
  },
});

/** What an operator would diff on a host: routes, addresses, permanent entries, rules. */
async function hostState(lab: Lab, host: LabHost, device?: string) {
  const run = async (...argv: string[]) => (await lab.exec(host.ns, argv)).stdout;
  return {
    routes: await run("ip", "-4", "route", "show", "table", "all"),
    addresses: await run("ip", "-4", "-o", "addr"),
    neighbours: await run("ip", "neigh", "show", "nud", "permanent"),
    fdb: device ? await run("bridge", "fdb", "show", "dev", device) : "",
    rules: (await run("iptables-save")).replace(/^#.*\n/gm, "").replace(/\[\d+:\d+\]/g, ""),
  };
}

/** A lab whose hosts lease below 10.10.100.0, leaving the rest for a test's own entries. */
async function labWithRoomAbove(backend: string): Promise<Lab> {
  const lab = await Lab.create();
  try {
    await lab.setConfig({
      Network: "10.10.0.0/16",
      SubnetMax: "10.10.99.0",
      Backend: { Type: backend },
    });
  } catch (error) {
    await lab[Symbol.asyncDispose]();
    throw error;
  }
  return lab;
}

for (const backend of ["host-gw", "vxlan"] as const) {
  Deno.test({
    name:
      `${backend}: hostile and mistaken leases are skipped with a warning and a count, and change nothing on the host`,
    ...INTEGRATION,
    async fn() {
      await using lab = await labWithRoomAbove(backend); // the hostile keys sit above
      const [h1, h2] = await lab.readyHosts(2, [
        ["--healthz-ip=127.0.0.1", "--healthz-port=9913"],
        [],
      ]);
      const device = backend === "vxlan" ? "flannel.1" : undefined;
      const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
      const h2Lease = JSON.parse(
        (await lab.etcdctl(
          "get",
          `${PREFIX}/subnets/${(await lab.subnetOf(h2)).replace("/", "-")}`,
          "--print-value-only",
        )).stdout,
      );
      const value = (publicIp: string, data: Record<string, unknown> = {}) =>
        JSON.stringify({
          PublicIP: publicIp,
          PublicIPv6: null,
          BackendType: backend,
          ...(backend === "vxlan" ? { BackendData: { VNI: 1, VtepMAC: "02:42:00:00:00:99" } } : {}),
          ...data,
        });
      const vxlanData = (mac: unknown) => ({ BackendData: { VNI: 1, VtepMAC: mac } });
      const hostile: [string, string, string][] = [
        ["172.31.254.0-24", value("172.31.254.99"), "outside_network"], // the underlay itself
        ["192.0.2.0-24", value("172.31.254.99"), "outside_network"],
        ["10.10.0.0-16", value("172.31.254.99"), "outside_network"], // the whole Network
        ["10.10.200.0-25", value("172.31.254.99"), "outside_network"], // nested
        ["10.10.201.0-24", value("127.0.0.1"), "bad_public_ip"],
        ["10.10.202.0-24", value("0.0.0.0"), "bad_public_ip"],
        ["10.10.203.0-24", value("224.0.0.5"), "bad_public_ip"],
        ["10.10.204.0-24", value("255.255.255.255"), "bad_public_ip"],
        ["10.10.205.0-24", value("10.10.1.7"), "bad_public_ip"], // inside the Network
        ["10.10.206.0-24", value(h1.ip), "bad_public_ip"], // this host's own
        ["10.10.207.0-24", "not json at all", "malformed"],
        ["10.10.208.0-24", JSON.stringify({ PublicIP: "172.31.254.99" }), "backend_type"],
      ];
      if (backend === "vxlan") {
        hostile.push(
          ["10.10.209.0-24", value("172.31.254.99", vxlanData("zz:zz")), "bad_backend_data"],
          [
            "10.10.210.0-24",
            value("172.31.254.99", vxlanData("00:00:00:00:00:00")),
            "bad_backend_data",
          ],
          [
            "10.10.211.0-24",
            value("172.31.254.99", vxlanData("01:00:5e:00:00:01")),
            "bad_backend_data",
          ],
          [
            "10.10.212.0-24",
            value("172.31.254.99", vxlanData("ff:ff:ff:ff:ff:ff")),
            "bad_backend_data",
          ],
          ["10.10.213.0-24", value("172.31.254.99", { BackendData: null }), "bad_backend_data"],
          // Another VNI: a host on an earlier config, whose packets our device would drop.
          [
            "10.10.215.0-24",
            value("172.31.254.99", { BackendData: { VNI: 2, VtepMAC: "02:42:00:00:00:98" } }),
            "bad_backend_data",
          ],
          // A copy of h2's VtepMAC with another PublicIP: h2's FDB entry must not move.
          [
            "10.10.214.0-24",
            value("172.31.254.99", vxlanData(h2Lease.BackendData.VtepMAC)),
            "conflict",
          ],
        );
      }
      const before = await hostState(lab, h1, device);
      for (const [key, text] of hostile) await lab.etcdctl("put", `${PREFIX}/subnets/${key}`, text);
      const unwarned = () =>
        hostile.map(([key]) => key).filter((key) =>
          !lab.agent(h1)!.log().includes(`key=${PREFIX}/subnets/${key} `)
        );
      await waitFor(() => unwarned().length === 0, {
        what: "a warning for every hostile lease",
      }).catch((error) => {
        throw new Error(`${error.message}: none for ${unwarned()}\n${lab.agent(h1)!.log()}`);
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.deepEqual(await hostState(lab, h1, device), before, "the host is unchanged");
      const log = lab.agent(h1)!.log();
      for (const [key] of hostile) {
        const lines = log.split("\n").filter((l) => l.includes(`key=${PREFIX}/subnets/${key} `));
        assert.equal(lines.length, 1, `one warning for ${key}:\n${lines.join("\n")}`);
      }
      const metrics = await lab.metrics(h1, 9913);
      const expected = new Map<string, number>();
      for (const [, , reason] of hostile) expected.set(reason, (expected.get(reason) ?? 0) + 1);
      for (const [reason, count] of expected) {
        assert.match(
          metrics,
          new RegExp(`^overlay_leases_skipped_total\\{reason="${reason}"\\} ${count}$`, "m"),
          reason,
        );
      }
      assert.match((await lab.health(h1)).stdout, /^ready .* peers:1/);
      assert.notEqual(await lab.ping(c1, c2.ip, { count: 2 }), undefined);
    },
  });
}

Deno.test({
  name:
    "route ownership: the agent's routes carry its mark; a route someone else made is left alone and reported",
  ...INTEGRATION,
  async fn() {
    await using lab = await labWithRoomAbove("host-gw"); // the hand-made route sits above
    const [h1, h2] = await lab.readyHosts(2, [
      ["--healthz-ip=127.0.0.1", "--healthz-port=9914"],
      [],
    ]);
    const route = async (subnet: string) =>
      (await lab.exec(h1.ns, ["ip", "route", "show", subnet])).stdout.trim();
    const h2Subnet = await lab.subnetOf(h2);
    await waitFor(async () => (await route(h2Subnet)) !== "", { what: "route to h2" });
    assert.equal(await route(h2Subnet), `${h2Subnet} via ${h2.ip} dev eth0 proto 111`);

    // An administrator's route to a subnet that a peer then leases.
    await lab.ip(
      h1.ns,
      "route",
      "add",
      "10.10.220.0/24",
      "via",
      `${UNDERLAY_PREFIX}.98`,
      "dev",
      "eth0",
    );
    const theirs = await route("10.10.220.0/24");
    await lab.etcdctl(
      "put",
      `${PREFIX}/subnets/10.10.220.0-24`,
      `{"PublicIP":"${UNDERLAY_PREFIX}.99","PublicIPv6":null,"BackendType":"host-gw"}`,
    );
    const status = async () => (await lab.status(h1)).state!;
    await waitFor(async () => (await status()).conflicts?.length === 1, {
      timeoutMs: 8_000,
      what: "the conflict in status",
    });
    assert.match(
      (await status()).conflicts?.[0] ?? "",
      /^route 10\.10\.220\.0\/24 \(held by: 10\.10\.220\.0\/24 via 172\.31\.254\.98 dev eth0 proto 3\)$/,
    );
    assert.match(await lab.metrics(h1, 9914), /^overlay_route_conflicts 1$/m);
    assert.match(
      lab.agent(h1)!.log(),
      /route 10\.10\.220\.0\/24 is held by an entry overlay did not make; left alone/,
    );
    await new Promise((resolve) => setTimeout(resolve, 6_000)); // past a reconcile
    assert.equal(await route("10.10.220.0/24"), theirs, "their route is untouched");

    // Once it is gone, the peer gets the agent's own route.
    await lab.ip(h1.ns, "route", "del", "10.10.220.0/24");
    await waitFor(
      async () =>
        (await route("10.10.220.0/24")) ===
          `10.10.220.0/24 via ${UNDERLAY_PREFIX}.99 dev eth0 proto 111`,
      { timeoutMs: 8_000, what: "the agent's route after theirs went" },
    );
    await waitFor(async () => (await status()).conflicts?.length === 0, { what: "no conflict" });

    // Someone replaces one of the agent's routes with their own: it is left alone too.
    await lab.ip(
      h1.ns,
      "route",
      "replace",
      h2Subnet,
      "via",
      `${UNDERLAY_PREFIX}.97`,
      "dev",
      "eth0",
      "proto",
      "static",
    );
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    assert.equal(
      await route(h2Subnet),
      `${h2Subnet} via ${UNDERLAY_PREFIX}.97 dev eth0 proto static`,
    );
    assert.equal((await status()).conflicts?.length, 1);

    // A peer leaving removes the agent's route, never someone else's.
    await lab.etcdctl("del", `${PREFIX}/subnets/10.10.220.0-24`);
    await waitFor(async () => (await route("10.10.220.0/24")) === "", { what: "route removed" });
  },
});

Deno.test({
  name:
    "a Network that holds the host's own address or gateway is refused for that host: it waits, untouched",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "172.31.0.0/16", Backend: { Type: "host-gw" } });
    const host = await lab.addHost();
    const before = await hostState(lab, host);
    lab.startAgent(host);
    const line = await healthSays(lab, host, /^not-ready (waiting|invalid)/);
    assert.match(
      line,
      /^not-ready invalid-config: "Network" 172\.31\.0\.0\/16 contains this host's underlay address 172\.31\.254\.11 /,
    );
    assert.deepEqual(await hostState(lab, host), before, "nothing was made");
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "host-gw" } });
    await healthSays(lab, host, /^ready /);
  },
});

Deno.test({
  name:
    "one VtepMAC per host: hosts whose state folder was cloned pick a new MAC, republish, warn once, and reach each other",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "vxlan" } });
    const h1 = await lab.readyHost();
    const macFile = `${h1.stateDir}/flannel.1.vtep-mac`;
    const original = (await Deno.readTextFile(macFile)).trim();
    // Three more hosts from an image made of h1: the same VtepMAC in their state folders,
    // one started alone, two at the same instant.
    const clones = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
    for (const clone of clones) {
      await Deno.mkdir(clone.stateDir, { recursive: true });
      await Deno.copyFile(macFile, `${clone.stateDir}/flannel.1.vtep-mac`);
    }
    lab.startAgent(clones[0]);
    await lab.waitReady(clones[0]);
    lab.startAgent(clones[1]);
    lab.startAgent(clones[2]);
    await lab.waitReady(clones[1]);
    await lab.waitReady(clones[2]);
    const macs = async () =>
      (await lab.etcdctl("get", "--prefix", `${PREFIX}/subnets/`, "--print-value-only")).stdout
        .split("\n").filter(Boolean).map((v) => JSON.parse(v).BackendData.VtepMAC as string);
    await waitFor(async () => new Set(await macs()).size === 4, {
      timeoutMs: 10_000,
      what: "four distinct VtepMACs",
    });
    assert.ok((await macs()).includes(original), "the oldest lease keeps its MAC");
    for (const clone of clones) {
      const warnings = lab.agent(clone)!.log().split("\n").filter((l) =>
        l.includes("another lease carries this host's VtepMAC")
      );
      assert.ok(warnings.length <= 1, `warned at most once:\n${warnings.join("\n")}`);
    }
    const containers = [];
    for (const host of [h1, ...clones]) containers.push(await lab.addContainer(host));
    for (const from of containers) {
      for (const to of containers) {
        if (from === to) continue;
        await waitFor(async () => (await lab.ping(from, to.ip)) !== undefined, {
          timeoutMs: 8_000,
          what: `${from.name} → ${to.name}`,
        });
      }
    }
  },
});
