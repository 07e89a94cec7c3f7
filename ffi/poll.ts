/**
 * Waiting for readiness: one blocking poll() on a few descriptors (struct pollfd is
 * 8 bytes: i32 fd, i16 events, i16 revents). The data path's Worker has nothing else to
 * do, so blocking in poll() is both free and the fastest way to wake.
 */
import { EINTR, errno, libc, SystemError } from "./libc.ts";

const POLLFD_SIZE = 8;
const POLLIN = 1;

export class Poller {
  readonly #fds: Uint8Array<ArrayBuffer>;
  readonly #count: number;
  readonly #libc = libc();

  /** Waits for input on each of `fds`. */
  constructor(fds: number[]) {
    this.#count = fds.length;
    this.#fds = new Uint8Array(fds.length * POLLFD_SIZE);
    const view = new DataView(this.#fds.buffer);
    fds.forEach((fd, i) => {
      view.setInt32(i * POLLFD_SIZE, fd, true);
      view.setInt16(i * POLLFD_SIZE + 4, POLLIN, true);
    });
  }

  /** Blocks up to `timeoutMs` (0: just looks): how many are ready, 0 on timeout or signal. */
  wait(timeoutMs: number): number {
    const ready = this.#libc.poll(this.#fds, this.#count, timeoutMs);
    if (ready >= 0) return ready;
    const code = errno();
    if (code === EINTR) return 0;
    throw new SystemError("poll", code);
  }

  /** Gives the CPU away for a moment (sched_yield), between looks while busy-polling. */
  pause(): void {
    this.#libc.sched_yield();
  }
}
