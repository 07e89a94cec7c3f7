/**
 * How the agent and a data-path Worker (udp's, the userspace WireGuard path's) talk
 * without messages on the hot path: an Int32Array over a SharedArrayBuffer, [0] the stop
 * request, [1] the Worker's state. serveWorker is the Worker's entry point: it runs the
 * data path on the config the agent posts, then says how it ended.
 */

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
