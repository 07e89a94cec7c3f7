/**
 * The daemon's side of the state file that `--health`, `wait` and `status` read: changes
 * are written in order and the file always ends with the latest state; changes made while
 * a write is under way go out together in the one write after it (with 5,000 peers the
 * state is ~1 MB of JSON, and a queue of one write per change grew without bound), a heartbeat
 * rewrites it every HEARTBEAT_MS so readers can tell a live daemon from a dead one, and
 * a start that fails takes the file back (and its folder, if the start made it). Opening it
 * takes a lock beside it, held until the process exits: a second agent for the same
 * subnet file and state folder is refused before it touches anything.
 */
import { FileLock } from "../ffi/file_lock.ts";
import {
  type DaemonState,
  HEARTBEAT_MS,
  processStartTime,
  statePath,
  writeState,
} from "./health.ts";
import { UsageError } from "./errors.ts";
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
  readonly #lock: FileLock;

  private constructor(dir: string, subnetFile: string, dirExisted: boolean, lock: FileLock) {
    this.path = statePath(dir, subnetFile);
    this.#dir = dir;
    this.#dirExisted = dirExisted;
    this.#lock = lock;
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
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (error) {
      throw new UsageError(
        `--state-dir ${JSON.stringify(dir)}: cannot make it a folder (${(error as Error).message})`,
      );
    }
    const lockPath = stateLockPath(dir, subnetFile);
    const lock = FileLock.tryAcquire(lockPath);
    if (!lock) {
      const pid = await lockHolder(lockPath);
      throw new Error(
        `another overlay agent${pid ? ` (pid ${pid})` : ""} runs for ` +
          `--subnet-file=${subnetFile} with --state-dir=${dir}: stop it first, or give this ` +
          `one a --subnet-file and --state-dir of its own`,
      );
    }
    await Deno.writeTextFile(lockPath, `${Deno.pid}\n`);
    return new StateFile(dir, subnetFile, existed, lock);
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

  /**
   * Publishes what `collect` returns every HEARTBEAT_MS until stopHeartbeat(); a second
   * call replaces the first's collector (the agent beats while it waits at boot too).
   */
  startHeartbeat(collect: () => Partial<DaemonState>): void {
    this.stopHeartbeat();
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
    if (this.#wrote) await this.remove();
    if (this.#dirExisted) return;
    await Deno.remove(this.#lock.path).catch(() => {});
    this.#lock.release();
    await Deno.remove(this.#dir).catch(() => {});
  }
}

/** The lock an agent holds while it runs for `subnetFile` with state in `dir`. */
export function stateLockPath(dir: string, subnetFile: string): string {
  return statePath(dir, subnetFile).replace(/\.json$/, ".lock");
}

/** The pid the lock's holder wrote into it, if it did. */
export async function lockHolder(lockPath: string): Promise<string | undefined> {
  const text = (await Deno.readTextFile(lockPath).catch(() => "")).trim();
  return /^\d+$/.test(text) ? text : undefined;
}
