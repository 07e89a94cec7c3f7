/**
 * Shared test setup: a real etcd on a free loopback port with a temp data dir, and
 * the overlay command run exactly as the `overlay` task in deno.json runs it.
 */
import { Etcd3 } from "etcd3";
import { overlayArgv } from "./overlay_argv.ts";

export { overlayArgv };

/** Options for Deno.test on tests that talk to etcd (grpc keeps timers of its own). */
export const INTEGRATION = { sanitizeOps: false, sanitizeResources: false } as const;

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

/** Polls `check` until it returns a truthy value (errors count as not yet). */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let lastError: unknown;
  while (true) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${options.what ?? "condition"}` +
          (lastError ? ` (last error: ${(lastError as Error).message})` : ""),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `overlay ARGS…` to completion. */
export async function overlay(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; netns?: string } = {},
): Promise<CommandResult> {
  const [command, ...rest] = wrapNetns(options.netns, [...overlayArgv(), ...args]);
  const child = new Deno.Command(command, {
    args: rest,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

/** A running `overlay run` (or other long-lived command). */
export interface Agent extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Everything it printed on stderr so far. */
  log(): string;
  /** SIGTERM (or the given signal) and wait for exit; returns the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/** Starts `overlay ARGS…` in the background, collecting its stderr. */
export function spawnOverlay(
  args: string[],
  options: { env?: Record<string, string>; netns?: string } = {},
): Agent {
  const [command, ...rest] = wrapNetns(options.netns, [...overlayArgv(), ...args]);
  const child = new Deno.Command(command, {
    args: rest,
    env: options.env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  let exit: Promise<number> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    exit ??= (async () => {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      const status = await child.status;
      await reading;
      return status.code;
    })();
    return exit;
  };
  return {
    child,
    log: () => text,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop("SIGKILL");
    },
  };
}

function wrapNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...argv] : argv;
}

/** A temp folder removed at dispose. */
export async function tempDir(prefix = "overlay-test-"): Promise<string & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return Object.assign(new String(path) as string, {
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  }) as string & AsyncDisposable;
}
