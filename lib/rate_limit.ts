/**
 * Per-key rate limit for log lines about etcd keys: a key that flaps (hostile or broken)
 * gets at most one line per window; the next line says how many were held back. Keys
 * are forgotten once their window is over, so a flood of distinct keys holds no memory.
 */
export class KeyedRateLimit {
  readonly #windowMs: number;
  readonly #last = new Map<string, { at: number; held: number }>();

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** Whether a line about `key` may be logged now, and how many were held back before it. */
  allow(key: string, now = Date.now()): { allowed: boolean; held: number } {
    if (this.#last.size > 10_000) this.#forgetOld(now);
    const last = this.#last.get(key);
    if (last && now - last.at < this.#windowMs) {
      last.held++;
      return { allowed: false, held: last.held };
    }
    this.#last.set(key, { at: now, held: 0 });
    return { allowed: true, held: last?.held ?? 0 };
  }

  #forgetOld(now: number): void {
    for (const [key, last] of this.#last) {
      if (now - last.at >= this.#windowMs) this.#last.delete(key);
    }
  }
}
