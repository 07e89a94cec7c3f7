/**
 * The udp backend end to end: hosts in namespaces on one underlay, a real etcd,
 * containers on each host's bridge, traffic through TUN devices and UDP.
 */
import assert from "node:assert/strict";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost } from "./lab.ts";

const FIXTURE = new URL("./fixtures/send_datagrams.ts", import.meta.url).pathname;

async function counters(lab: Lab, host: LabHost): Promise<Record<string, number>> {
  const result = await lab.overlay(host.ns, [
    "status",
    "--json",
    `--subnet-file=${host.subnetFile}`,
    `--state-dir=${host.stateDir}`,
  ]);
  return JSON.parse(result.stdout).state?.counters ?? {};
}

async function subnetOf(host: LabHost): Promise<string> {
  const text = await Deno.readTextFile(host.subnetFile);
  return /FLANNEL_SUBNET=(\S+)/.exec(text)![1].replace(".1/", ".0/");
}

/** Pings with retries until one succeeds; returns ms until success, or undefined. */
async function reachableWithin(
  lab: Lab,
  from: LabContainer | LabHost,
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
  name: "udp backend end to end",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const hosts = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
    for (const host of hosts) lab.startAgent(host);
    for (const host of hosts) await lab.waitReady(host);
    const containers: LabContainer[] = [];
    for (const host of hosts) {
      containers.push(await lab.addContainer(host), await lab.addContainer(host));
    }

    await t.step(
      "three hosts: every container reaches every container on the other hosts",
      async () => {
        const pairs = containers.flatMap((from) =>
          containers.filter((to) => to.host !== from.host).map((to) => [from, to] as const)
        );
        const results = await Promise.all(
          pairs.map(async ([from, to]) =>
            [from.name, to.name, await lab.ping(from, to.ip, { count: 2 })] as const
          ),
        );
        const failed = results.filter(([, , rtt]) => rtt === undefined).map(([a, b]) =>
          `${a}→${b}`
        );
        assert.deepEqual(failed, []);
        assert.equal(results.length, 24);
      },
    );

    await t.step(
      "the device has flannel's MTU, and a DF ping at the full overlay MTU passes while one byte more fails",
      async () => {
        const link = await lab.exec(hosts[0].ns, ["ip", "-o", "link", "show", "overlay0"]);
        assert.match(link.stdout, / mtu 1472 /);
        const address = await lab.exec(hosts[0].ns, ["ip", "-o", "-4", "addr", "show", "overlay0"]);
        assert.match(
          address.stdout,
          new RegExp(`inet ${(await subnetOf(hosts[0])).replace("/24", "")}/32 `),
        );
        const route = await lab.exec(hosts[0].ns, ["ip", "route", "show", "10.10.0.0/16"]);
        assert.match(route.stdout, /^10\.10\.0\.0\/16 dev overlay0/);
        const [a, b] = [containers[0], containers[2]];
        assert.notEqual(
          await lab.ping(a, b.ip, { size: 1472 - 28, dontFragment: true }),
          undefined,
        );
        assert.equal(
          await lab.ping(a, b.ip, { size: 1472 - 28 + 1, dontFragment: true }),
          undefined,
        );
      },
    );

    await t.step(
      "a fourth host that joins is reachable from every container within 1 s",
      async () => {
        const h4 = await lab.addHost();
        hosts.push(h4);
        lab.startAgent(h4);
        await lab.waitReady(h4);
        const joined = performance.now();
        await Promise.all(
          hosts.slice(0, 3).map((host) =>
            waitFor(async () => (await lab.health(host)).stdout.includes("peers:3"), {
              timeoutMs: 1000,
              intervalMs: 20,
              what: `${host.name} learns h4`,
            })
          ),
        );
        const learnedMs = performance.now() - joined;
        const c4 = await lab.addContainer(h4);
        const times = await Promise.all(
          containers.map((from) => reachableWithin(lab, from, c4.ip, 1000)),
        );
        assert.ok(
          times.every((ms) => ms !== undefined),
          `unreached: ${
            times.map((ms, i) => ms === undefined ? containers[i].name : "").filter(Boolean)
          }`,
        );
        containers.push(c4);
        console.log(
          `peers learned h4 in ${learnedMs.toFixed(0)} ms; first pings answered in ≤ ${
            Math.max(...times as number[]).toFixed(0)
          } ms`,
        );
      },
    );

    await t.step(
      "a host that leaves stops being routed to: peers answer net-unreachable",
      async () => {
        const h4 = hosts[3];
        const c4 = containers[containers.length - 1];
        const subnet = await subnetOf(h4);
        await lab.agent(h4)!.stop();
        await lab.etcdctl("del", `/coreos.com/network/subnets/${subnet.replace("/", "-")}`);
        await Promise.all(
          hosts.slice(0, 3).map((host) =>
            waitFor(async () => (await lab.health(host)).stdout.includes("peers:2"), {
              timeoutMs: 2000,
              what: `${host.name} forgets h4`,
            })
          ),
        );
        const ping = await lab.exec(containers[0].ns, ["ping", "-n", "-c", "1", "-W", "1", c4.ip]);
        assert.notEqual(ping.code, 0);
        assert.match(ping.stdout, /Destination Net Unreachable/);
        await waitFor(async () => (await counters(lab, hosts[0])).drop_no_route >= 1, {
          what: "drop_no_route counted",
        });
      },
    );

    await t.step("an agent that restarts keeps its subnet and traffic resumes", async () => {
      const h2 = hosts[1];
      const before = await subnetOf(h2);
      assert.equal(await lab.agent(h2)!.stop(), 0);
      lab.startAgent(h2);
      await lab.waitReady(h2);
      assert.equal(await subnetOf(h2), before);
      const ms = await reachableWithin(lab, containers[0], containers[2].ip, 3000);
      assert.notEqual(ms, undefined, "traffic did not resume");
    });

    await t.step("two hosts started at the same instant both learn each other", async () => {
      const [h5, h6] = [await lab.addHost(), await lab.addHost()];
      lab.startAgent(h5);
      lab.startAgent(h6);
      await Promise.all([lab.waitReady(h5), lab.waitReady(h6)]);
      const tunAddress = async (host: LabHost) => (await subnetOf(host)).replace("/24", "");
      for (const [from, to] of [[h5, h6], [h6, h5]]) {
        await waitFor(async () => (await lab.health(from)).stdout.includes("peers:4"), {
          timeoutMs: 2000,
          what: `${from.name} sees 4 peers`,
        });
        assert.notEqual(
          await reachableWithin(lab, from, await tunAddress(to), 2000),
          undefined,
          `${from.name} cannot reach ${to.name}`,
        );
      }
    });

    await t.step(
      "spoofed, malformed and foreign datagrams are dropped and counted, and traffic goes on",
      async () => {
        const [h1, h2, h3] = hosts;
        const before = await counters(lab, h1);
        const rogue = await lab.addHost(); // on the underlay, but holds no lease
        const own = (await subnetOf(h1)).replace("0/24", "2");
        const send = (from: LabHost, spec: Record<string, unknown>) =>
          lab.exec(from.ns, [
            "deno",
            "run",
            "-A",
            FIXTURE,
            JSON.stringify({ to: h1.ip, port: 8285, ...spec }),
          ]);
        const h3Address = (await subnetOf(h3)).replace("0/24", "2");
        await send(rogue, { kind: "ipv4", count: 50, src: h3Address, dst: own });
        await send(h2, { kind: "ipv4", count: 40, src: h3Address, dst: own });
        await send(h2, { kind: "random", count: 30 });
        await send(h2, {
          kind: "truncated",
          count: 20,
          src: (await subnetOf(h2)).replace("0/24", "2"),
          dst: own,
        });
        const after = await waitFor(async () => {
          const now = await counters(lab, h1);
          const delta = (name: string) => (now[name] ?? 0) - (before[name] ?? 0);
          return delta("drop_unknown_peer") >= 50 && delta("drop_spoofed_source") >= 40 &&
              delta("drop_malformed") + delta("drop_spoofed_source") >= 90
            ? now
            : undefined;
        }, { timeoutMs: 6000, what: "drop counters" });
        assert.equal(after.drop_unknown_peer - (before.drop_unknown_peer ?? 0), 50);
        // Random bytes from a peer are malformed, unless by chance they parse as IPv4 with
        // a foreign source; truncated ones are always malformed.
        assert.equal(
          after.drop_malformed - (before.drop_malformed ?? 0) + after.drop_spoofed_source -
            (before.drop_spoofed_source ?? 0),
          90,
        );
        assert.notEqual(await lab.ping(containers[0], containers[2].ip), undefined);
        assert.equal((await lab.health(h1)).code, 0);
      },
    );
  },
});
