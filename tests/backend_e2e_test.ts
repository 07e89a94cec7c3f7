/**
 * Every backend end to end: hosts in namespaces on one underlay, a real etcd, two
 * containers per host on a bridge made from the subnet file. The same story runs for
 * udp, vxlan, host-gw and ipip (matrix, join, leave, restart, simultaneous start), then
 * what is particular to each backend.
 *
 * ipip needs the kernel's ipip module: where the kernel cannot make an ipip device (asked
 * in a throwaway namespace), its tests are reported as ignored with the reason, and the
 * test of what the agent does on such a kernel runs instead.
 */
import assert from "node:assert/strict";
import { exitCodeWithin, INTEGRATION, waitFor } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost, UNDERLAY_PREFIX } from "../lab/lab.ts";
import { ipipMissing } from "../lab/kernel_probe.ts";

const SEND_DATAGRAMS = new URL("./fixtures/send_datagrams.ts", import.meta.url).pathname;
const WRITE_LEASES = new URL("../lab/write_leases.ts", import.meta.url).pathname;

type BackendName = "udp" | "vxlan" | "host-gw" | "ipip";

const CONFIGS: Record<BackendName, Record<string, unknown>> = {
  "udp": { Network: "10.10.0.0/16", Backend: { Type: "udp" } },
  // The seeds' vxlan config uses Port 7890; a VNI other than 1 shows it is honoured.
  "vxlan": { Network: "10.10.0.0/16", Backend: { Type: "vxlan", Port: 7890, VNI: 42 } },
  "host-gw": { Network: "10.10.0.0/16", Backend: { Type: "host-gw" } },
  "ipip": { Network: "10.10.0.0/16", Backend: { Type: "ipip" } },
};
const DEVICE_MTU: Record<BackendName, number> = {
  "udp": 1472,
  "vxlan": 1450,
  "host-gw": 1500,
  "ipip": 1480,
};

const noIpip = await ipipMissing();
if (noIpip) console.error(`ipip end-to-end tests ignored: ${noIpip}`);
/** Lab options per backend: ipip's namespaces carry a prefix of their own. */
const labFor = (backend: BackendName) => backend === "ipip" ? { prefix: "ii" } : {};

/** Pings with retries until one answer; returns ms until then, or undefined. */
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

/**
 * Writes `value` as the lease of 10.10.0.0/24 (below the default SubnetMin: no lab host
 * leases it), waits for `warning` in the agent's log, checks that no route was made for
 * it, and deletes the lease again.
 */
async function expectSkipped(lab: Lab, host: LabHost, value: string, warning: RegExp) {
  const key = "/coreos.com/network/subnets/10.10.0.0-24";
  await lab.etcdctl("put", key, value);
  await waitFor(() => warning.test(lab.agent(host)!.log()), { what: `warning ${warning}` });
  assert.equal((await lab.exec(host.ns, ["ip", "route", "show", "10.10.0.0/24"])).stdout, "");
  await lab.etcdctl("del", key);
}

async function waitPeers(lab: Lab, hosts: LabHost[], count: number, timeoutMs: number) {
  await Promise.all(
    hosts.map((host) =>
      waitFor(async () => (await lab.health(host)).stdout.includes(`peers:${count}`), {
        timeoutMs,
        intervalMs: 20,
        what: `${host.name} to see ${count} peers`,
      })
    ),
  );
}

for (const backend of ["udp", "vxlan", "host-gw", "ipip"] as const) {
  Deno.test({
    name: `${backend} backend end to end`,
    ignore: backend === "ipip" && noIpip !== undefined,
    ...INTEGRATION,
    async fn(t) {
      await using lab = await Lab.create(labFor(backend));
      await lab.setConfig(CONFIGS[backend]);
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
              [`${from.name}→${to.name}`, await lab.ping(from, to.ip, { count: 2 })] as const
            ),
          );
          assert.deepEqual(
            results.filter(([, rtt]) => rtt === undefined).map(([pair]) => pair),
            [],
          );
          assert.equal(results.length, 24);
        },
      );

      await t.step(
        `the MTU is ${
          DEVICE_MTU[backend]
        }: a DF ping at the full overlay MTU passes, one byte more fails`,
        async () => {
          assert.match(
            await Deno.readTextFile(hosts[0].subnetFile),
            new RegExp(`FLANNEL_MTU=${DEVICE_MTU[backend]}\n`),
          );
          const [a, b] = [containers[0], containers[2]];
          const payload = DEVICE_MTU[backend] - 28;
          assert.notEqual(
            await lab.ping(a, b.ip, { size: payload, dontFragment: true }),
            undefined,
          );
          assert.equal(
            await lab.ping(a, b.ip, { size: payload + 1, dontFragment: true }),
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
          await waitPeers(lab, hosts.slice(0, 3), 3, 1000);
          const c4 = await lab.addContainer(h4);
          const times = await Promise.all(
            containers.map((from) => reachableWithin(lab, from, c4.ip, 1000)),
          );
          assert.deepEqual(
            times.map((ms, i) => ms === undefined ? containers[i].name : "").filter(Boolean),
            [],
          );
          containers.push(c4);
        },
      );

      await t.step("a host that leaves is no longer routed to", async () => {
        const h4 = hosts[3];
        const c4 = containers[containers.length - 1];
        const subnet = await lab.subnetOf(h4);
        await lab.agent(h4)!.stop();
        await lab.etcdctl("del", `/coreos.com/network/subnets/${subnet.replace("/", "-")}`);
        await waitPeers(lab, hosts.slice(0, 3), 2, 2000);
        if (backend === "udp") {
          const ping = await lab.exec(containers[0].ns, [
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "1",
            c4.ip,
          ]);
          assert.match(ping.stdout, /Destination Net Unreachable/);
          await waitFor(async () => (await lab.counters(hosts[0])).drop_no_route >= 1, {
            what: "drop_no_route counted",
          });
        } else {
          for (const host of hosts.slice(0, 3)) {
            const routes = await lab.exec(host.ns, ["ip", "route", "show", subnet]);
            assert.equal(routes.stdout.trim(), "", `${host.name} still routes ${subnet}`);
          }
          assert.equal(await lab.ping(containers[0], c4.ip), undefined);
        }
      });

      await t.step("an agent that restarts keeps its subnet, and traffic resumes", async () => {
        const h2 = hosts[1];
        const before = await lab.subnetOf(h2);
        const lease = await lab.etcdctl(
          "get",
          `/coreos.com/network/subnets/${before.replace("/", "-")}`,
          "--print-value-only",
        );
        assert.equal(await lab.agent(h2)!.stop(), 0);
        lab.startAgent(h2);
        await lab.waitReady(h2);
        assert.equal(await lab.subnetOf(h2), before);
        const after = await lab.etcdctl(
          "get",
          `/coreos.com/network/subnets/${before.replace("/", "-")}`,
          "--print-value-only",
        );
        assert.equal(after.stdout, lease.stdout, "the lease value (VtepMAC included) is unchanged");
        assert.notEqual(
          await reachableWithin(lab, containers[0], containers[2].ip, 3000),
          undefined,
          "traffic did not resume",
        );
      });

      await t.step("two hosts started at the same instant both learn each other", async () => {
        const [h5, h6] = [await lab.addHost(), await lab.addHost()];
        lab.startAgent(h5);
        lab.startAgent(h6);
        await Promise.all([lab.waitReady(h5), lab.waitReady(h6)]);
        const [c5, c6] = [await lab.addContainer(h5), await lab.addContainer(h6)];
        await waitPeers(lab, [h5, h6], 4, 2000);
        assert.notEqual(
          await reachableWithin(lab, c5, c6.ip, 2000),
          undefined,
          "h5 cannot reach h6",
        );
        assert.notEqual(
          await reachableWithin(lab, c6, c5.ip, 2000),
          undefined,
          "h6 cannot reach h5",
        );
      });

      if (backend === "udp") {
        await t.step(
          "spoofed, malformed and foreign datagrams are dropped and counted, and traffic goes on",
          async () => {
            const [h1, h2, h3] = hosts;
            const before = await lab.counters(h1);
            const rogue = await lab.addHost(); // on the underlay, but holds no lease
            const own = (await lab.subnetOf(h1)).replace("0/24", "2");
            const send = (from: LabHost, spec: Record<string, unknown>) =>
              lab.exec(from.ns, [
                "deno",
                "run",
                "-A",
                SEND_DATAGRAMS,
                JSON.stringify({ to: h1.ip, port: 8285, ...spec }),
              ]);
            const h3Address = (await lab.subnetOf(h3)).replace("0/24", "2");
            await send(rogue, { kind: "ipv4", count: 50, src: h3Address, dst: own });
            await send(h2, { kind: "ipv4", count: 40, src: h3Address, dst: own });
            await send(h2, { kind: "random", count: 30 });
            await send(h2, {
              kind: "truncated",
              count: 20,
              src: (await lab.subnetOf(h2)).replace("0/24", "2"),
              dst: own,
            });
            const delta = (now: Record<string, number>, name: string) =>
              (now[name] ?? 0) - (before[name] ?? 0);
            const after = await waitFor(async () => {
              const now = await lab.counters(h1);
              return delta(now, "drop_unknown_peer") >= 50 &&
                  delta(now, "drop_malformed") + delta(now, "drop_spoofed_source") >= 90
                ? now
                : undefined;
            }, { timeoutMs: 6000, what: "drop counters" });
            assert.equal(delta(after, "drop_unknown_peer"), 50);
            // Random bytes from a peer are malformed unless by chance they parse as IPv4 with a
            // foreign source; the 40 spoofed and 20 truncated ones always count as such.
            assert.ok(delta(after, "drop_spoofed_source") >= 40);
            assert.equal(delta(after, "drop_malformed") + delta(after, "drop_spoofed_source"), 90);
            assert.notEqual(await lab.ping(containers[0], containers[2].ip), undefined);
            assert.equal((await lab.health(h1)).code, 0);
          },
        );
      }

      if (backend === "vxlan") {
        await t.step(
          "the device is flannel's: vxlan id 42, dstport 7890, local public IP, nolearning",
          async () => {
            const link = await lab.exec(hosts[0].ns, ["ip", "-d", "link", "show", "flannel.42"]);
            assert.match(link.stdout, / mtu 1450 /);
            assert.match(
              link.stdout,
              new RegExp(`vxlan id 42 local ${hosts[0].ip} dev eth0 .*dstport 7890 .*nolearning`),
            );
            const lease = await lab.etcdctl(
              "get",
              `/coreos.com/network/subnets/${(await lab.subnetOf(hosts[0])).replace("/", "-")}`,
              "--print-value-only",
            );
            const mac = /link\/ether (\S+)/.exec(link.stdout)![1];
            assert.equal(
              lease.stdout.trim(),
              `{"PublicIP":"${
                hosts[0].ip
              }","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":42,"VtepMAC":"${mac}"}}`,
            );
          },
        );

        await t.step("a lease of another backend type is ignored with a warning", async () => {
          // 10.10.0.0/24 is below the default SubnetMin: no host of the lab leases it. It
          // starts as a vxlan peer, then its lease turns into a udp one.
          const route = async () =>
            (await lab.exec(hosts[0].ns, ["ip", "route", "show", "10.10.0.0/24"])).stdout;
          await lab.etcdctl(
            "put",
            "/coreos.com/network/subnets/10.10.0.0-24",
            `{"PublicIP":"${UNDERLAY_PREFIX}.250","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":42,"VtepMAC":"02:aa:bb:cc:dd:ee"}}`,
          );
          await waitFor(async () => (await route()) !== "", { what: "vxlan peer programmed" });
          await expectSkipped(
            lab,
            hosts[0],
            `{"PublicIP":"${UNDERLAY_PREFIX}.250","PublicIPv6":null}`,
            /WARN {2}skipping a lease in etcd: it is not used for routing key=\/coreos\.com\/network\/subnets\/10\.10\.0\.0-24 reason="backend type \\"udp\\" is not this network's/,
          );
        });

        await t.step("packets on the wire carry VNI 42 to UDP port 7890", async () => {
          const capture = lab.spawn(hosts[0].ns, [
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-c",
            "1",
            "-x",
            "udp dst port 7890",
          ]);
          await new Promise((resolve) => setTimeout(resolve, 500));
          await lab.ping(containers[0], containers[2].ip, { count: 2 });
          const code = await exitCodeWithin(capture.child, 5000);
          await capture.stop("SIGKILL");
          assert.equal(code, 0, capture.log());
          const hex = [...capture.log().matchAll(/^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{4}\s?)+)/gm)].map(
            (m) => m[1].replace(/\s+/g, ""),
          ).join("");
          const bytes = hex.match(/../g)!.map((h) => parseInt(h, 16));
          const ipHeader = (bytes[0] & 15) * 4;
          const udp = ipHeader;
          assert.equal((bytes[udp + 2] << 8) | bytes[udp + 3], 7890, "UDP destination port");
          const vxlan = udp + 8;
          assert.equal(bytes[vxlan], 0x08, "VXLAN flags: VNI present");
          assert.equal(
            (bytes[vxlan + 4] << 16) | (bytes[vxlan + 5] << 8) | bytes[vxlan + 6],
            42,
            "VNI",
          );
        });
      }

      if (backend === "vxlan" || backend === "host-gw" || backend === "ipip") {
        await t.step("entries deleted by hand come back within 10 s", async () => {
          const h1 = hosts[0];
          const peer = await lab.subnetOf(hosts[2]);
          const device = backend === "vxlan" ? "flannel.42" : "eth0";
          await lab.sh(h1.ns, `ip route del ${peer}`);
          if (backend === "vxlan") {
            const vtep = peer.replace("/24", "");
            await lab.sh(h1.ns, `ip neigh del ${vtep} dev ${device}`);
            const fdb = await lab.exec(h1.ns, ["bridge", "fdb", "show", "dev", device]);
            const mac = /^(\S+) dst (\S+)/m.exec(fdb.stdout)!;
            await lab.sh(h1.ns, `bridge fdb del ${mac[1]} dev ${device} dst ${mac[2]}`);
          }
          const started = performance.now();
          await waitFor(
            async () =>
              (await lab.exec(h1.ns, ["ip", "route", "show", peer])).stdout.includes(
                peer.replace("/24", ""),
              ),
            { timeoutMs: 10_000, what: "route restored" },
          );
          if (backend === "vxlan") {
            await waitFor(
              async () =>
                (await lab.exec(h1.ns, ["ip", "neigh", "show", "dev", device])).stdout.includes(
                  peer.replace(".0/24", ".0 "),
                ),
              { timeoutMs: 10_000, what: "neighbour restored" },
            );
            await waitFor(
              async () =>
                (await lab.exec(h1.ns, ["bridge", "fdb", "show", "dev", device])).stdout.split("\n")
                  .filter((l) => l.includes(" dst ")).length === 4,
              { timeoutMs: 10_000, what: "fdb restored" },
            );
          }
          assert.ok(performance.now() - started < 10_000);
          assert.notEqual(
            await reachableWithin(lab, containers[0], containers[4].ip, 2000),
            undefined,
          );
          const routes = await lab.exec(h1.ns, ["ip", "route"]);
          assert.equal(
            routes.stdout.split("\n").filter((l) => l.startsWith(peer)).length,
            1,
            "no duplicate route",
          );
        });
      }

      if (backend === "udp") {
        await t.step("the Network route deleted by hand comes back within 10 s", async () => {
          const h1 = hosts[0];
          await lab.sh(h1.ns, "ip route del 10.10.0.0/16 dev flannel0");
          await waitFor(
            async () =>
              (await lab.exec(h1.ns, ["ip", "route", "show", "10.10.0.0/16"])).stdout.includes(
                "dev flannel0",
              ),
            { timeoutMs: 10_000, what: "route restored" },
          );
          assert.match(lab.agent(h1)!.log(), /put back a route someone deleted/);
          assert.notEqual(
            await reachableWithin(lab, containers[0], containers[4].ip, 2000),
            undefined,
          );
        });

        await t.step(
          "the device deleted by hand: the agent exits 1 for its supervisor, a start makes it again",
          async () => {
            const h1 = hosts[0];
            const agent = lab.agent(h1)!;
            await lab.sh(h1.ns, "ip link del flannel0");
            const code = await exitCodeWithin(agent.child, 15_000);
            assert.equal(code, 1, "exits 1 by itself");
            assert.match(agent.log(), /exiting so a supervisor restarts it/);
            lab.startAgent(h1);
            await lab.waitReady(h1);
            assert.notEqual(
              await reachableWithin(lab, containers[0], containers[4].ip, 3000),
              undefined,
            );
          },
        );
      }

      if (backend === "host-gw") {
        await t.step("peers are routed via their public IPs on the underlay", async () => {
          const route = await lab.exec(hosts[0].ns, [
            "ip",
            "route",
            "show",
            await lab.subnetOf(hosts[1]),
          ]);
          assert.match(route.stdout, new RegExp(`via ${hosts[1].ip} dev eth0`));
        });

        await t.step("a peer off this L2 segment gets a warning and no route", async () => {
          // 10.10.0.0/24 is below the default SubnetMin: no host of the lab leases it.
          await expectSkipped(
            lab,
            hosts[0],
            `{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"host-gw"}`,
            /WARN {2}host-gw peer is not on this host's L2 segment/,
          );
        });

        await t.step(
          "a public IP that is not on the interface is refused and nothing is created",
          async () => {
            const h = await lab.addHost();
            const result = await lab.overlay(h.ns, [
              "run",
              ...lab.agentFlags(h),
              "--public-ip=192.0.2.77",
            ]);
            assert.equal(result.code, 2);
            assert.match(
              result.stderr,
              /host-gw: public IP 192\.0\.2\.77 is not on interface eth0/,
            );
            const leases = await lab.etcdctl(
              "get",
              "--prefix",
              "/coreos.com/network/subnets/",
              "--print-value-only",
            );
            assert.doesNotMatch(leases.stdout, /192\.0\.2\.77/);
          },
        );
      }

      if (backend === "ipip") {
        await t.step(
          "the device is flannel's: ipip, local public IP, on eth0, ttl inherit, nopmtudisc, <subnet>.0/32; peers are routed through it onlink; the lease has no BackendData",
          async () => {
            const [h1, h2] = hosts;
            const shown = await lab.exec(h1.ns, ["ip", "-j", "-d", "link", "show", "flannel.ipip"]);
            const [link] = JSON.parse(shown.stdout);
            assert.equal(link.mtu, 1480);
            assert.equal(link.linkinfo.info_kind, "ipip");
            const data = link.linkinfo.info_data;
            assert.deepEqual(
              [data.local, data.remote, data.link, data.ttl, data.pmtudisc],
              [h1.ip, "any", "eth0", 0, false],
            );
            const own = await lab.subnetOf(h1);
            const address = await lab.exec(h1.ns, [
              "ip",
              "-4",
              "-o",
              "addr",
              "show",
              "flannel.ipip",
            ]);
            assert.match(address.stdout, new RegExp(` inet ${own.replace("/24", "")}/32 `));
            const route = await lab.exec(h1.ns, ["ip", "route", "show", await lab.subnetOf(h2)]);
            assert.match(
              route.stdout,
              new RegExp(`via ${h2.ip} dev flannel\\.ipip proto 111 .*onlink`),
            );
            const lease = await lab.etcdctl(
              "get",
              `/coreos.com/network/subnets/${own.replace("/", "-")}`,
              "--print-value-only",
            );
            assert.equal(
              lease.stdout.trim(),
              `{"PublicIP":"${h1.ip}","PublicIPv6":null,"BackendType":"ipip"}`,
            );
          },
        );

        await t.step(
          "packets on the wire are IPv4 protocol 4 from host to host, the container's packet inside",
          async () => {
            const [from, to] = [containers[0], containers[2]];
            const capture = lab.spawn(hosts[0].ns, [
              "tcpdump",
              "-i",
              "eth0",
              "-n",
              "-c",
              "1",
              "-x",
              "ip proto 4",
            ]);
            await new Promise((resolve) => setTimeout(resolve, 500));
            await lab.ping(from, to.ip, { count: 2 });
            const code = await exitCodeWithin(capture.child, 5000);
            await capture.stop("SIGKILL");
            assert.equal(code, 0, capture.log());
            const hex = [...capture.log().matchAll(/^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{4}\s?)+)/gm)]
              .map((m) => m[1].replace(/\s+/g, "")).join("");
            const bytes = hex.match(/../g)!.map((h) => parseInt(h, 16));
            const address = (at: number) => bytes.slice(at, at + 4).join(".");
            assert.equal(bytes[9], 4, "outer protocol: IPv4 in IPv4");
            assert.deepEqual([address(12), address(16)], [hosts[0].ip, hosts[1].ip]);
            const inner = (bytes[0] & 15) * 4;
            assert.equal(bytes[inner] >> 4, 4, "inner IPv4");
            assert.deepEqual([address(inner + 12), address(inner + 16)], [from.ip, to.ip]);
          },
        );

        await t.step(
          "a flannel.ipip as flanneld leaves it (no dev) is adopted on start, not recreated",
          async () => {
            const h1 = hosts[0];
            assert.equal(await lab.agent(h1)!.stop(), 0);
            await lab.ip(h1.ns, "link", "del", "flannel.ipip");
            await lab.ip(
              h1.ns,
              ...["link", "add", "flannel.ipip", "type", "ipip", "local", h1.ip],
              ...["ttl", "inherit", "nopmtudisc"],
            );
            const index = async () =>
              JSON.parse(
                (await lab.exec(h1.ns, ["ip", "-j", "link", "show", "flannel.ipip"])).stdout,
              )[
                0
              ].ifindex;
            const before = await index();
            lab.startAgent(h1);
            await lab.waitReady(h1);
            assert.equal(await index(), before);
            assert.match(lab.agent(h1)!.log(), /adopting the existing ipip device/);
            assert.notEqual(
              await reachableWithin(lab, containers[0], containers[2].ip, 3000),
              undefined,
            );
          },
        );
      }
    },
  });
}

for (const backend of ["vxlan", "host-gw", "ipip"] as const) {
  Deno.test({
    name:
      `${backend}: 1,000 peers written straight into etcd are programmed and removed without errors`,
    ignore: backend === "ipip" && noIpip !== undefined,
    ...INTEGRATION,
    async fn() {
      await using lab = await Lab.create(labFor(backend));
      // The agent leases from 10.64.x; the 1,000 peers take 10.100.1.0 onwards.
      await lab.setConfig({
        ...CONFIGS[backend],
        Network: "10.64.0.0/10",
        SubnetMin: "10.64.1.0",
        SubnetMax: "10.64.255.0",
      });
      const host = await lab.readyHost();
      const ips = Array.from({ length: 150 }, (_, i) => `${UNDERLAY_PREFIX}.${100 + i}`);
      const spec = {
        endpoint: lab.etcdEndpoint,
        count: 1000,
        network: "10.100.0.0",
        backend,
        vni: 42, // the network's: a peer on another VNI is skipped
        ips,
      };
      const wrote = await lab.exec(lab.underlayNs, [
        "deno",
        "run",
        "-A",
        WRITE_LEASES,
        JSON.stringify(spec),
      ]);
      assert.equal(wrote.code, 0, wrote.stderr);
      const routeCount = async () =>
        (await lab.exec(host.ns, ["ip", "route", "show", "root", "10.100.0.0/14"])).stdout.split(
          "\n",
        )
          .filter(Boolean).length;
      await waitFor(async () => (await routeCount()) >= 1000, {
        timeoutMs: 10_000,
        what: "1,000 routes",
      });
      if (backend === "vxlan") {
        const fdb = await lab.exec(host.ns, ["bridge", "fdb", "show", "dev", "flannel.42"]);
        assert.equal(fdb.stdout.split("\n").filter((l) => l.includes(" dst ")).length, 1000);
        const neigh = await lab.exec(host.ns, ["ip", "neigh", "show", "dev", "flannel.42"]);
        assert.equal(neigh.stdout.split("\n").filter((l) => l.includes("PERMANENT")).length, 1000);
      }
      assert.equal(await routeCount(), 1000, "no duplicates");
      const removed = await lab.exec(lab.underlayNs, [
        "deno",
        "run",
        "-A",
        WRITE_LEASES,
        JSON.stringify({ ...spec, delete: true }),
      ]);
      assert.equal(removed.code, 0, removed.stderr);
      await waitFor(async () => (await routeCount()) === 0, {
        timeoutMs: 10_000,
        what: "routes removed",
      });
      assert.doesNotMatch(lab.agent(host)!.log(), /WARN .*failed|ERROR/);
      assert.equal((await lab.health(host)).code, 0);
    },
  });
}

Deno.test({
  name: "vxlan with DirectRouting routes same-segment peers via their public IP",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({
      Network: "10.10.0.0/16",
      Backend: { Type: "vxlan", DirectRouting: true },
    });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    lab.startAgent(h1);
    lab.startAgent(h2);
    await Promise.all([lab.waitReady(h1), lab.waitReady(h2)]);
    await waitPeers(lab, [h1], 1, 2000);
    const route = await lab.exec(h1.ns, ["ip", "route", "show", await lab.subnetOf(h2)]);
    assert.match(route.stdout, new RegExp(`via ${h2.ip} dev eth0`));
    const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
    assert.notEqual(await reachableWithin(lab, c1, c2.ip, 2000), undefined);
  },
});

Deno.test({
  name:
    "ipip with DirectRouting routes same-segment peers via their public IP, others through the tunnel",
  ignore: noIpip !== undefined,
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "ii" });
    await lab.setConfig({
      Network: "10.10.0.0/16",
      Backend: { Type: "ipip", DirectRouting: true },
    });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    lab.startAgent(h1);
    lab.startAgent(h2);
    await Promise.all([lab.waitReady(h1), lab.waitReady(h2)]);
    await waitPeers(lab, [h1], 1, 2000);
    const route = await lab.exec(h1.ns, ["ip", "route", "show", await lab.subnetOf(h2)]);
    assert.match(route.stdout, new RegExp(`via ${h2.ip} dev eth0 `));
    const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
    assert.notEqual(await reachableWithin(lab, c1, c2.ip, 2000), undefined);
    // A peer off this segment (10.10.0.0/24 is below SubnetMin: no lab host leases it).
    const key = "/coreos.com/network/subnets/10.10.0.0-24";
    const offSegment = async () =>
      (await lab.exec(h1.ns, ["ip", "route", "show", "10.10.0.0/24"])).stdout;
    await lab.etcdctl(
      "put",
      key,
      `{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"ipip"}`,
    );
    await waitFor(
      async () => /via 192\.0\.2\.99 dev flannel\.ipip .*onlink/.test(await offSegment()),
      {
        what: "the off-segment peer routed through flannel.ipip",
      },
    );
    await lab.etcdctl("del", key);
    await waitFor(async () => (await offSegment()) === "", { what: "its route removed" });
  },
});

Deno.test({
  name:
    "ipip on a kernel without ipip: one line, not-ready with the reason and the fix, nothing made, and up once the config names another backend",
  ignore: noIpip === undefined,
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "ii" });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "ipip" } });
    const host = await lab.addHost();
    const reason =
      "backend-unavailable: ipip: this kernel has no ipip device type (modprobe ipip; or use vxlan)";
    const look = async () => ({
      links: (await lab.exec(host.ns, ["ip", "-o", "link"])).stdout,
      addresses: (await lab.exec(host.ns, ["ip", "-4", "-o", "addr"])).stdout,
      routes: (await lab.exec(host.ns, ["ip", "route"])).stdout,
      rules: (await lab.exec(host.ns, ["iptables-save"])).stdout.replace(/^#.*\n/gm, ""),
      files: [...Deno.readDirSync(host.subnetFile.replace(/\/[^/]+$/, ""))].map((e) => e.name),
      leases: (await lab.etcdctl("get", "--prefix", "/coreos.com/network/subnets/")).stdout,
    });
    const before = await look();
    const agent = lab.startAgent(host);
    const health = await waitFor(async () => {
      const result = await lab.health(host);
      return result.stdout.includes("backend-unavailable") ? result : undefined;
    }, { what: "health to say why" });
    assert.equal(health.stdout.trim(), `not-ready ${reason}`);
    assert.equal(health.code, 1);
    const wait = await lab.overlay(host.ns, ["wait", "--timeout=1s", ...lab.hostFlags(host)]);
    assert.equal(wait.code, 1);
    assert.match(
      wait.stderr,
      /this kernel has no ipip device type \(modprobe ipip; or use vxlan\)/,
    );
    // It keeps asking the kernel (about every 0.25–10 s) and says so once, not per try.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const said = agent.log().split("\n").filter((line) => line.includes("no ipip device type"));
    assert.equal(said.length, 1, agent.log());
    assert.match(said[0], /^.*WARN .*not starting yet/);
    assert.doesNotMatch(agent.log(), /ERROR/);
    const meanwhile = await look();
    assert.deepEqual(
      { ...meanwhile, files: meanwhile.files.filter((name) => name !== "state") },
      before,
      "no lease, device, address, route, rule or subnet file; only the state the health reads",
    );
    assert.equal(await agent.stop(), 0);
    assert.deepEqual(await look(), before, "nothing left behind after it stops");

    // Started again, it comes up by itself once the config names a backend this kernel has.
    lab.startAgent(host);
    await waitFor(async () => (await lab.health(host)).stdout.includes(reason), {
      what: "waiting again",
    });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "vxlan" } });
    assert.match(await lab.waitReady(host, "5s"), /^ready .*backend:vxlan/);
  },
});
