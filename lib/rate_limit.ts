/**
 * Per-key rate limit for log lines about etcd keys: a key that flaps (hostile or broken)
 * gets at most one line per window; the next line says how many were held back. A key
 * whose window is over is forgotten at the next sweep (one a window) unless lines were
 * held back for it, so 5,000 peers that joined once are not kept; past 10,000 keys every
 * key whose window is over goes, held-back counts too, so a flood of distinct keys holds
 * no memory beyond one window's worth.
 */
const MANY_KEYS = 10_000;

export class KeyedRateLimit {
  readonly #windowMs: number;
  readonly #last = new Map<string, { at: number; held: number }>();
  #sweptAt = 0;
  /** Keys left after the last sweep: a flood sweeps again only once it has doubled them. */
  #sweepAbove = MANY_KEYS;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** Whether a line about `key` may be logged now, and how many were held back before it. */
  allow(key: string, now = Date.now()): { allowed: boolean; held: number } {
    const last = this.#last.get(key);
    if (last && now - last.at < this.#windowMs) {
      last.held++;
      return { allowed: false, held: last.held };
    }
    this.#last.set(key, { at: now, held: 0 });
    if (this.#last.size > this.#sweepAbove) this.#sweep(now, true);
    else if (now - this.#sweptAt >= this.#windowMs) this.#sweep(now, false);
    return { allowed: true, held: last?.held ?? 0 };
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#last.size;
  }

  #sweep(now: number, flood: boolean): void {
    this.#sweptAt = now;
    for (const [key, last] of this.#last) {
      if (now - last.at >= this.#windowMs && (flood || last.held === 0)) this.#last.delete(key);
    }
    // Only a flood sweep moves the threshold: raised by the periodic one (which keeps keys
    // with lines held back), it would let those pile up past any bound.
    if (flood) this.#sweepAbove = Math.max(MANY_KEYS, 2 * this.#last.size);
  }
}
