/**
 * A fleet reconnecting: 500 agents' worth of control plane (each its own etcd client, lease
 * watch and lease, renewed when the watch comes back, as the agent does) follow a real etcd
 * that is stopped for 20 s and started again. Measured: the peak request rate etcd sees
 * after it returns (its own grpc_server_started_total, sampled every 250 ms) and the time
 * until every watch has resumed, with the agent's jittered backoff and with the fixed
 * delays it used before (watch re-open 500 ms, refused requests 200 ms), in one run.
 */
import { Backoff } from "../lib/backoff.ts";
import { EtcdClient } from "../lib/etcd_client.ts";
import { SubnetRegistry } from "../lib/registry.ts";
import { type EtcdCluster, startEtcdCluster } from "../lab/etcd.ts";

export interface ReconnectFigures {
  /** Requests per second in the busiest 250 ms after etcd answered again. */
  peakPerSecond: number;
  /** From etcd answering again to the last watch re-created. */
  allResumedMs: number;
}

export interface ReconnectBenchResult {
  clients: number;
  downSeconds: number;
  jittered: ReconnectFigures;
  fixed: ReconnectFigures;
}

export const RECONNECT_TARGETS = { peakRatio: 1 / 5, allResumedMs: 10_000 };

const PREFIX = "/coreos.com/network";
const WINDOW_MS = 250;

async function startedTotal(endpoint: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith("grpc_server_started_total{")) sum += Number(line.split(" ").pop());
    }
    return sum;
  } catch {
    return undefined;
  }
}

async function run(
  cluster: EtcdCluster,
  clients: number,
  downSeconds: number,
  fixed: boolean,
): Promise<ReconnectFigures> {
  const endpoint = cluster.endpoints[0];
  const setup = new EtcdClient({ endpoints: [endpoint], prefix: PREFIX });
  const setupRegistry = new SubnetRegistry(setup, PREFIX);
  await setupRegistry.putConfigText(`{"Network":"10.10.0.0/16"}`);
  const listing = await setupRegistry.listLeases();
  setup.close();
  let connected = 0;
  let resumedAt = 0;
  const fleet = await Promise.all(Array.from({ length: clients }, async () => {
    const client = new EtcdClient(
      { endpoints: [endpoint], prefix: PREFIX },
      fixed ? { transientBackoff: () => Backoff.fixed(200) } : {},
    );
    const registry = new SubnetRegistry(client, PREFIX);
    const lease = await client.leaseGrant(300);
    const watch = registry.watchLeases(listing, () => {}, {
      backoff: fixed ? Backoff.fixed(500) : undefined,
      onConnection: (up) => {
        connected += up ? 1 : -1;
        if (up) {
          if (connected === clients) resumedAt = Date.now();
          // As the agent does when etcd is back: renew at once.
          client.leaseKeepAlive(lease).catch(() => {});
        }
      },
    });
    await watch.ready;
    return { client, watch };
  }));
  connected = clients;
  await cluster.stopMember(0);
  await new Promise((resolve) => setTimeout(resolve, downSeconds * 1000));
  cluster.startMember(0);
  let base: number | undefined;
  while ((base = await startedTotal(endpoint)) === undefined) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const back = Date.now();
  let previous = base;
  let peak = 0;
  while (Date.now() - back < 15_000 || connected < clients) {
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    const now = await startedTotal(endpoint);
    if (now === undefined) continue;
    peak = Math.max(peak, ((now - previous) * 1000) / WINDOW_MS);
    previous = now;
    if (Date.now() - back > 60_000) break;
  }
  await Promise.all(fleet.map(async ({ client, watch }) => {
    await watch.close();
    client.close();
  }));
  return {
    peakPerSecond: peak,
    allResumedMs: connected >= clients ? Math.max(0, resumedAt - back) : Infinity,
  };
}

export async function reconnectBench(
  options: { clients?: number; downSeconds?: number } = {},
): Promise<ReconnectBenchResult> {
  const clients = options.clients ?? 500;
  const downSeconds = options.downSeconds ?? 20;
  await using cluster = await startEtcdCluster(1);
  const fixed = await run(cluster, clients, downSeconds, true);
  const jittered = await run(cluster, clients, downSeconds, false);
  return { clients, downSeconds, jittered, fixed };
}
