/**
 * Capped exponential backoff with full jitter, for every retry loop that talks to etcd:
 * a fleet of hosts retrying a recovering etcd must not arrive in lockstep. Each delay is
 * drawn at random between 0 and min(cap, base · 2^attempt), so the first retry stays
 * fast and a thousand hosts spread their retries over the whole window.
 */
export class Backoff {
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: { baseMs: number; capMs: number; random?: () => number }) {
    this.#baseMs = options.baseMs;
    this.#capMs = options.capMs;
    this.#random = options.random ?? Math.random;
  }

  /** The same delay every time, no jitter: how the agent retried before (the bench's baseline). */
  static fixed(ms: number): Backoff {
    return new Backoff({ baseMs: ms, capMs: ms, random: () => 1 });
  }

  /** The upper bound of the next delay, before jitter. */
  get window(): number {
    return Math.min(this.#capMs, this.#baseMs * 2 ** this.#attempt);
  }

  /** The next delay in ms; each call widens the window until the cap. */
  next(): number {
    const delay = this.#random() * this.window;
    if (this.window < this.#capMs) this.#attempt++;
    return delay;
  }

  /** Back to the first, shortest window (after a success). */
  reset(): void {
    this.#attempt = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
