/**
 * The kernel backends' IPv6 side against real kernels: two hosts in namespaces of their
 * own (a random per-run name, deleted afterwards), joined by one cable, eth0 on both with
 * 172.31.254.1N/24 and fd00::1N/64. Each host runs the backend as the agent would
 * (tests/fixtures/backend_runner.ts: hand-made config and leases, no etcd), and the test
 * reads what it left with `ip -6 route`, `ip -6 neigh`, `bridge fdb` and pings across.
 */
import assert from "node:assert/strict";
import { type CommandOutput, runCommand } from "../lab/run.ts";
import { VxlanBackend } from "../lib/backends/vxlan.ts";

const RUNNER = new URL("./fixtures/backend_runner.ts", import.meta.url).pathname;
const ROOT = Deno.uid() === 0;

interface Host {
  readonly ns: string;
  readonly n: number;
  readonly stateDir: string;
}

interface RunResult {
  device: string;
  mtu: number;
  backendData: { VNI: number; VtepMAC: string } | null;
  backendV6Data: { VNI: number; VtepMAC: string } | null;
  owned: {
    device?: { name: string; kind: string };
    moreDevices?: { name: string; kind: string }[];
    files: string[];
  };
  conflicts: string[];
  problems: string[];
  underlay: { ipv6Addresses: string[]; ipv6PrefixLen: number | null };
}

async function run(argv: string[]): Promise<CommandOutput> {
  const output = await runCommand(argv);
  if (output.code !== 0) {
    throw new Error(`${argv.join(" ")}: exit ${output.code}\n${output.stderr}${output.stdout}`);
  }
  return output;
}

function ip(host: Host, ...args: string[]): Promise<CommandOutput> {
  return run(["ip", "-n", host.ns, ...args]);
}

/** Two hosts on one segment; removed (namespaces, state folders) after `body`. */
async function withHosts(body: (h1: Host, h2: Host) => Promise<void>): Promise<void> {
  const id = `n6${crypto.randomUUID().slice(0, 6)}`;
  const dir = await Deno.makeTempDir({ prefix: `${id}-` });
  const hosts = [1, 2].map((n) => ({ ns: `${id}-h${n}`, n, stateDir: `${dir}/h${n}` }));
  const made: string[] = [];
  try {
    for (const host of hosts) {
      await run(["ip", "netns", "add", host.ns]);
      made.push(host.ns);
    }
    await ip(hosts[0], "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", hosts[1].ns);
    for (const host of hosts) {
      await ip(host, "link", "set", "lo", "up");
      await ip(host, "addr", "add", `172.31.254.1${host.n}/24`, "dev", "eth0");
      await ip(host, "addr", "add", `fd00::1${host.n}/64`, "dev", "eth0", "nodad");
      await ip(host, "link", "set", "eth0", "up");
    }
    await body(hosts[0], hosts[1]);
  } finally {
    for (const ns of made) await runCommand(["ip", "netns", "del", ns]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** What host N's lease says: 10.10.N.0/24, fd10:0:0:N::/64, its public addresses, MACs. */
function leaseOf(
  n: number,
  published: Partial<Pick<RunResult, "backendData" | "backendV6Data">> = {},
  options: { ipv4?: boolean } = {},
) {
  return {
    ...(options.ipv4 === false ? {} : { subnet: `10.10.${n}.0/24`, publicIp: `172.31.254.1${n}` }),
    ipv6Subnet: `fd10:0:0:${n}::/64`,
    publicIpv6: `fd00::1${n}`,
    ...(published.backendData ? { backendData: published.backendData } : {}),
    ...(published.backendV6Data ? { backendV6Data: published.backendV6Data } : {}),
  };
}

/** Runs the backend on `host` with `spec` (own lease and peers filled in by the caller). */
async function runBackend(host: Host, spec: Record<string, unknown>): Promise<RunResult> {
  const output = await run([
    "ip",
    "netns",
    "exec",
    host.ns,
    Deno.execPath(),
    "run",
    "--allow-all",
    RUNNER,
    JSON.stringify({ stateDir: host.stateDir, ipv6Network: "fd10::/48", ...spec }),
  ]);
  return JSON.parse(output.stdout.trim().split("\n").pop()!);
}

/**
 * Brings both hosts up with each other as peers: a first run publishes each host's
 * BackendData, a second programs the other's lease (the device and MAC are adopted).
 */
async function pair(
  h1: Host,
  h2: Host,
  spec: Record<string, unknown>,
  options: { ipv4?: boolean } = {},
): Promise<[RunResult, RunResult]> {
  const first = await Promise.all(
    [h1, h2].map((h) => runBackend(h, { ...spec, own: leaseOf(h.n, {}, options), peers: [] })),
  );
  return await Promise.all([h1, h2].map((h, i) =>
    runBackend(h, {
      ...spec,
      own: leaseOf(h.n, {}, options),
      peers: [leaseOf([h2, h1][i].n, first[1 - i], options)],
    })
  )) as [RunResult, RunResult];
}

async function pings(host: Host, address: string): Promise<boolean> {
  const output = await runCommand([
    "ip",
    "netns",
    "exec",
    host.ns,
    "ping",
    "-c",
    "1",
    "-W",
    "2",
    address,
  ]);
  return output.code === 0;
}

Deno.test({
  name:
    "vxlan dual stack: flannel-v6.1 over the IPv6 underlay carries IPv6 between hosts beside flannel.1",
  ignore: !ROOT,
  fn: () =>
    withHosts(async (h1, h2) => {
      const [r1, r2] = await pair(h1, h2, { type: "vxlan" });
      assert.deepEqual(r1.underlay, { ipv6Addresses: ["fd00::11"], ipv6PrefixLen: 64 });
      assert.equal(r1.device, "flannel.1");
      assert.equal(r1.mtu, 1430, "the smaller MTU: vxlan over IPv6 costs 70 bytes");
      assert.equal(r1.backendV6Data?.VNI, 1);
      assert.notEqual(r1.backendV6Data?.VtepMAC, r1.backendData?.VtepMAC);
      assert.deepEqual(r1.owned, {
        device: { name: "flannel.1", kind: "vxlan" },
        moreDevices: [{ name: "flannel-v6.1", kind: "vxlan" }],
        files: [`${h1.stateDir}/flannel.1.vtep-mac`, `${h1.stateDir}/flannel-v6.1.vtep-mac`],
      });
      assert.equal(
        (await Deno.readTextFile(`${h1.stateDir}/flannel-v6.1.vtep-mac`)).trim(),
        r1.backendV6Data?.VtepMAC,
      );

      const link = (await ip(h1, "-d", "link", "show", "flannel-v6.1")).stdout;
      assert.match(link, /mtu 1430 /);
      assert.match(link, /vxlan id 1 local fd00::11 dev eth0 .*dstport 8472 .*nolearning/);
      assert.match(link, new RegExp(`link/ether ${r1.backendV6Data?.VtepMAC} `));
      assert.match((await ip(h1, "-d", "link", "show", "flannel.1")).stdout, /mtu 1450 /);
      assert.match(
        (await ip(h1, "-6", "addr", "show", "dev", "flannel-v6.1")).stdout,
        /inet6 fd10:0:0:1::\/128 scope global/,
      );

      const mac2 = r2.backendV6Data!.VtepMAC;
      assert.match(
        (await ip(h1, "-6", "route", "show", "fd10:0:0:2::/64")).stdout,
        /^fd10:0:0:2::\/64 via fd10:0:0:2:: dev flannel-v6\.1 proto 111 .*onlink/,
      );
      assert.match(
        (await ip(h1, "-6", "neigh", "show", "dev", "flannel-v6.1")).stdout,
        new RegExp(`^fd10:0:0:2:: lladdr ${mac2} PERMANENT proto 111`, "m"),
      );
      assert.match(
        (await run(["bridge", "-n", h1.ns, "fdb", "show", "dev", "flannel-v6.1"])).stdout,
        new RegExp(`^${mac2} dst fd00::12 self permanent`, "m"),
      );
      // IPv4 is programmed as before, on its own device.
      assert.match(
        (await ip(h1, "route", "show", "10.10.2.0/24")).stdout,
        /via 10\.10\.2\.0 dev flannel\.1 proto 111 onlink/,
      );
      assert.ok(await pings(h1, "fd10:0:0:2::"), "h1 reaches h2's IPv6 VTEP address");
      assert.ok(await pings(h2, "fd10:0:0:1::"), "and back");
      assert.ok(await pings(h1, "10.10.2.0"), "IPv4 still crosses flannel.1");
    }),
});

Deno.test({
  name:
    "vxlan in an IPv6-only network makes only flannel-v6.1 and routes no IPv4 (every IPv4 subnet is 0.0.0.0/0)",
  ignore: !ROOT,
  fn: () =>
    withHosts(async (h1, h2) => {
      const [r1] = await pair(h1, h2, { type: "vxlan", enableIPv4: false }, { ipv4: false });
      assert.equal(r1.device, "flannel-v6.1");
      assert.equal(r1.backendData, null);
      assert.deepEqual(r1.owned, {
        device: { name: "flannel-v6.1", kind: "vxlan" },
        files: [`${h1.stateDir}/flannel-v6.1.vtep-mac`],
      });
      assert.deepEqual(r1.problems, []);
      const links = (await ip(h1, "link", "show")).stdout;
      assert.doesNotMatch(links, /flannel\.1/);
      assert.equal((await ip(h1, "-4", "route", "show", "proto", "111")).stdout, "");
      assert.match(
        (await ip(h1, "-6", "route", "show", "proto", "111")).stdout,
        /^fd10:0:0:2::\/64 via fd10:0:0:2:: dev flannel-v6\.1/,
      );
      assert.ok(await pings(h1, "fd10:0:0:2::"));
    }),
});

Deno.test({
  name:
    "vxlan over IPv6 after a restart: the v6 device and MAC are kept, a hand-deleted entry comes back, a gone peer's go",
  ignore: !ROOT,
  fn: () =>
    withHosts(async (h1, h2) => {
      const [r1, r2] = await pair(h1, h2, { type: "vxlan" });
      const index = (await ip(h1, "link", "show", "flannel-v6.1")).stdout.split(":")[0];
      await ip(h1, "-6", "neigh", "del", "fd10:0:0:2::", "dev", "flannel-v6.1");
      await ip(h1, "-6", "route", "del", "fd10:0:0:2::/64");
      const again = await runBackend(h1, {
        type: "vxlan",
        own: leaseOf(1),
        peers: [leaseOf(2, r2)],
      });
      assert.deepEqual(again.backendV6Data, r1.backendV6Data, "same VtepMAC");
      assert.equal(
        (await ip(h1, "link", "show", "flannel-v6.1")).stdout.split(":")[0],
        index,
        "the device was adopted, not recreated",
      );
      assert.match(
        (await ip(h1, "-6", "neigh", "show", "dev", "flannel-v6.1")).stdout,
        /^fd10:0:0:2:: lladdr .* PERMANENT/m,
      );
      assert.match((await ip(h1, "-6", "route", "show", "proto", "111")).stdout, /fd10:0:0:2::/);
      assert.ok(await pings(h1, "fd10:0:0:2::"));

      // h2 left: the first reconcile (5 s) removes its entries, IPv4 and IPv6.
      await runBackend(h1, { type: "vxlan", own: leaseOf(1), peers: [], settleMs: 5_500 });
      assert.equal((await ip(h1, "-6", "route", "show", "proto", "111")).stdout, "");
      assert.equal((await ip(h1, "-4", "route", "show", "proto", "111")).stdout, "");
      assert.doesNotMatch(
        (await ip(h1, "-6", "neigh", "show", "dev", "flannel-v6.1")).stdout,
        /PERMANENT/,
      );
      assert.equal(
        (await run(["bridge", "-n", h1.ns, "fdb", "show", "dev", "flannel-v6.1"])).stdout
          .split("\n").filter((line) => line.includes(" dst ")).join("\n"),
        "",
      );
    }),
});

Deno.test({
  name: "vxlan DirectRouting routes an IPv6 peer on our segment via its PublicIPv6",
  ignore: !ROOT,
  fn: () =>
    withHosts(async (h1, h2) => {
      await pair(h1, h2, { type: "vxlan", directRouting: true });
      assert.match(
        (await ip(h1, "-6", "route", "show", "fd10:0:0:2::/64")).stdout,
        /^fd10:0:0:2::\/64 via fd00::12 dev eth0 proto 111/,
      );
      assert.doesNotMatch(
        (await ip(h1, "-6", "neigh", "show", "dev", "flannel-v6.1")).stdout,
        /PERMANENT/,
      );
    }),
});

Deno.test({
  name: "host-gw dual stack routes each peer's IPv6 subnet via its PublicIPv6 on the underlay",
  ignore: !ROOT,
  fn: () =>
    withHosts(async (h1, h2) => {
      const [r1] = await pair(h1, h2, { type: "host-gw" });
      assert.equal(r1.mtu, 1500);
      assert.equal(r1.backendV6Data, null);
      assert.match(
        (await ip(h1, "-6", "route", "show", "fd10:0:0:2::/64")).stdout,
        /^fd10:0:0:2::\/64 via fd00::12 dev eth0 proto 111/,
      );
      assert.match(
        (await ip(h1, "route", "show", "10.10.2.0/24")).stdout,
        /via 172\.31\.254\.12 dev eth0 proto 111/,
      );
      // A container address on h2 (on its loopback here) answers through the route.
      await ip(h2, "addr", "add", "fd10:0:0:2::5/128", "dev", "lo", "nodad");
      assert.ok(await pings(h1, "fd10:0:0:2::5"));
    }),
});

Deno.test({
  name:
    "host-gw in an IPv6-only network routes no IPv4, and a peer off our IPv6 segment gets no route",
  ignore: !ROOT,
  fn: () =>
    withHosts(async (h1) => {
      const result = await runBackend(h1, {
        type: "host-gw",
        enableIPv4: false,
        own: leaseOf(1, {}, { ipv4: false }),
        peers: [
          leaseOf(2, {}, { ipv4: false }),
          { ...leaseOf(3, {}, { ipv4: false }), publicIpv6: "fd99::13" },
        ],
      });
      assert.deepEqual(result.conflicts, []);
      assert.equal((await ip(h1, "-4", "route", "show", "proto", "111")).stdout, "");
      const routes = (await ip(h1, "-6", "route", "show", "proto", "111")).stdout;
      assert.match(routes, /^fd10:0:0:2::\/64 via fd00::12 dev eth0/m);
      assert.doesNotMatch(routes, /fd10:0:0:3::/);
    }),
});

Deno.test("vxlan asks each peer for what its families need: BackendV6Data and PublicIPv6 for IPv6", () => {
  const pool = {
    network: { ip: 0xfd10n << 112n, prefixLen: 48 },
    subnetLen: 64,
    subnetMin: 0n,
    subnetMax: 0n,
  };
  const make = (enableIPv4: boolean) =>
    new VxlanBackend({
      config: {
        enableIPv4,
        ipv6: pool,
        network: enableIPv4 ? { ip: 0x0a0a0000, prefixLen: 16 } : { ip: 0, prefixLen: 0 },
        subnetLen: enableIPv4 ? 24 : 0,
        subnetMin: 0,
        subnetMax: 0,
        backend: { type: "vxlan", port: 8472, vni: 7, directRouting: false },
        raw: {},
      },
      underlay: {
        name: "lo",
        ip: 0x7f000001,
        prefixLen: 8,
        addresses: [0x7f000001],
        publicIp: 0x7f000001,
        publicIpv6: 0xfd00n << 112n | 0x11n,
        ipv6Addresses: [0xfd00n << 112n | 0x11n],
        ipv6PrefixLen: 64,
        mtu: 1500,
      },
      device: "flannel.7",
      stateDir: "/nonexistent",
    });
  const data = { VNI: 7, VtepMAC: "02:00:00:00:00:01" };
  const data6 = { VNI: 7, VtepMAC: "02:00:00:00:00:02" };
  const peer = (attrs: Record<string, unknown>, ipv4 = true) => ({
    subnet: ipv4 ? { ip: 0x0a0a0200, prefixLen: 24 } : { ip: 0, prefixLen: 0 },
    ipv6Subnet: { ip: 0xfd10n << 112n | 2n << 64n, prefixLen: 64 },
    attrs: { publicIp: 0x7f000002, backendType: "vxlan", ...attrs },
    etcdLeaseId: "1",
    modRevision: "1",
    createRevision: "1",
  });
  const dual = make(true);
  assert.equal(dual.device, "flannel.7");
  assert.equal(dual.mtu, 1430);
  assert.equal(
    dual.checkPeer(peer({ backendData: data, publicIpv6: 2n })),
    "BackendV6Data.VtepMAC is missing",
  );
  assert.equal(
    dual.checkPeer(peer({ backendData: data, backendV6Data: data6 })),
    "PublicIPv6 is missing",
  );
  assert.equal(
    dual.checkPeer(peer({ backendData: data, backendV6Data: data6, publicIpv6: 2n })),
    undefined,
  );
  assert.deepEqual(dual.claims(peer({ backendData: data, backendV6Data: data6 })), [
    "VtepMAC 02:00:00:00:00:01",
    "IPv6 VtepMAC 02:00:00:00:00:02",
  ]);
  // Keys in another case, as a hand-written lease may have them: flanneld's decoder folds them.
  const lower = { vni: 7, vtepmac: "02:00:00:00:00:03" };
  const upper6 = { VNI: 7, VTEPMAC: "02:00:00:00:00:04" };
  assert.equal(
    dual.checkPeer(peer({ backendData: lower, backendV6Data: upper6, publicIpv6: 2n })),
    undefined,
  );
  assert.deepEqual(dual.claims(peer({ backendData: lower, backendV6Data: upper6 })), [
    "VtepMAC 02:00:00:00:00:03",
    "IPv6 VtepMAC 02:00:00:00:00:04",
  ]);
  assert.equal(
    dual.checkPeer(peer({ backendData: { vtepMac: "01:00:5e:00:00:01" } })),
    `BackendData.VtepMAC "01:00:5e:00:00:01" is a multicast or broadcast MAC`,
  );
  // A peer on another VNI (it runs an earlier config) would be unreachable: skipped, and why.
  assert.equal(
    dual.checkPeer(
      peer({ backendData: { ...data, VNI: 2 }, backendV6Data: data6, publicIpv6: 2n }),
    ),
    "BackendData.VNI 2 is not this network's 7 (one of the two hosts runs an earlier config: restart it)",
  );
  assert.deepEqual(Object.keys(dual.backendV6Data!), ["VNI", "VtepMAC"]);
  const only6 = make(false);
  assert.equal(only6.device, "flannel-v6.7");
  assert.equal(only6.backendData, undefined);
  assert.equal(only6.checkPeer(peer({ backendV6Data: data6, publicIpv6: 2n }, false)), undefined);
  assert.deepEqual(only6.ownClaims, [`IPv6 VtepMAC ${only6.backendV6Data!.VtepMAC}`]);
});
