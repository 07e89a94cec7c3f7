/**
 * Shared test setup: a real etcd on a free loopback port with a temp data dir, and
 * the overlay command run exactly as the `overlay` task in deno.json runs it.
 */
import { overlayArgv } from "../lab/overlay_argv.ts";
import { type CommandOutput, runCommand } from "../lab/run.ts";

export { overlayArgv };
export { type EtcdServer, freePort, startEtcd } from "../lab/etcd.ts";
export { waitFor } from "../lab/wait.ts";

/** Options for Deno.test on tests that talk to etcd (grpc keeps timers of its own). */
/** `child`'s exit code once it exits, or -1 while it still runs after `ms`. */
export async function exitCodeWithin(child: Deno.ChildProcess, ms: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      child.status.then((status) => status.code),
      new Promise<number>((resolve) => timer = setTimeout(() => resolve(-1), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export const INTEGRATION = { sanitizeOps: false, sanitizeResources: false } as const;

/** Runs `overlay ARGS…` to completion. */
export async function overlay(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; netns?: string } = {},
): Promise<CommandOutput> {
  return await runCommand(wrapNetns(options.netns, [...overlayArgv(), ...args]), options);
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
