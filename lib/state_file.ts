/**
 * The daemon's side of the state file that `--health`, `wait` and `status` read: changes
 * are written in order and the file always ends with the latest state; changes made while
 * a write is under way go out together in the one write after it (with 5,000 peers the
 * state is ~1 MB of JSON, and a queue of one write per change grew without bound), a heartbeat
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
  /** Settles when the last write queued is done. */
  #writing = Promise.resolve();
  /** The write queued behind the one under way; it writes the state as it is when it starts. */
  #queued: Promise<void> | undefined;
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

  /**
   * Merges `change` into the state and queues a write, unless one that has not started yet
   * is queued already (it will write this change too); resolves once it is written.
   */
  publish(change: Partial<DaemonState>): Promise<void> {
    this.#state = { ...this.#state, ...change, heartbeatAt: Date.now() };
    this.#wrote = true;
    this.#queued ??= this.#writing = this.#writing.then(() => {
      this.#queued = undefined; // a change from now on needs a write of its own
      return writeState(this.path, this.#state).catch((error) =>
        log.error("cannot write state file", { path: this.path, error: error.message })
      );
    });
    return this.#queued;
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
