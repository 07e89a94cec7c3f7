/**
 * When a data-path Worker spins (poll() with no timeout, sched_yield between looks) and
 * when it sleeps in poll(): waking a thread costs far more on a virtual machine than the
 * packets it then moves, so after sparse traffic (a request whose reply comes back within
 * the window) the Worker spins for `windowMs`. After a burst of bulk traffic it sleeps at
 * once: more follows on its own (TCP's window keeps the queues fed, each wake-up then
 * moves many packets), and a spinning core is a core taken from the work that feeds it.
 */

/** A burst that moved this many inner bytes was bulk traffic. */
export const BULK_BURST_BYTES = 16_384;

export class BusyPoll {
  readonly #windowMs: number;
  #spinUntil = -Infinity;

  /** `windowMs`: how long to spin after sparse traffic (0: always sleep). */
  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** True while the loop should look without sleeping. */
  spinning(now: number): boolean {
    return now < this.#spinUntil;
  }

  /** After a burst of traffic that moved `bytes` inner bytes, ending at `now`. */
  burst(bytes: number, now: number): void {
    this.#spinUntil = bytes >= BULK_BURST_BYTES ? -Infinity : now + this.#windowMs;
  }
}

/**
 * After sparse traffic the Worker spins this long: a reply usually comes back within a few
 * hundred microseconds, and catching it awake saves a scheduler wake-up per hop (README,
 * "Benchmarks", has the ping figures). It yields the CPU between looks, so an idle agent
 * uses none.
 */
const DEFAULT_WINDOW_MS = 1;

/** The spin window: OVERLAY_BUSY_POLL_MS overrides the default (0 turns spinning off). */
export function busyPollWindowMs(): number {
  const text = Deno.env.get("OVERLAY_BUSY_POLL_MS");
  // Empty (`OVERLAY_BUSY_POLL_MS=` in an environment file) means unset, not 0.
  const value = text === undefined || text.trim() === "" ? NaN : Number(text);
  return Number.isFinite(value) && value >= 0 ? value : DEFAULT_WINDOW_MS;
}
