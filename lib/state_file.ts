/**
 * The daemon's side of the state file that `--health`, `wait` and `status` read: every
 * change is written in order (the file always ends with the latest state), a heartbeat
 * rewrites it every HEARTBEAT_MS so readers can tell a live daemon from a dead one, and
 * a start that fails takes the file back (and its folder, if the start made it).
 */
import {
  type DaemonState,
  HEARTBEAT_MS,
  processStartTime,
  statePath,
  writeState,
} from "./health.ts";
import { log } from "./log.ts";

export class StateFile {
  readonly path: string;
  readonly #dir: string;
  readonly #dirExisted: boolean;
  #state: DaemonState;
  #writing = Promise.resolve();
  #wrote = false;
  #heartbeat: ReturnType<typeof setInterval> | undefined;

  private constructor(dir: string, subnetFile: string, dirExisted: boolean) {
    this.path = statePath(dir, subnetFile);
    this.#dir = dir;
    this.#dirExisted = dirExisted;
    this.#state = {
      pid: Deno.pid,
      pidStart: processStartTime(Deno.pid) ?? "",
      ready: false,
      reason: "starting",
      heartbeatAt: Date.now(),
      subnetFile,
    };
  }

  /** The state file of the daemon that writes `subnetFile`, kept in `dir`. */
  static async open(dir: string, subnetFile: string): Promise<StateFile> {
    const existed = await Deno.stat(dir).then(() => true, () => false);
    return new StateFile(dir, subnetFile, existed);
  }

  get state(): DaemonState {
    return this.#state;
  }

  /** Merges `change` into the state and queues a write; resolves when it is written. */
  publish(change: Partial<DaemonState>): Promise<void> {
    this.#state = { ...this.#state, ...change, heartbeatAt: Date.now() };
    const snapshot = this.#state;
    this.#wrote = true;
    this.#writing = this.#writing.then(() =>
      writeState(this.path, snapshot).catch((error) =>
        log.error("cannot write state file", { path: this.path, error: error.message })
      )
    );
    return this.#writing;
  }

  /** Publishes what `collect` returns every HEARTBEAT_MS until stopHeartbeat(). */
  startHeartbeat(collect: () => Partial<DaemonState>): void {
    this.#heartbeat = setInterval(() => this.publish(collect()), HEARTBEAT_MS);
  }

  stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
  }

  /** Removes the file (a clean stop), after any queued write. */
  async remove(): Promise<void> {
    this.stopHeartbeat();
    await this.#writing;
    await Deno.remove(this.path).catch(() => {});
  }

  /** Takes back what a failed start wrote: the file, and the folder if it made it. */
  async discard(): Promise<void> {
    if (!this.#wrote) return;
    await this.remove();
    if (!this.#dirExisted) await Deno.remove(this.#dir).catch(() => {});
  }
}
