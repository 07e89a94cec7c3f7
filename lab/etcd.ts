/**
 * Real etcd on free loopback ports with temp data dirs, for the tests and the benches: a
 * single member, or a cluster whose members can be stopped and started again (the
 * namespace lab starts its own members: lab.ts).
 */
import { Etcd3 } from "etcd3";
import { waitFor } from "./wait.ts";

/** A free TCP port on loopback. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export interface EtcdServer extends AsyncDisposable {
  readonly endpoint: string;
  readonly client: Etcd3;
  readonly dataDir: string;
  stop(): Promise<void>;
}

export interface EtcdCluster extends AsyncDisposable {
  readonly endpoints: string[];
  /** Kills member `i` (SIGKILL), keeping its data. */
  stopMember(i: number): Promise<void>;
  /** Starts member `i` again with its data. */
  startMember(i: number): void;
  stop(): Promise<void>;
}

/** Starts a single-member etcd on loopback (with `args` added) and waits until it answers. */
export async function startEtcd(options: { args?: string[] } = {}): Promise<EtcdServer> {
  const cluster = await startEtcdCluster(1, options);
  const endpoint = cluster.endpoints[0];
  const client = new Etcd3({ hosts: endpoint });
  const stop = async () => {
    client.close();
    await cluster.stop();
  };
  return { endpoint, client, dataDir: cluster.dataDir, stop, [Symbol.asyncDispose]: stop };
}

/** Starts `size` members on loopback and waits until every one answers. */
export async function startEtcdCluster(
  size: number,
  options: { args?: string[] } = {},
): Promise<EtcdCluster & { dataDir: string }> {
  const dataDir = await Deno.makeTempDir({ prefix: "overlay-etcd-" });
  const members = Array.from({ length: size }, (_, i) => ({
    name: `m${i}`,
    client: `http://127.0.0.1:${freePort()}`,
    peer: `http://127.0.0.1:${freePort()}`,
    process: undefined as Deno.ChildProcess | undefined,
  }));
  const initialCluster = members.map((m) => `${m.name}=${m.peer}`).join(",");
  const startMember = (i: number, state = "existing") => {
    const member = members[i];
    member.process = new Deno.Command("etcd", {
      args: [
        `--name=${member.name}`,
        `--data-dir=${dataDir}/${member.name}`,
        `--listen-client-urls=${member.client}`,
        `--advertise-client-urls=${member.client}`,
        `--listen-peer-urls=${member.peer}`,
        `--initial-advertise-peer-urls=${member.peer}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-state=${state}`,
        "--log-level=error",
        "--logger=zap",
        ...(options.args ?? []),
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
  };
  const stopMember = async (i: number) => {
    const process = members[i].process;
    members[i].process = undefined;
    if (!process) return;
    try {
      process.kill("SIGKILL");
    } catch { /* already gone */ }
    await process.status;
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (let i = 0; i < size; i++) await stopMember(i);
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };
  members.forEach((_, i) => startMember(i, "new"));
  try {
    for (const member of members) {
      await waitFor(async () => {
        // /health answers 200 once the member has a leader, whatever auth says.
        const response = await fetch(`${member.client}/health`);
        await response.body?.cancel();
        return response.ok;
      }, { timeoutMs: 15_000, what: `etcd on ${member.client}` });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    endpoints: members.map((m) => m.client),
    dataDir,
    stopMember,
    startMember: (i) => startMember(i),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
