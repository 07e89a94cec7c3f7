/**
 * WireGuard's DoS cookies (whitepaper §5.3, §5.4.7).
 *
 * Every handshake message carries mac1 = MAC(HASH("mac1----" || receiver's public key),
 * msg[..mac1]): anyone who does not know the receiver's public key is dropped for the
 * price of one BLAKE2s. Under load the receiver also demands mac2 = MAC(cookie,
 * msg[..mac2]), where cookie = MAC(secret, source ip || port) and the secret changes
 * every 2 minutes. A sender without a valid cookie gets a type-3 cookie reply that
 * carries the cookie encrypted (XChaCha20-Poly1305, key HASH("cookie--" || receiver's
 * public key), associated data = the mac1 it answers), proving a round trip from that
 * address before any Curve25519 work is spent on it.
 */
import { hash, mac } from "./blake2s.ts";
import type { CryptoProvider } from "./crypto.ts";
import {
  COOKIE_ENCRYPTED,
  COOKIE_NONCE,
  COOKIE_RECEIVER,
  COOKIE_REPLY_SIZE,
  MESSAGE_COOKIE_REPLY,
  writeU32Le,
} from "./messages.ts";
import { LABEL_COOKIE, LABEL_MAC1 } from "./noise.ts";

/** How long a cookie secret (and a received cookie) stays valid: 120 s. */
export const COOKIE_REFRESH_TIME_MS = 120_000;
const MAC_SIZE = 16;

/** Constant-time comparison of `length` bytes. */
function equalBytes(
  a: Uint8Array,
  aOffset: number,
  b: Uint8Array,
  bOffset: number,
  length: number,
) {
  let difference = 0;
  for (let i = 0; i < length; i++) difference |= a[aOffset + i] ^ b[bOffset + i];
  return difference === 0;
}

/** The responder side: checks mac1 and mac2 of messages sent to us, and makes cookie replies. */
export class CookieChecker {
  readonly #crypto: CryptoProvider;
  readonly #mac1Key = new Uint8Array(32);
  readonly #encryptionKey = new Uint8Array(32);
  readonly #secret = new Uint8Array(32);
  #secretSet = -Infinity;
  readonly #scratch = new Uint8Array(MAC_SIZE);
  readonly #cookie = new Uint8Array(MAC_SIZE);

  /** For messages addressed to `publicKey` (ours). */
  constructor(crypto: CryptoProvider, publicKey: Uint8Array) {
    this.#crypto = crypto;
    const encoder = new TextEncoder();
    hash(this.#mac1Key, encoder.encode(LABEL_MAC1), publicKey);
    hash(this.#encryptionKey, encoder.encode(LABEL_COOKIE), publicKey);
  }

  /** Whether the handshake message at `msg[offset..offset+length]` has a valid mac1. */
  checkMac1(msg: Uint8Array, offset: number, length: number): boolean {
    const mac1At = offset + length - 2 * MAC_SIZE;
    mac(this.#scratch, this.#mac1Key, msg.subarray(offset, mac1At));
    return equalBytes(this.#scratch, 0, msg, mac1At, MAC_SIZE);
  }

  /**
   * Whether its mac2 was made with the cookie we would give `source` (ip || port) now.
   * Always false when our secret is older than 2 minutes (no cookie is valid then).
   */
  checkMac2(msg: Uint8Array, offset: number, length: number, source: Uint8Array, now: number) {
    if (now - this.#secretSet > COOKIE_REFRESH_TIME_MS) return false;
    mac(this.#cookie, this.#secret, source);
    const mac2At = offset + length - MAC_SIZE;
    mac(this.#scratch, this.#cookie, msg.subarray(offset, mac2At));
    return equalBytes(this.#scratch, 0, msg, mac2At, MAC_SIZE);
  }

  /**
   * Writes a cookie reply (64 bytes at `out[outOffset..]`) to the handshake message at
   * `msg[offset..offset+length]` from `source`, addressed to its sender index `receiver`.
   * `out` may be `msg` itself: the mac1 is read before anything is written.
   */
  createReply(
    msg: Uint8Array,
    offset: number,
    length: number,
    receiver: number,
    source: Uint8Array,
    now: number,
    out: Uint8Array,
    outOffset: number,
  ): void {
    if (now - this.#secretSet > COOKIE_REFRESH_TIME_MS) {
      this.#crypto.randomBytes(this.#secret);
      this.#secretSet = now;
    }
    mac(this.#cookie, this.#secret, source);
    const mac1At = offset + length - 2 * MAC_SIZE;
    const mac1 = msg.slice(mac1At, mac1At + MAC_SIZE);
    const nonce = this.#crypto.randomBytes(new Uint8Array(24));
    writeU32Le(out, outOffset, MESSAGE_COOKIE_REPLY);
    writeU32Le(out, outOffset + COOKIE_RECEIVER, receiver);
    out.set(nonce, outOffset + COOKIE_NONCE);
    this.#crypto.xseal(
      out.subarray(outOffset + COOKIE_ENCRYPTED, outOffset + COOKIE_REPLY_SIZE),
      this.#encryptionKey,
      nonce,
      this.#cookie,
      mac1,
    );
  }
}

/** The initiator side, one per peer: adds mac1/mac2 and keeps the cookie the peer gave us. */
export class CookieGenerator {
  readonly #crypto: CryptoProvider;
  readonly #mac1Key = new Uint8Array(32);
  readonly #encryptionKey = new Uint8Array(32);
  readonly #cookie = new Uint8Array(MAC_SIZE);
  #cookieSet = -Infinity;
  readonly #lastMac1 = new Uint8Array(MAC_SIZE);
  #hasLastMac1 = false;

  /** For messages we send to the peer whose public key is `remotePublicKey`. */
  constructor(crypto: CryptoProvider, remotePublicKey: Uint8Array) {
    this.#crypto = crypto;
    const encoder = new TextEncoder();
    hash(this.#mac1Key, encoder.encode(LABEL_MAC1), remotePublicKey);
    hash(this.#encryptionKey, encoder.encode(LABEL_COOKIE), remotePublicKey);
  }

  /** Whether a cookie younger than 2 minutes is held (then mac2 is filled in). */
  hasCookie(now: number): boolean {
    return now - this.#cookieSet <= COOKIE_REFRESH_TIME_MS;
  }

  /** Fills mac1 and (with a fresh cookie) mac2 of the handshake message at `msg[offset..]`. */
  addMacs(msg: Uint8Array, offset: number, length: number, now: number): void {
    const mac1At = offset + length - 2 * MAC_SIZE;
    const mac2At = mac1At + MAC_SIZE;
    mac(this.#lastMac1, this.#mac1Key, msg.subarray(offset, mac1At));
    msg.set(this.#lastMac1, mac1At);
    this.#hasLastMac1 = true;
    if (!this.hasCookie(now)) {
      msg.fill(0, mac2At, mac2At + MAC_SIZE);
      return;
    }
    const mac2 = new Uint8Array(MAC_SIZE);
    mac(mac2, this.#cookie, msg.subarray(offset, mac2At));
    msg.set(mac2, mac2At);
  }

  /**
   * Takes the cookie from a reply (64 bytes at `msg[offset..]`) to the last message we
   * sent; false when it does not decrypt against that message's mac1.
   */
  consumeReply(msg: Uint8Array, offset: number, now: number): boolean {
    if (!this.#hasLastMac1) return false;
    const cookie = new Uint8Array(MAC_SIZE);
    const ok = this.#crypto.xopen(
      cookie,
      this.#encryptionKey,
      msg.subarray(offset + COOKIE_NONCE, offset + COOKIE_ENCRYPTED),
      msg.subarray(offset + COOKIE_ENCRYPTED, offset + COOKIE_REPLY_SIZE),
      this.#lastMac1,
    );
    if (!ok) return false;
    this.#cookie.set(cookie);
    this.#cookieSet = now;
    return true;
  }
}
