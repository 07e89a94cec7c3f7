/**
 * The kernel backends against the references, side by side in one run:
 * - vxlan backend vs kernel vxlan made by hand, host to host between the same two hosts;
 * - host-gw vs the same routes added by hand, container to container;
 * - 1,000 peers written straight into etcd: time until all are programmed, and removed,
 *   and the agent's RSS with 1,000 peers.
 * And apart (`--only ipip`), where the kernel has ipip: the ipip backend vs a kernel ipip
 * tunnel made by hand, host to host, and its 1,000 peers.
 */
import { Lab, UNDERLAY_PREFIX } from "../lab/lab.ts";
import { ipipMissing } from "../lab/kernel_probe.ts";

const WRITE_LEASES = new URL("../lab/write_leases.ts", import.meta.url).pathname;

export interface PairFigures {
  backendGbps: number;
  byHandGbps: number;
  samples: { backend: number[]; byHand: number[] };
}

export interface KernelBenchResult {
  vxlan: PairFigures;
  hostGw: PairFigures;
  thousandPeers: Record<
    "vxlan" | "host-gw",
    { programMs: number; removeMs: number; rssMb: number }
  >;
}

export const KERNEL_TARGETS = { ratio: 0.95, programMs: 1000, removeMs: 1000, rssMb: 80 };

async function subnetBase(file: string): Promise<string> {
  return /FLANNEL_SUBNET=(\S+)\.1\//.exec(await Deno.readTextFile(file))![1];
}

const ROUNDS = 3;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function kernelBench(seconds = 5): Promise<KernelBenchResult> {
  // vxlan: the backend's device between two hosts, then a hand-made one beside it.
  let vxlan: PairFigures;
  {
    await using lab = await Lab.create({ prefix: "ovbvx" });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "vxlan" } });
    const [h1, h2] = await lab.readyHosts(2);
    const h2Overlay = (await subnetBase(h2.subnetFile)) + ".0";
    await lab.ping(h1, h2Overlay, { count: 3 });
    const vx = (host: typeof h1, peer: typeof h1, address: string) =>
      lab.sh(
        host.ns,
        `ip link add vx0 type vxlan id 99 dstport 4789 local ${host.ip} remote ${peer.ip} dev eth0 && ip addr add ${address}/24 dev vx0 && ip link set vx0 up`,
      );
    await vx(h1, h2, "10.99.0.1");
    await vx(h2, h1, "10.99.0.2");
    // Alternate the two so drift on the shared cores hits both alike; compare medians.
    const backend: number[] = [];
    const byHand: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      backend.push(await lab.iperf(h2.ns, h1.ns, h2Overlay, seconds));
      byHand.push(await lab.iperf(h2.ns, h1.ns, "10.99.0.2", seconds));
    }
    vxlan = {
      backendGbps: median(backend),
      byHandGbps: median(byHand),
      samples: { backend, byHand },
    };
  }
  // host-gw: the backend's routes, then the same routes by hand with the agents stopped.
  let hostGw: PairFigures;
  {
    await using lab = await Lab.create({ prefix: "ovbhg" });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "host-gw" } });
    const [h1, h2] = await lab.readyHosts(2);
    const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
    await lab.ping(c1, c2.ip, { count: 3 });
    const backend: number[] = [];
    const byHand: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      backend.push(await lab.iperf(c2.ns, c1.ns, c2.ip, seconds));
      await lab.agent(h1)!.stop();
      await lab.agent(h2)!.stop();
      for (const [host, peer] of [[h1, h2], [h2, h1]] as const) {
        const subnet = `${await subnetBase(peer.subnetFile)}.0/24`;
        await lab.sh(
          host.ns,
          `ip route del ${subnet}; ip route add ${subnet} via ${peer.ip} dev eth0`,
        );
      }
      byHand.push(await lab.iperf(c2.ns, c1.ns, c2.ip, seconds));
      lab.startAgent(h1);
      lab.startAgent(h2);
      await lab.waitReady(h1);
      await lab.waitReady(h2);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // let the agents settle
    }
    hostGw = {
      backendGbps: median(backend),
      byHandGbps: median(byHand),
      samples: { backend, byHand },
    };
  }
  const thousandPeers = {
    "vxlan": await thousand("vxlan"),
    "host-gw": await thousand("host-gw"),
  };
  return { vxlan, hostGw, thousandPeers };
}

export interface IpipBenchResult {
  /** Why it did not run: the kernel has no ipip. */
  skipped?: string;
  pair?: PairFigures;
  thousandPeers?: { programMs: number; removeMs: number; rssMb: number };
}

/**
 * The ipip backend's flannel.ipip between two hosts, host to host, against an ipip tunnel
 * made by hand beside it. The hand-made one runs between second addresses on the hosts'
 * eth0: the kernel hands an arriving ipip packet to the tunnel whose local and remote
 * addresses match it best, so with the same addresses the hand-made point-to-point tunnel
 * would also take the backend's traffic.
 */
export async function ipipBench(seconds = 5): Promise<IpipBenchResult> {
  const missing = await ipipMissing();
  if (missing) return { skipped: missing };
  let pair: PairFigures;
  {
    await using lab = await Lab.create({ prefix: "iib" });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "ipip" } });
    const [h1, h2] = await lab.readyHosts(2);
    const h2Overlay = (await subnetBase(h2.subnetFile)) + ".0";
    await lab.ping(h1, h2Overlay, { count: 3 });
    const second = (host: typeof h1) => host.ip.replace(/\d+$/, (n) => String(Number(n) + 100));
    const tunnel = async (host: typeof h1, peer: typeof h1, address: string) => {
      const made = await lab.sh(
        host.ns,
        `ip addr add ${second(host)}/24 dev eth0 && ip link add ii0 type ipip local ${
          second(host)
        } remote ${
          second(peer)
        } dev eth0 ttl inherit nopmtudisc && ip addr add ${address}/24 dev ii0 && ip link set ii0 up`,
      );
      if (made.code !== 0) throw new Error(`ipip by hand on ${host.name}: ${made.stderr}`);
    };
    await tunnel(h1, h2, "10.99.0.1");
    await tunnel(h2, h1, "10.99.0.2");
    const backend: number[] = [];
    const byHand: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      backend.push(await lab.iperf(h2.ns, h1.ns, h2Overlay, seconds));
      byHand.push(await lab.iperf(h2.ns, h1.ns, "10.99.0.2", seconds));
    }
    pair = {
      backendGbps: median(backend),
      byHandGbps: median(byHand),
      samples: { backend, byHand },
    };
  }
  return { pair, thousandPeers: await thousand("ipip") };
}

async function thousand(backend: "vxlan" | "host-gw" | "ipip") {
  await using lab = await Lab.create({ prefix: "ovbk" });
  await lab.setConfig({
    Network: "10.64.0.0/10",
    SubnetMin: "10.64.1.0",
    SubnetMax: "10.64.255.0",
    Backend: { Type: backend },
  });
  const host = await lab.readyHost();
  const ips = Array.from({ length: 150 }, (_, i) => `${UNDERLAY_PREFIX}.${100 + i}`);
  const spec = { endpoint: lab.etcdEndpoint, count: 1000, network: "10.100.0.0", backend, ips };
  const count = async () =>
    (await lab.exec(host.ns, ["ip", "route", "show", "root", "10.100.0.0/14"])).stdout.split("\n")
      .filter(Boolean).length;
  const untilCount = async (want: number) => {
    while ((await count()) !== want) await new Promise((resolve) => setTimeout(resolve, 5));
    return Date.now();
  };
  const writer = lab.exec(lab.underlayNs, [
    "deno",
    "run",
    "-A",
    WRITE_LEASES,
    JSON.stringify(spec),
  ]);
  const programmedAt = await untilCount(1000);
  const wrote = await writer;
  const started = Number(/start (\d+)/.exec(wrote.stdout)![1]);
  const rss = Number(
    /VmRSS:\s+(\d+)/.exec(
      Deno.readTextFileSync(`/proc/${lab.agent(host)!.child.pid}/status`),
    )![1],
  ) / 1024;
  const remover = lab.exec(lab.underlayNs, [
    "deno",
    "run",
    "-A",
    WRITE_LEASES,
    JSON.stringify({ ...spec, delete: true }),
  ]);
  const removedAt = await untilCount(0);
  const removeStarted = Number(/start (\d+)/.exec((await remover).stdout)![1]);
  return { programMs: programmedAt - started, removeMs: removedAt - removeStarted, rssMb: rss };
}
