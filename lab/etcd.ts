/**
 * A real single-member etcd on a free loopback port with a temp data dir, for the tests
 * and the lease bench (the namespace lab starts its own members: lab.ts).
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

/** Starts a single-member etcd on loopback and waits until it answers. */
export async function startEtcd(): Promise<EtcdServer> {
  const dataDir = await Deno.makeTempDir({ prefix: "overlay-etcd-" });
  const clientPort = freePort();
  const peerPort = freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const process = new Deno.Command("etcd", {
    args: [
      "--name=test",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      "--log-level=error",
      "--logger=zap",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const client = new Etcd3({ hosts: endpoint });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    client.close();
    try {
      process.kill("SIGKILL");
    } catch { /* already gone */ }
    await process.status;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };
  try {
    await waitFor(async () => {
      await client.get("probe").string();
      return true;
    }, { timeoutMs: 10_000, what: `etcd on ${endpoint}` });
  } catch (error) {
    await stop();
    throw error;
  }
  return { endpoint, client, dataDir, stop, [Symbol.asyncDispose]: stop };
}
