/**
 * The vxlan backend over an IPv6 underlay against kernel vxlan over IPv6 made by hand,
 * side by side in one run: two hosts of a dual-stack network, iperf3 TCP over IPv6
 * between their `flannel-v6.<VNI>` addresses, and between the addresses of a hand-made
 * `vxlan … local <ipv6> remote <peer ipv6>` device beside it, in alternating rounds.
 */
import { Lab } from "../lab/lab.ts";

export interface Vxlan6BenchResult {
  backendGbps: number;
  byHandGbps: number;
  samples: { backend: number[]; byHand: number[] };
  seconds: number;
}

export const VXLAN6_TARGETS = { ratio: 0.95 };

const ROUNDS = 3;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The IPv6 subnet's base address from a subnet file: the v6 device's own address. */
async function ipv6Base(file: string): Promise<string> {
  return /FLANNEL_IPV6_SUBNET=(\S+::)1\//.exec(await Deno.readTextFile(file))![1];
}

export async function vxlan6Bench(seconds = 5): Promise<Vxlan6BenchResult> {
  await using lab = await Lab.create({ prefix: "ovbv6", ipv6: true });
  await lab.setConfig({
    Network: "10.10.0.0/16",
    EnableIPv6: true,
    IPv6Network: "fd10::/48",
    Backend: { Type: "vxlan" },
  });
  const [h1, h2] = await lab.readyHosts(2);
  const h2Overlay = await ipv6Base(h2.subnetFile);
  await lab.ping(h1, h2Overlay, { count: 3 });
  const byHand = (host: typeof h1, peer: typeof h1, address: string) =>
    lab.sh(
      host.ns,
      `ip link add vx6 type vxlan id 99 dstport 4789 local ${host.ip6} remote ${peer.ip6} dev eth0 && ` +
        `ip addr add ${address}/64 dev vx6 nodad && ip link set vx6 up`,
    );
  await byHand(h1, h2, "fd99::1");
  await byHand(h2, h1, "fd99::2");
  await lab.ping(h1, "fd99::2", { count: 3 });
  // Alternate the two so drift on the shared cores hits both alike; compare medians.
  const samples = { backend: [] as number[], byHand: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    samples.backend.push(await lab.iperf(h2.ns, h1.ns, h2Overlay, seconds));
    samples.byHand.push(await lab.iperf(h2.ns, h1.ns, "fd99::2", seconds));
  }
  return {
    backendGbps: median(samples.backend),
    byHandGbps: median(samples.byHand),
    samples,
    seconds,
  };
}
