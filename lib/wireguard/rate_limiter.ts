/**
 * Per-source-address token bucket for handshake messages under load (wireguard-go's
 * ratelimiter): 20 a second, bursts of up to 5 (4 at one instant). Applied only after
 * a valid mac2, i.e. to senders that proved they receive at that address. The table is
 * bounded: entries idle for over a second are swept, and when it is full a new address
 * is refused — a flood of spoofed sources cannot grow it.
 */

const PACKETS_PER_SECOND = 20;
const PACKETS_BURSTABLE = 5;
const PACKET_COST_MS = 1000 / PACKETS_PER_SECOND;
const MAX_TOKENS_MS = PACKET_COST_MS * PACKETS_BURSTABLE;
const IDLE_MS = 1000;

interface Bucket {
  tokens: number;
  last: number;
}

/** A token bucket per IPv4 source address (host-order number). */
export class RateLimiter {
  readonly #table = new Map<number, Bucket>();
  readonly #capacity: number;

  /** At most `capacity` addresses are tracked at once. */
  constructor(capacity = 16_384) {
    this.#capacity = capacity;
  }

  /** Whether one more handshake message from `ip` may be processed at `now` (ms). */
  allow(ip: number, now: number): boolean {
    const bucket = this.#table.get(ip);
    if (bucket === undefined) {
      if (this.#table.size >= this.#capacity) return false;
      this.#table.set(ip, { tokens: MAX_TOKENS_MS - PACKET_COST_MS, last: now });
      return true;
    }
    bucket.tokens = Math.min(MAX_TOKENS_MS, bucket.tokens + (now - bucket.last));
    bucket.last = now;
    if (bucket.tokens > PACKET_COST_MS) {
      bucket.tokens -= PACKET_COST_MS;
      return true;
    }
    return false;
  }

  /** Drops entries idle for more than a second. */
  sweep(now: number): void {
    for (const [ip, bucket] of this.#table) {
      if (now - bucket.last > IDLE_MS) this.#table.delete(ip);
    }
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.#table.size;
  }
}
