/**
 * Per-packet problems are counted by the data path, never logged per packet: this logs
 * at most one line every 10 s with what was dropped since the last line.
 */
import { log } from "./log.ts";

const REPORT_EVERY_MS = 10_000;

export class DropReporter {
  #last: Record<string, number> = {};
  #loggedAt = 0;

  /** Looks at the data path's counters; logs the new drops when the last line is old enough. */
  report(counters: Record<string, number>): void {
    const now = Date.now();
    if (now - this.#loggedAt < REPORT_EVERY_MS) return;
    const fresh: Record<string, number> = {};
    let total = 0;
    for (const [name, value] of Object.entries(counters)) {
      if (!name.startsWith("drop_")) continue;
      const delta = value - (this.#last[name] ?? 0);
      if (delta > 0) fresh[name.slice("drop_".length)] = delta;
      total += delta;
    }
    this.#last = { ...counters };
    if (total > 0) {
      this.#loggedAt = now;
      log.warn("data path dropped packets", { total, ...fresh });
    }
  }
}
