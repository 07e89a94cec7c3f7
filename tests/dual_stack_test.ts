/**
 * IPv6 and dual stack end to end, as an operator would check them: hosts in namespaces
 * with IPv4 and IPv6 on their underlay (nothing else prepared: forwarding, routes and
 * devices are the agent's), a real etcd, one container per host on a bridge made from
 * the subnet file as Docker would with --ipv6 --fixed-cidr-v6. For each backend that
 * carries them: a dual-stack network (containers reach each other over both families)
 * and an IPv6-only one; a restart keeps both subnets; a malformed dual-stack key is
 * skipped and counted.
 */
import assert from "node:assert/strict";
import { exitCodeWithin, INTEGRATION, waitFor } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost } from "../lab/lab.ts";

type BackendName = "udp" | "vxlan" | "host-gw";

const DUAL = { Network: "10.10.0.0/16", EnableIPv6: true, IPv6Network: "fd10::/48" };
const V6_ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd10::/48" };

/** Every container pinging every container on another host, at `address` of each. */
async function unreachablePairs(
  lab: Lab,
  containers: LabContainer[],
  address: (c: LabContainer) => string,
): Promise<string[]> {
  const pairs = containers.flatMap((from) =>
    containers.filter((to) => to.host !== from.host).map((to) => [from, to] as const)
  );
  const results = await Promise.all(
    pairs.map(async ([from, to]) => {
      // The first packets may meet a neighbour entry still being resolved: retry a little.
      for (let attempt = 0; attempt < 5; attempt++) {
        if (await lab.ping(from, address(to), { timeoutS: 1 }) !== undefined) return "";
      }
      return `${from.name}→${to.name} (${address(to)})`;
    }),
  );
  return results.filter(Boolean);
}

async function leaseKeyOf(lab: Lab, host: LabHost): Promise<string> {
  const keys = (await lab.etcdctl("get", "/coreos.com/network/subnets/", "--prefix", "--keys-only"))
    .stdout.split("\n").filter(Boolean);
  for (const key of keys) {
    const value = (await lab.etcdctl("get", key, "--print-value-only")).stdout;
    if (value.includes(`"${host.ip6}"`)) return key;
  }
  throw new Error(`no lease with PublicIPv6 ${host.ip6}`);
}

for (const backend of ["udp", "vxlan", "host-gw"] as const satisfies BackendName[]) {
  for (const [family, network] of [["dual-stack", DUAL], ["IPv6-only", V6_ONLY]] as const) {
    if (backend === "udp" && family === "IPv6-only") continue; // refused: see the udp test below
    Deno.test({
      name: `${backend} backend, ${family} network end to end`,
      ...INTEGRATION,
      async fn(t) {
        await using lab = await Lab.create({ prefix: "ds", ipv6: true });
        await lab.setConfig({ ...network, Backend: { Type: backend } });
        const hosts = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
        for (const host of hosts) lab.startAgent(host);
        for (const host of hosts) await lab.waitReady(host);
        const containers: LabContainer[] = [];
        for (const host of hosts) containers.push(await lab.addContainer(host));

        await t.step("the subnet file and the lease carry flannel's IPv6 fields", async () => {
          const text = await Deno.readTextFile(hosts[0].subnetFile);
          assert.match(text, /^FLANNEL_IPV6_NETWORK=fd10::\/48$/m);
          assert.match(text, /^FLANNEL_IPV6_SUBNET=fd10:0:0:[0-9a-f]+::1\/64$/m);
          assert.equal(/^FLANNEL_SUBNET=/m.test(text), family === "dual-stack");
          const key = await leaseKeyOf(lab, hosts[0]);
          assert.match(
            key,
            family === "dual-stack"
              ? /\/subnets\/10\.10\.\d+\.0-24&fd10:0:0:[0-9a-f]+::-64$/
              : /\/subnets\/0\.0\.0\.0-0&fd10:0:0:[0-9a-f]+::-64$/,
          );
          const value = JSON.parse((await lab.etcdctl("get", key, "--print-value-only")).stdout);
          assert.equal(value.PublicIPv6, hosts[0].ip6);
          const health = (await lab.health(hosts[0])).stdout;
          assert.match(health, /subnet6:fd10:0:0:[0-9a-f]+::1\/64/);
        });

        await t.step("every container reaches every other host's over IPv6", async () => {
          assert.deepEqual(await unreachablePairs(lab, containers, (c) => c.ip6!), []);
        });

        if (family === "dual-stack") {
          await t.step("and over IPv4", async () => {
            assert.deepEqual(await unreachablePairs(lab, containers, (c) => c.ip), []);
          });
        }

        await t.step("a restarted agent keeps both subnets, and IPv6 traffic resumes", async () => {
          const h2 = hosts[1];
          const before = await Deno.readTextFile(h2.subnetFile);
          const key = await leaseKeyOf(lab, h2);
          assert.equal(await lab.agent(h2)!.stop(), 0);
          lab.startAgent(h2);
          await lab.waitReady(h2);
          assert.equal(await Deno.readTextFile(h2.subnetFile), before);
          assert.equal(await leaseKeyOf(lab, h2), key);
          assert.deepEqual(
            await unreachablePairs(lab, [containers[0], containers[1]], (c) => c.ip6!),
            [],
          );
        });

        if (backend === "host-gw") {
          await t.step("--ip-masq installs flannel's rules for both families", async () => {
            const h3 = hosts[2];
            assert.equal(await lab.agent(h3)!.stop(), 0);
            lab.startAgent(h3, ["--ip-masq"]);
            await lab.waitReady(h3);
            const subnet6 = (await Deno.readTextFile(h3.subnetFile))
              .match(/^FLANNEL_IPV6_SUBNET=(.*)::1\/64$/m)![1];
            const rules6 = (await lab.exec(h3.ns, ["ip6tables", "-t", "nat", "-S"])).stdout;
            for (
              const rule of [
                /-s fd10::\/48 -d fd10::\/48 .*-j RETURN/,
                /-s fd10::\/48 ! -d ff00::\/8 .*-j MASQUERADE/,
                new RegExp(`! -s fd10::/48 -d ${subnet6}::/64 .*-j RETURN`),
                /! -s fd10::\/48 -d fd10::\/48 .*-j MASQUERADE/,
                /-A POSTROUTING -j OVERLAY-POST-/,
              ]
            ) assert.match(rules6, rule);
            const rules4 = (await lab.exec(h3.ns, ["iptables", "-t", "nat", "-S"])).stdout;
            assert.equal(
              /-s 10\.10\.0\.0\/16 ! -d 224\.0\.0\.0\/4/.test(rules4),
              family === "dual-stack",
            );
            // Containers still reach each other: overlay to overlay is not masqueraded.
            assert.deepEqual(
              await unreachablePairs(lab, [containers[0], containers[2]], (c) => c.ip6!),
              [],
            );
            // cleanup takes both families' rules away.
            assert.equal(await lab.agent(h3)!.stop(), 0);
            await lab.overlay(h3.ns, [
              "cleanup",
              ...lab.hostFlags(h3),
              `--etcd-endpoints=${lab.etcdEndpoint}`,
            ]);
            assert.doesNotMatch(
              (await lab.exec(h3.ns, ["ip6tables", "-t", "nat", "-S"])).stdout,
              /OVERLAY-POST/,
            );
          });
        }

        await t.step(
          "--bridge gets the IPv6 gateway; a container on it reaches the others",
          async () => {
            const h4 = await lab.addHost();
            lab.startAgent(h4, ["--bridge=lxcbr0"]);
            await lab.waitReady(h4);
            const env = await Deno.readTextFile(h4.subnetFile);
            const gateway6 = env.match(/^FLANNEL_IPV6_SUBNET=(.*)$/m)![1];
            const addresses =
              (await lab.exec(h4.ns, ["ip", "-6", "addr", "show", "lxcbr0"])).stdout;
            assert.match(addresses, new RegExp(`inet6 ${gateway6} `));
            const gateway4 = env.match(/^FLANNEL_SUBNET=(.*)$/m)?.[1];
            const addresses4 =
              (await lab.exec(h4.ns, ["ip", "-4", "addr", "show", "lxcbr0"])).stdout;
            assert.equal(addresses4.includes(`inet ${gateway4} `), gateway4 !== undefined);
            const c4 = await lab.addContainer(h4, { bridge: "lxcbr0" });
            assert.deepEqual(await unreachablePairs(lab, [containers[0], c4], (c) => c.ip6!), []);
          },
        );

        await t.step("a malformed dual-stack key is skipped and counted", async () => {
          const bad = "/coreos.com/network/subnets/10.10.0.0-24&fd10:0:0:0:0:0:0:0-64";
          await lab.etcdctl("put", bad, `{"PublicIP":"172.31.254.99","PublicIPv6":null}`);
          await waitFor(
            async () => {
              const state = (await lab.status(hosts[0])).state;
              return (state?.leaseSkips?.malformed ?? 0) >= 1;
            },
            { what: "the malformed key counted" },
          );
          assert.equal(
            (await lab.exec(hosts[0].ns, ["ip", "-6", "route", "show", "fd10::/64"])).stdout,
            "",
          );
          await lab.etcdctl("del", bad);
        });

        if (backend === "vxlan" && family === "dual-stack") {
          await t.step(
            "the IPv6 vxlan device deleted: --health and /readyz say so, the agent exits 1, a start makes it again",
            async () => {
              const h2 = hosts[1];
              assert.equal(await lab.agent(h2)!.stop(), 0);
              lab.startAgent(h2, ["--healthz-ip=127.0.0.1", "--healthz-port=9912"]);
              await lab.waitReady(h2);
              await lab.exec(h2.ns, ["ip", "link", "del", "flannel-v6.1"]);
              const health = await lab.health(h2);
              assert.equal(health.code, 1);
              assert.equal(health.stdout, "not-ready device flannel-v6.1 missing\n");
              const readyz = await lab.exec(h2.ns, [
                "deno",
                "eval",
                `const r = await fetch("http://127.0.0.1:9912/readyz"); console.log(r.status, (await r.text()).trim());`,
              ]);
              assert.equal(readyz.stdout, "503 not-ready device flannel-v6.1 missing\n");
              // Waiting does not mend it: the agent exits 1 for its supervisor to restart
              // it, and the start makes the device again.
              const agent = lab.agent(h2)!;
              const code = await exitCodeWithin(agent.child, 15_000);
              assert.equal(code, 1, "exits 1 by itself");
              assert.match(
                agent.log(),
                /device flannel-v6\.1 is gone: exiting so a supervisor restarts it/,
              );
              lab.startAgent(h2);
              await lab.waitReady(h2);
              assert.deepEqual(
                await unreachablePairs(lab, [containers[0], containers[1]], (c) => c.ip6!),
                [],
              );
            },
          );
        }
      },
    });
  }
}

Deno.test({
  name: "config set refuses udp for an IPv6-only network and ipip with IPv6, naming the fix",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "ds" });
    for (
      const [type, network, said] of [
        ["udp", V6_ONLY, /"udp" needs IPv4 .*use vxlan or host-gw/],
        ["ipip", DUAL, /"ipip" carries IPv4 only, as flannel's/],
      ] as const
    ) {
      const result = await lab.overlay(lab.underlayNs, [
        "config",
        "set",
        `--etcd-endpoints=${lab.etcdEndpoint}`,
        JSON.stringify({ ...network, Backend: { Type: type } }),
      ]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, said);
      assert.match(result.stderr, /nothing was written/);
    }
  },
});

Deno.test({
  name:
    "cleanup of an IPv6-only network leaves another network's IPv4 routes on the same host alone",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "ds", ipv6: true });
    await lab.setConfig({ ...DUAL, Backend: { Type: "vxlan" } });
    const v6Only = ["--etcd-prefix=/six/network"];
    const set = await lab.overlay(lab.underlayNs, [
      "config",
      "set",
      `--etcd-endpoints=${lab.etcdEndpoint}`,
      ...v6Only,
      JSON.stringify({
        ...V6_ONLY,
        IPv6Network: "fd30::/48",
        Backend: { Type: "vxlan", VNI: 5, Port: 4790 },
      }),
    ]);
    assert.equal(set.code, 0, set.stderr);
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    const six = (host: LabHost) => [
      ...v6Only,
      `--subnet-file=${host.stateDir}/six.env`,
      `--state-dir=${host.stateDir}`,
    ];
    for (const host of [h1, h2]) {
      lab.startAgent(host);
      lab.startAgent(host, six(host), { name: `${host.name}-six` });
    }
    for (const host of [h1, h2]) {
      await lab.waitReady(host);
      const wait = await lab.overlay(host.ns, ["wait", "--timeout=20s", ...six(host).slice(1)]);
      assert.equal(wait.code, 0, wait.stderr);
    }
    const marked4 = async () =>
      (await lab.exec(h1.ns, ["ip", "-4", "route", "show", "proto", "111"])).stdout;
    await waitFor(async () => (await marked4()).includes("10.10."), {
      what: "h1's IPv4 peer route",
    });
    const before = await marked4();
    assert.equal(await lab.agent(`${h1.name}-six`)!.stop(), 0);
    const cleanup = await lab.overlay(h1.ns, [
      "cleanup",
      `--etcd-endpoints=${lab.etcdEndpoint}`,
      ...six(h1),
    ]);
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.equal(await marked4(), before, "the dual-stack network's IPv4 routes stay");
    assert.equal((await lab.health(h1)).code, 0);
  },
});
