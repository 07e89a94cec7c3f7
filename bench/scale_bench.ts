/**
 * The control plane at 5,000 hosts (`--only scale`): one agent (vxlan) and the other
 * hosts as leases written straight into a real etcd, with no data path behind them.
 * A route monitor in the agent's namespace (bench/route_monitor.ts) stamps every peer
 * route the kernel adds or deletes, so nothing polls the kernel while the agent works.
 * - 5,000 leases in etcd, then the agent starts: time from start until all 5,000 are
 *   programmed; then all deleted: until all are removed; then all written again with the
 *   agent running: until all are programmed. Agent RSS with 5,000 peers.
 * - Churn: with 5,000 peers, 100 hosts join and 100 leave per second for 60 s
 *   (bench/churn_leases.ts); for each change, the time from sending it to etcd until its
 *   route appears or disappears; at the end the kernel's routes, neighbours and FDB entries
 *   are compared with the leases; the agent's RSS is sampled every second.
 */
import { agentV8Flags } from "../lab/overlay_argv.ts";
import { Lab, UNDERLAY_PREFIX } from "../lab/lab.ts";
import type { ChurnChange } from "./churn_leases.ts";

const WRITE_LEASES = new URL("../lab/write_leases.ts", import.meta.url).pathname;
const CHURN_LEASES = new URL("./churn_leases.ts", import.meta.url).pathname;
const ROUTE_MONITOR = new URL("./route_monitor.ts", import.meta.url).pathname;

export const SCALE_TARGETS = {
  peers: 5000,
  programMs: 3000,
  removeMs: 3000,
  rssMb: 100,
  churnRate: 100,
  churnSeconds: 60,
  churnApplyMs: 1000,
};

export interface ScaleBenchResult {
  /** The V8 flags the agent ran with: the overlay task's, or "" for V8's defaults. */
  v8Flags: string;
  peers: number;
  /** Agent started with every lease in etcd → every route programmed. */
  startToProgrammedMs: number;
  /** First delete sent → every route gone. */
  removeMs: number;
  /** First lease written (agent running) → every route programmed. */
  writeToProgrammedMs: number;
  /** Agent RSS once every peer is programmed, after start and after the rewrite. */
  rssMb: { afterStart: number; afterRewrite: number };
  churn: ChurnFigures;
}

export interface ChurnFigures {
  rate: number;
  seconds: number;
  changes: number;
  /** Send to etcd → route added or deleted in the kernel, per change. */
  applyMs: { median: number; p99: number; max: number };
  /** Changes whose route never appeared or disappeared (within 10 s after the churn). */
  lost: number;
  writeFailures: number;
  /** At the end, kernel entries (routes / neighbours / FDB) that differ from the leases. */
  mismatches: { routes: number; neighbours: number; fdb: number };
  /** Agent RSS sampled every second during the churn. */
  rssMb: { start: number; end: number; max: number; min: number };
  monitorOverflows: number;
}

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads the route monitor's lines as they come: the current set and every event. */
class RouteWatch {
  readonly routes = new Set<string>();
  /** subnet → its events in order: [ms, "+" | "-"]. */
  readonly events = new Map<string, [number, string][]>();
  overflows = 0;
  /** Time of the last event read. */
  lastMs = 0;
  #read = 0;
  readonly #log: () => string;

  constructor(log: () => string) {
    this.#log = log;
  }

  poll(): void {
    const text = this.#log();
    const end = text.lastIndexOf("\n") + 1;
    if (end <= this.#read) return;
    for (const line of text.slice(this.#read, end).split("\n")) {
      if (line === "overflow") this.overflows++;
      const match = /^(\d+) ([+-]) (\S+)$/.exec(line);
      if (!match) continue;
      const [, ms, op, subnet] = match;
      if (op === "+") this.routes.add(subnet);
      else this.routes.delete(subnet);
      let list = this.events.get(subnet);
      if (!list) this.events.set(subnet, list = []);
      list.push([Number(ms), op]);
      this.lastMs = Number(ms);
    }
    this.#read = end;
  }

  /** Waits until `done` holds; returns the time of the last event then. */
  async until(done: (routes: Set<string>) => boolean, timeoutMs = 60_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      this.poll();
      if (done(this.routes)) return this.lastMs;
      if (Date.now() > deadline) {
        throw new Error(`route monitor: gave up waiting with ${this.routes.size} routes`);
      }
      await sleep(20);
    }
  }
}

function subnetOf(base: number, peer: number): string {
  const ip = (base + (peer + 1) * 256) >>> 0;
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.0/24`;
}

export async function scaleBench(
  options: { peers?: number; rate?: number; seconds?: number; v8Defaults?: boolean } = {},
): Promise<ScaleBenchResult> {
  const v8Flags = options.v8Defaults ? "" : agentV8Flags();
  const peers = options.peers ?? SCALE_TARGETS.peers;
  const rate = options.rate ?? SCALE_TARGETS.churnRate;
  const seconds = options.seconds ?? SCALE_TARGETS.churnSeconds;
  await using lab = await Lab.create({ prefix: "cp" });
  await lab.setConfig({
    Network: "10.64.0.0/10",
    SubnetMin: "10.64.1.0",
    SubnetMax: "10.64.255.0",
    Backend: { Type: "vxlan" },
  });
  const host = await lab.addHost();
  // Peers hold 10.65.1.0/24 on; the agent's own subnet (10.64.x.0/24) is left out below.
  const monitor = lab.spawn(host.ns, ["deno", "run", "-A", ROUTE_MONITOR, "10.64.0.0/10"]);
  while (!monitor.log().includes("ready\n")) await sleep(20);
  const routes = new RouteWatch(monitor.log);
  const network = "10.65.0.0";
  const base = (10 << 24 | 65 << 16) >>> 0;
  const ips = Array.from({ length: 150 }, (_, i) => `${UNDERLAY_PREFIX}.${100 + i}`);
  const spec = { endpoint: lab.etcdEndpoint, count: peers, network, backend: "vxlan", ips };
  const writeLeases = async (extra: Record<string, unknown> = {}) => {
    const wrote = await lab.exec(lab.underlayNs, [
      "deno",
      "run",
      "-A",
      WRITE_LEASES,
      JSON.stringify({ ...spec, ...extra }),
    ]);
    if (wrote.code !== 0) throw new Error(`write_leases: ${wrote.stderr}`);
    return Number(/start (\d+)/.exec(wrote.stdout)![1]);
  };
  const peerRoutes = (set: Set<string>) => [...set].filter((s) => !s.startsWith("10.64.")).length;

  // 1. Every lease in etcd, then the agent starts.
  await writeLeases();
  const started = Date.now();
  const agent = lab.startAgent(host, [], { v8Defaults: options.v8Defaults });
  const pid = agent.child.pid;
  const programmed = await routes.until((set) => peerRoutes(set) === peers);
  const startToProgrammedMs = programmed - started;
  await lab.waitReady(host);
  await sleep(1000);
  const afterStart = rssMb(pid);

  // 2. All deleted.
  const removeStarted = await writeLeases({ delete: true });
  const removed = await routes.until((set) => peerRoutes(set) === 0);
  const removeMs = removed - removeStarted;

  // 3. All written again with the agent running.
  const writeStarted = await writeLeases();
  const rewritten = await routes.until((set) => peerRoutes(set) === peers);
  const writeToProgrammedMs = rewritten - writeStarted;
  await sleep(1000);
  const afterRewrite = rssMb(pid);

  // 4. Churn.
  const samples: number[] = [rssMb(pid)];
  const sampler = setInterval(() => samples.push(rssMb(pid)), 1000);
  const churned = await lab.exec(lab.underlayNs, [
    "deno",
    "run",
    "-A",
    CHURN_LEASES,
    JSON.stringify({ ...spec, existing: peers, rate, seconds }),
  ]);
  if (churned.code !== 0) throw new Error(`churn_leases: ${churned.stderr}`);
  const { changes, alive } = JSON.parse(churned.stdout) as {
    changes: ChurnChange[];
    alive: number[];
  };
  const want = new Set(alive.map((peer) => subnetOf(base, peer)));
  const settled = await routes.until(
    (set) => peerRoutes(set) === want.size && [...want].every((s) => set.has(s)),
    10_000,
  ).catch(() => undefined);
  clearInterval(sampler);
  samples.push(rssMb(pid));
  routes.poll();
  const applyMs: number[] = [];
  let lost = 0;
  for (const change of changes) {
    const events = routes.events.get(subnetOf(base, change.peer)) ?? [];
    const seen = events.find(([ms, op]) => op === change.op && ms >= change.sentMs);
    if (seen) applyMs.push(seen[0] - change.sentMs);
    else lost++;
  }
  const mismatches = await kernelMismatches(lab, host.ns, want);
  if (settled === undefined) console.error("  (the routes never settled to the leases)");
  return {
    v8Flags,
    peers,
    startToProgrammedMs,
    removeMs,
    writeToProgrammedMs,
    rssMb: { afterStart, afterRewrite },
    churn: {
      rate,
      seconds,
      changes: changes.length,
      applyMs: {
        median: percentile(applyMs, 0.5),
        p99: percentile(applyMs, 0.99),
        max: Math.max(...applyMs),
      },
      lost,
      writeFailures: changes.filter((c) => c.failed).length,
      mismatches,
      rssMb: {
        start: samples[0],
        end: samples[samples.length - 1],
        max: Math.max(...samples),
        min: Math.min(...samples),
      },
      monitorOverflows: routes.overflows,
    },
  };
}

/** Kernel entries on the host that differ from the peers `want` (subnets): symmetric difference. */
async function kernelMismatches(
  lab: Lab,
  ns: string,
  want: Set<string>,
): Promise<{ routes: number; neighbours: number; fdb: number }> {
  const difference = (have: Set<string>, wanted: Set<string>) =>
    [...have].filter((x) => !wanted.has(x)).length + [...wanted].filter((x) => !have.has(x)).length;
  const lines = async (argv: string[]) =>
    (await lab.exec(ns, argv)).stdout.split("\n").filter(Boolean);
  const routes = new Set(
    (await lines(["ip", "route", "show", "dev", "flannel.1"])).map((l) => l.split(" ")[0])
      .filter((s) => !s.startsWith("10.64.")),
  );
  const neighbours = new Set(
    (await lines(["ip", "neigh", "show", "dev", "flannel.1", "nud", "permanent"])).map((l) =>
      l.split(" ")[0].replace(/\.0$/, ".0/24")
    ),
  );
  const wantMacs = new Set(
    [...want].map((subnet) => {
      const [a, b, c] = subnet.split(".").map(Number);
      const i = (((a << 24 | b << 16 | c << 8) >>> 0) - ((10 << 24 | 65 << 16) >>> 0)) / 256 - 1;
      const hex = (shift: number) => ((i >> shift) & 255).toString(16).padStart(2, "0");
      return `02:aa:00:${hex(16)}:${hex(8)}:${hex(0)}`;
    }),
  );
  const fdb = new Set(
    (await lines(["bridge", "fdb", "show", "dev", "flannel.1"])).filter((l) => l.includes(" dst "))
      .map((l) => l.split(" ")[0]),
  );
  return {
    routes: difference(routes, want),
    neighbours: difference(neighbours, want),
    fdb: difference(fdb, wantMacs),
  };
}
