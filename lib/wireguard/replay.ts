/**
 * The receive-side replay window (RFC 6479, as wireguard-go's replay.Filter): a ring of
 * 256 32-bit blocks. The newest counter seen is `last`; a counter up to WINDOW_SIZE
 * below it is accepted once, anything older is refused. Moving forward clears only
 * the blocks skipped over, so each check is O(1) amortised and allocates nothing.
 *
 * Counters are JS numbers. WireGuard's limit, REJECT_AFTER_MESSAGES = 2^64 − 2^13 − 1,
 * cannot be represented; numbers are exact up to 2^53, so the filter refuses counters
 * at or above MAX_COUNTER = 2^53 − 1. No honest peer gets there: at 10^7 packets a
 * second that is 28 years on one key, and keys are replaced every 2 minutes.
 */

const BLOCK_BITS = 32;
const RING_BLOCKS = 256;
const BLOCK_MASK = RING_BLOCKS - 1;

/** How far behind the newest counter an older one may still arrive: 8,160. */
export const WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS;

/** REJECT_AFTER_MESSAGES as far as numbers can count: 2^53 − 1 (see the module comment). */
export const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

/** A sliding anti-replay window for one receiving key. */
export class ReplayFilter {
  readonly #ring = new Uint32Array(RING_BLOCKS);
  #last = 0;

  /** Forgets every counter seen (a fresh key). */
  reset(): void {
    this.#last = 0;
    this.#ring.fill(0);
  }

  /**
   * Whether `counter` could be accepted, without recording it: for refusing replays
   * before paying for a decryption. `validate` is still needed after authentication.
   */
  check(counter: number, limit = MAX_COUNTER): boolean {
    if (!(counter < limit) || !(counter >= 0)) return false;
    if (counter > this.#last) return true;
    if (this.#last - counter > WINDOW_SIZE) return false;
    const block = Math.floor(counter / BLOCK_BITS) & BLOCK_MASK;
    return (this.#ring[block] & (1 << (counter % BLOCK_BITS))) === 0;
  }

  /**
   * Accepts `counter` once: true when it is new and within the window (and then records
   * it), false for a replay, a counter too old, or one at or above `limit`.
   */
  validate(counter: number, limit = MAX_COUNTER): boolean {
    if (!(counter < limit) || !(counter >= 0)) return false;
    const index = Math.floor(counter / BLOCK_BITS);
    if (counter > this.#last) {
      // Clear the blocks between the old newest and this one (at most the whole ring).
      const current = Math.floor(this.#last / BLOCK_BITS);
      const diff = Math.min(index - current, RING_BLOCKS);
      for (let i = 1; i <= diff; i++) this.#ring[(current + i) & BLOCK_MASK] = 0;
      this.#last = counter;
    } else if (this.#last - counter > WINDOW_SIZE) {
      return false;
    }
    const block = index & BLOCK_MASK;
    const bit = 1 << (counter % BLOCK_BITS);
    const old = this.#ring[block];
    if ((old & bit) !== 0) return false;
    this.#ring[block] = old | bit;
    return true;
  }
}
