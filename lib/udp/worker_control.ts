/**
 * How the agent and a data-path Worker (udp's, the userspace WireGuard path's) talk
 * without messages on the hot path: an Int32Array over a SharedArrayBuffer, [0] the stop
 * request, [1] the Worker's state. serveWorker is the Worker's entry point: it runs the
 * data path on the config the agent posts, then says how it ended.
 */

import { log } from "../log.ts";

export const CONTROL_STOP = 0;
export const CONTROL_STATE = 1;
export const DATA_PATH_STARTING = 0;
export const DATA_PATH_RUNNING = 1;
export const DATA_PATH_STOPPED = 2;
export const DATA_PATH_FAILED = 3;

/**
 * In a Worker, runs `run` on the first message (the config, with its control buffer) and
 * posts `{type: "stopped"}` or `{type: "failed", message}`; outside a Worker, nothing.
 */
export function serveWorker<C extends { readonly control: SharedArrayBuffer }>(
  run: (config: C) => void,
): void {
  if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "undefined") {
    return;
  }
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<C>) => void) | null;
    postMessage: (message: unknown) => void;
    close: () => void;
  };
  scope.onmessage = (event) => {
    const control = new Int32Array(event.data.control);
    try {
      run(event.data);
      Atomics.store(control, CONTROL_STATE, DATA_PATH_STOPPED);
      scope.postMessage({ type: "stopped" });
    } catch (error) {
      Atomics.store(control, CONTROL_STATE, DATA_PATH_FAILED);
      scope.postMessage({ type: "failed", message: (error as Error).message });
    }
    scope.close();
  };
}

/**
 * Asks data-path Workers to stop and waits up to `waitMs` for them to finish. True when
 * they stopped (their descriptors may be closed now); false when they did not, and were
 * terminated: their descriptors must stay open, a Worker may still be inside a system
 * call on them. Either way the Workers are gone afterwards.
 */
export async function stopWorkers(
  what: string,
  data: {
    readonly controls: readonly SharedArrayBuffer[];
    readonly workers: readonly Worker[];
    /** Settles when each Worker says it ended. */
    readonly running: readonly Promise<unknown>[];
  },
  waitMs: number,
): Promise<boolean> {
  for (const control of data.controls) Atomics.store(new Int32Array(control), CONTROL_STOP, 1);
  const running = data.running;
  let stopped = true;
  if (running.length > 0) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    stopped = await Promise.race([
      Promise.all(running).then(() => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), waitMs)),
    ]);
    clearTimeout(timer);
    if (stopped) log.info(`${what} data path stopped`);
    else {
      log.error(
        `${what} data path did not stop within ${waitMs} ms; terminating it and leaving its descriptors open`,
      );
    }
  }
  for (const worker of data.workers) worker.terminate();
  return stopped;
}
