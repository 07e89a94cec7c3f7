/**
 * Cryptokey routing (whitepaper §2): a longest-prefix-match table from IPv4 prefixes to
 * peers. Outbound, it picks the peer (and so the key) for a destination; inbound, a
 * decrypted packet is accepted only when its source maps back to the peer whose key
 * decrypted it.
 *
 * One Map per prefix length, keyed by the masked address, and the lengths in use kept
 * in descending order: a lookup tries each length in use once and allocates nothing.
 * IPv4 only (flannel's wireguard backend puts IPv6 on a separate device).
 */
import { formatIp4Net, type Ip4Net, parseIp4Net, prefixMask } from "../ip.ts";

/** Parses "10.10.1.0/24" (a bare address means /32) into a network; throws when invalid. */
export function parsePrefix(text: string): Ip4Net {
  const net = parseIp4Net(text.includes("/") ? text : `${text}/32`);
  if (!net) {
    throw new Error(`Invalid allowed IP "${text}": expected an IPv4 prefix such as 10.10.1.0/24`);
  }
  return net;
}

/** Longest-prefix match from IPv4 addresses to values (peers). */
export class AllowedIps<T> {
  readonly #byLength: Map<number, T>[] = Array.from({ length: 33 }, () => new Map());
  #lengths: number[] = [];

  /** Routes `address/length` to `value`, replacing whichever value had that exact prefix. */
  insert(address: number, length: number, value: T): void {
    this.#byLength[length].set(address & prefixMask(length), value);
    this.#refreshLengths();
  }

  /** Removes every prefix that routes to `value`. */
  removeValue(value: T): void {
    for (const map of this.#byLength) {
      for (const [key, owner] of map) if (owner === value) map.delete(key);
    }
    this.#refreshLengths();
  }

  /** The value of the longest prefix containing `address`, or undefined. */
  lookup(address: number): T | undefined {
    const lengths = this.#lengths;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i];
      // Keys are the signed 32-bit masked address: small integers, so no number is boxed.
      const found = this.#byLength[length].get(address & prefixMask(length));
      if (found !== undefined) return found;
    }
    return undefined;
  }

  /** The prefixes routed to `value`, as "a.b.c.d/len". */
  prefixesOf(value: T): string[] {
    const out: string[] = [];
    for (let length = 32; length >= 0; length--) {
      for (const [key, owner] of this.#byLength[length]) {
        if (owner === value) {
          out.push(formatIp4Net({ ip: key >>> 0, prefixLen: length }));
        }
      }
    }
    return out;
  }

  #refreshLengths(): void {
    this.#lengths = [];
    for (let length = 32; length >= 0; length--) {
      if (this.#byLength[length].size > 0) this.#lengths.push(length);
    }
  }
}
