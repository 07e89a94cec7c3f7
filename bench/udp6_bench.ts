/**
 * The udp backend carrying IPv6 inner packets against the same backend carrying IPv4
 * ones, side by side in one run: two hosts running the backend directly in a dual-stack
 * network (lab/udp_pair.ts; the agent does not lease IPv6 subnets yet), iperf3 TCP between
 * their TUN addresses over IPv4 and over IPv6 (`iperf3 -6`) in alternating rounds, then
 * ping over each. Both go through the same data path, offloads on (TSO4/TSO6, UDP GSO/GRO).
 */
import { Lab } from "../lab/lab.ts";
import { udpPair } from "../lab/udp_pair.ts";

export interface Udp6BenchResult {
  ipv4Gbps: number;
  ipv6Gbps: number;
  samples: { ipv4: number[]; ipv6: number[] };
  pingAvgMs: { ipv4: number; ipv6: number };
  /** Drops of either host during the runs, by reason (none expected). */
  drops: Record<string, number>;
  seconds: number;
}

export const UDP6_TARGETS = { ratio: 0.9 };

const ROUNDS = 3;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function iperf(lab: Lab, server: string, client: string, ip: string, seconds: number) {
  const family = ip.includes(":") ? ["-6"] : [];
  const daemon = lab.spawn(server, ["iperf3", "-s", "-1", ...family]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const result = await lab.exec(client, [
    "iperf3",
    ...family,
    "-c",
    ip,
    "-t",
    String(seconds),
    "-J",
  ]);
  await daemon.stop("SIGKILL");
  if (result.code !== 0) throw new Error(`iperf3 to ${ip} failed: ${result.stdout.slice(-300)}`);
  return JSON.parse(result.stdout).end.sum_received.bits_per_second / 1e9;
}

async function pingAvg(lab: Lab, ns: string, ip: string): Promise<number> {
  const result = await lab.exec(ns, ["ping", "-n", "-q", "-c", "20", "-i", "0.2", ip]);
  const match = /= [\d.]+\/([\d.]+)\//.exec(result.stdout);
  if (!match) throw new Error(`ping ${ip} failed: ${result.stdout}`);
  return Number(match[1]);
}

export async function udp6Bench(seconds = 5): Promise<Udp6BenchResult> {
  await using lab = await Lab.create({ prefix: "u6" });
  const [h1, h2] = await udpPair(lab, { ipv6: true });
  const samples = { ipv4: [] as number[], ipv6: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which goes first, so neither always runs on a warmer machine.
    const order = round % 2 === 0 ? ["ipv4", "ipv6"] as const : ["ipv6", "ipv4"] as const;
    for (const family of order) {
      const ip = family === "ipv4" ? h2.tunIp : h2.tunIp6;
      samples[family].push(await iperf(lab, h2.ns, h1.ns, ip, seconds));
    }
  }
  const pingAvgMs = {
    ipv4: await pingAvg(lab, h1.ns, h2.tunIp),
    ipv6: await pingAvg(lab, h1.ns, h2.tunIp6),
  };
  const drops: Record<string, number> = {};
  for (const host of [h1, h2]) {
    for (const [name, value] of Object.entries(host.counters())) {
      if (name.startsWith("drop_") && value > 0) drops[name] = (drops[name] ?? 0) + value;
    }
  }
  return {
    ipv4Gbps: median(samples.ipv4),
    ipv6Gbps: median(samples.ipv6),
    samples,
    pingAvgMs,
    drops,
    seconds,
  };
}
