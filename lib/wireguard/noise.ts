/**
 * The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake exactly as WireGuard runs it
 * (whitepaper §5.4.2–5.4.5): the initiator sends message 1 (initiation), the responder
 * answers with message 2 (response), and both derive a pair of transport keys.
 *
 * This module only computes messages and state; indices, macs, timers and peers belong
 * to the device. Handshakes may allocate; nothing here runs per data packet.
 */
import { hash, kdf1, kdf2, kdf3 } from "./blake2s.ts";
import { type CryptoProvider, ZERO_NONCE } from "./crypto.ts";
import {
  INITIATION_EPHEMERAL,
  INITIATION_MAC1,
  INITIATION_SENDER,
  INITIATION_STATIC,
  INITIATION_TIMESTAMP,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  readU32Le,
  RESPONSE_EMPTY,
  RESPONSE_EPHEMERAL,
  RESPONSE_MAC1,
  RESPONSE_RECEIVER,
  RESPONSE_SENDER,
  writeU32Le,
} from "./messages.ts";

export const CONSTRUCTION = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
export const IDENTIFIER = "WireGuard v1 zx2c4 Jason@zx2c4.com";
export const LABEL_MAC1 = "mac1----";
export const LABEL_COOKIE = "cookie--";

const encoder = new TextEncoder();

/** Ci = HASH(CONSTRUCTION) */
export const INITIAL_CHAIN_KEY: Uint8Array = hash(new Uint8Array(32), encoder.encode(CONSTRUCTION));
/** Hi = HASH(Ci || IDENTIFIER) */
export const INITIAL_HASH: Uint8Array = hash(
  new Uint8Array(32),
  INITIAL_CHAIN_KEY,
  encoder.encode(IDENTIFIER),
);

export const HANDSHAKE_ZEROED = 0;
export const HANDSHAKE_INITIATION_CREATED = 1;
export const HANDSHAKE_INITIATION_CONSUMED = 2;
export const HANDSHAKE_RESPONSE_CREATED = 3;
export const HANDSHAKE_RESPONSE_CONSUMED = 4;

/** A TAI64N timestamp is 12 bytes: u64 seconds (2^62 + 10 + Unix time), u32 nanoseconds. */
export const TIMESTAMP_SIZE = 12;
const TAI64_BASE_HIGH = 0x4000_0000;
const TAI64_BASE_LOW = 10;
/**
 * wireguard-go clears the low 24 bits of the nanoseconds (~16.8 ms) so the timestamp
 * does not serve as a fine clock oracle to whoever can decrypt it.
 */
const WHITENER_MASK = 0x00ff_ffff;

/**
 * Writes the TAI64N label of `unixMs` (milliseconds since the epoch, may be fractional).
 * Timestamps compare as big-endian bytes (`timestampAfter`).
 */
export function writeTai64n(out: Uint8Array, unixMs: number): Uint8Array {
  const seconds = Math.floor(unixMs / 1000);
  const nanos = Math.floor((unixMs - seconds * 1000) * 1e6) & ~WHITENER_MASK;
  const view = new DataView(out.buffer, out.byteOffset, TIMESTAMP_SIZE);
  const low = seconds + TAI64_BASE_LOW;
  view.setUint32(0, TAI64_BASE_HIGH + Math.floor(low / 0x1_0000_0000), false);
  view.setUint32(4, low >>> 0, false);
  view.setUint32(8, nanos >>> 0, false);
  return out;
}

/** Whether timestamp `a` is strictly after `b` (both 12 bytes). */
export function timestampAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TIMESTAMP_SIZE; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}

/** Our long-term key pair, with the mac1 and cookie keys derived from the public key. */
export class StaticIdentity {
  readonly privateKey: Uint8Array = new Uint8Array(32);
  readonly publicKey: Uint8Array = new Uint8Array(32);
  /** HASH("mac1----" || our public key): checks mac1 of messages sent to us. */
  readonly mac1Key: Uint8Array = new Uint8Array(32);
  /** HASH("cookie--" || our public key): encrypts the cookies we hand out. */
  readonly cookieKey: Uint8Array = new Uint8Array(32);

  /** Takes a 32-byte private key (clamped here, as X25519 does anyway). */
  constructor(crypto: CryptoProvider, privateKey: Uint8Array) {
    if (privateKey.length !== 32) {
      throw new RangeError(
        `WireGuard private key must be 32 bytes, got ${privateKey.length} (wg genkey makes one)`,
      );
    }
    this.privateKey.set(privateKey);
    clamp(this.privateKey);
    crypto.x25519Base(this.publicKey, this.privateKey);
    hash(this.mac1Key, encoder.encode(LABEL_MAC1), this.publicKey);
    hash(this.cookieKey, encoder.encode(LABEL_COOKIE), this.publicKey);
  }
}

/** Curve25519 clamping (RFC 7748 §5). */
export function clamp(scalar: Uint8Array): Uint8Array {
  scalar[0] &= 248;
  scalar[31] = (scalar[31] & 127) | 64;
  return scalar;
}

/** A fresh clamped private key from the CSPRNG. */
export function generatePrivateKey(crypto: CryptoProvider): Uint8Array {
  return clamp(crypto.randomBytes(new Uint8Array(32)));
}

/** The per-peer handshake state (one in flight at a time, as in wireguard-go). */
export class Handshake {
  state = HANDSHAKE_ZEROED;
  readonly hash: Uint8Array = new Uint8Array(32);
  readonly chainKey: Uint8Array = new Uint8Array(32);
  readonly localEphemeral: Uint8Array = new Uint8Array(32);
  readonly remoteEphemeral: Uint8Array = new Uint8Array(32);
  readonly remoteStatic: Uint8Array = new Uint8Array(32);
  /** All zeros when the peer has no preshared key (Noise's psk2 with a zero key). */
  readonly presharedKey: Uint8Array = new Uint8Array(32);
  /** DH(our static, their static), computed once per peer. */
  readonly precomputedStaticStatic: Uint8Array = new Uint8Array(32);
  /** Whether the static-static DH gave a usable (non-zero) secret. */
  staticStaticValid = false;
  localIndex = 0;
  remoteIndex = 0;
  /** The newest initiation timestamp accepted from this peer (replay protection). */
  readonly lastTimestamp: Uint8Array = new Uint8Array(TIMESTAMP_SIZE);
  /** When we last accepted an initiation (ms, device clock): a flood guard. */
  lastInitiationConsumption = -Infinity;
  /** When we last sent an initiation or response (ms, device clock). */
  lastSentHandshake = -Infinity;

  constructor(crypto: CryptoProvider, identity: StaticIdentity, remoteStatic: Uint8Array) {
    this.remoteStatic.set(remoteStatic);
    this.staticStaticValid = crypto.x25519(
      this.precomputedStaticStatic,
      identity.privateKey,
      this.remoteStatic,
    );
  }

  /** Forgets the handshake in progress (the keys already derived are not touched). */
  clear(): void {
    this.localEphemeral.fill(0);
    this.remoteEphemeral.fill(0);
    this.chainKey.fill(0);
    this.hash.fill(0);
    this.localIndex = 0;
    this.state = HANDSHAKE_ZEROED;
  }
}

/** mixHash: h = HASH(h || data) */
function mixHash(h: Uint8Array, data: Uint8Array): void {
  hash(h, h, data);
}

/**
 * Writes an initiation (type 1) into `out` (148 bytes from 0; mac1/mac2 are left for the
 * cookie generator) and moves `hs` to INITIATION_CREATED. False when the peer's static
 * key is unusable (all-zero DH).
 */
export function createInitiation(
  crypto: CryptoProvider,
  identity: StaticIdentity,
  hs: Handshake,
  senderIndex: number,
  timestamp: Uint8Array,
  out: Uint8Array,
): boolean {
  if (!hs.staticStaticValid) return false;
  hs.hash.set(INITIAL_HASH);
  hs.chainKey.set(INITIAL_CHAIN_KEY);
  generatePrivateKey(crypto).forEach((byte, i) => (hs.localEphemeral[i] = byte));
  mixHash(hs.hash, hs.remoteStatic);

  out.fill(0, 0, INITIATION_MAC1);
  writeU32Le(out, 0, MESSAGE_INITIATION);
  writeU32Le(out, INITIATION_SENDER, senderIndex);
  const ephemeral = out.subarray(INITIATION_EPHEMERAL, INITIATION_EPHEMERAL + 32);
  crypto.x25519Base(ephemeral, hs.localEphemeral);
  kdf1(hs.chainKey, hs.chainKey, ephemeral);
  mixHash(hs.hash, ephemeral);

  // es: encrypt our static public key.
  const shared = new Uint8Array(32);
  const key = new Uint8Array(32);
  if (!crypto.x25519(shared, hs.localEphemeral, hs.remoteStatic)) return false;
  kdf2(hs.chainKey, key, hs.chainKey, shared);
  const sealedStatic = out.subarray(INITIATION_STATIC, INITIATION_STATIC + 48);
  crypto.seal(sealedStatic, key, ZERO_NONCE, identity.publicKey, hs.hash);
  mixHash(hs.hash, sealedStatic);

  // ss: encrypt the timestamp.
  kdf2(hs.chainKey, key, hs.chainKey, hs.precomputedStaticStatic);
  const sealedTimestamp = out.subarray(INITIATION_TIMESTAMP, INITIATION_TIMESTAMP + 28);
  crypto.seal(sealedTimestamp, key, ZERO_NONCE, timestamp, hs.hash);
  mixHash(hs.hash, sealedTimestamp);

  shared.fill(0);
  key.fill(0);
  hs.localIndex = senderIndex;
  hs.state = HANDSHAKE_INITIATION_CREATED;
  return true;
}

/** Why an initiation was refused (0: accepted). */
export const INITIATION_OK = 0;
/** The static key did not decrypt: not for us, or corrupted. */
export const INITIATION_BAD_STATIC = 1;
/** It decrypted, but the sender is not one of our peers. */
export const INITIATION_UNKNOWN_PEER = 2;
/** The timestamp did not decrypt: a forged or corrupted message. */
export const INITIATION_BAD_TIMESTAMP = 3;
/** The timestamp is not newer than the last one accepted: a replay. */
export const INITIATION_REPLAY = 4;
/** Less than 20 ms since the last accepted initiation from this peer. */
export const INITIATION_FLOOD = 5;

/** The minimum spacing of accepted initiations per peer (wireguard-go: 50 a second). */
export const HANDSHAKE_INITIATION_RATE_MS = 20;

/** What consumeInitiation found; `handshake` is set when `status` is INITIATION_OK. */
export interface InitiationResult {
  status: number;
  handshake: Handshake | undefined;
}

/**
 * Checks and absorbs an initiation (148 bytes at `msg[0..]`, macs already checked).
 * `findPeer` maps the decrypted static key to that peer's Handshake. On success the
 * handshake moves to INITIATION_CONSUMED with the sender's index and ephemeral key.
 */
export function consumeInitiation(
  crypto: CryptoProvider,
  identity: StaticIdentity,
  msg: Uint8Array,
  now: number,
  findPeer: (publicKey: Uint8Array) => Handshake | undefined,
  result: InitiationResult,
): InitiationResult {
  result.handshake = undefined;
  const h = new Uint8Array(32);
  const ck = new Uint8Array(32);
  const key = new Uint8Array(32);
  const shared = new Uint8Array(32);
  const ephemeral = msg.subarray(INITIATION_EPHEMERAL, INITIATION_EPHEMERAL + 32);
  hash(h, INITIAL_HASH, identity.publicKey);
  mixHash(h, ephemeral);
  kdf1(ck, INITIAL_CHAIN_KEY, ephemeral);

  const sealedStatic = msg.subarray(INITIATION_STATIC, INITIATION_STATIC + 48);
  const peerStatic = new Uint8Array(32);
  if (!crypto.x25519(shared, identity.privateKey, ephemeral)) {
    result.status = INITIATION_BAD_STATIC;
    return result;
  }
  kdf2(ck, key, ck, shared);
  if (!crypto.open(peerStatic, key, ZERO_NONCE, sealedStatic, h)) {
    result.status = INITIATION_BAD_STATIC;
    return result;
  }
  mixHash(h, sealedStatic);

  const hs = findPeer(peerStatic);
  if (!hs || !hs.staticStaticValid) {
    result.status = INITIATION_UNKNOWN_PEER;
    return result;
  }
  const sealedTimestamp = msg.subarray(INITIATION_TIMESTAMP, INITIATION_TIMESTAMP + 28);
  const timestamp = new Uint8Array(TIMESTAMP_SIZE);
  kdf2(ck, key, ck, hs.precomputedStaticStatic);
  if (!crypto.open(timestamp, key, ZERO_NONCE, sealedTimestamp, h)) {
    result.status = INITIATION_BAD_TIMESTAMP;
    return result;
  }
  mixHash(h, sealedTimestamp);

  if (!timestampAfter(timestamp, hs.lastTimestamp)) {
    result.status = INITIATION_REPLAY;
    return result;
  }
  if (now - hs.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE_MS) {
    result.status = INITIATION_FLOOD;
    return result;
  }

  hs.hash.set(h);
  hs.chainKey.set(ck);
  hs.remoteIndex = readU32Le(msg, INITIATION_SENDER);
  hs.remoteEphemeral.set(ephemeral);
  hs.lastTimestamp.set(timestamp);
  hs.lastInitiationConsumption = now;
  hs.state = HANDSHAKE_INITIATION_CONSUMED;
  key.fill(0);
  shared.fill(0);
  result.status = INITIATION_OK;
  result.handshake = hs;
  return result;
}

/**
 * Writes a response (type 2) into `out` (92 bytes from 0, macs left out) for a
 * consumed initiation and moves `hs` to RESPONSE_CREATED. False when `hs` is not in
 * INITIATION_CONSUMED or a DH result is unusable.
 */
export function createResponse(
  crypto: CryptoProvider,
  hs: Handshake,
  senderIndex: number,
  out: Uint8Array,
): boolean {
  if (hs.state !== HANDSHAKE_INITIATION_CONSUMED) return false;
  out.fill(0, 0, RESPONSE_MAC1);
  writeU32Le(out, 0, MESSAGE_RESPONSE);
  writeU32Le(out, RESPONSE_SENDER, senderIndex);
  writeU32Le(out, RESPONSE_RECEIVER, hs.remoteIndex);

  generatePrivateKey(crypto).forEach((byte, i) => (hs.localEphemeral[i] = byte));
  const ephemeral = out.subarray(RESPONSE_EPHEMERAL, RESPONSE_EPHEMERAL + 32);
  crypto.x25519Base(ephemeral, hs.localEphemeral);
  mixHash(hs.hash, ephemeral);
  kdf1(hs.chainKey, hs.chainKey, ephemeral);

  const shared = new Uint8Array(32);
  if (!crypto.x25519(shared, hs.localEphemeral, hs.remoteEphemeral)) return false;
  kdf1(hs.chainKey, hs.chainKey, shared);
  if (!crypto.x25519(shared, hs.localEphemeral, hs.remoteStatic)) return false;
  kdf1(hs.chainKey, hs.chainKey, shared);

  // psk: mixed in last, so a quantum adversary recording today still needs the PSK.
  const tau = new Uint8Array(32);
  const key = new Uint8Array(32);
  kdf3(hs.chainKey, tau, key, hs.chainKey, hs.presharedKey);
  mixHash(hs.hash, tau);
  const empty = out.subarray(RESPONSE_EMPTY, RESPONSE_EMPTY + 16);
  crypto.seal(empty, key, ZERO_NONCE, new Uint8Array(0), hs.hash);
  mixHash(hs.hash, empty);

  shared.fill(0);
  tau.fill(0);
  key.fill(0);
  hs.localIndex = senderIndex;
  hs.state = HANDSHAKE_RESPONSE_CREATED;
  return true;
}

/**
 * Checks and absorbs a response (92 bytes at `msg[0..]`, macs already checked) for the
 * initiation `hs` sent; moves it to RESPONSE_CONSUMED. False (state untouched) when it
 * does not authenticate.
 */
export function consumeResponse(
  crypto: CryptoProvider,
  identity: StaticIdentity,
  hs: Handshake,
  msg: Uint8Array,
): boolean {
  if (hs.state !== HANDSHAKE_INITIATION_CREATED) return false;
  const h = new Uint8Array(hs.hash);
  const ck = new Uint8Array(hs.chainKey);
  const ephemeral = msg.subarray(RESPONSE_EPHEMERAL, RESPONSE_EPHEMERAL + 32);
  mixHash(h, ephemeral);
  kdf1(ck, ck, ephemeral);
  const shared = new Uint8Array(32);
  if (!crypto.x25519(shared, hs.localEphemeral, ephemeral)) return false;
  kdf1(ck, ck, shared);
  if (!crypto.x25519(shared, identity.privateKey, ephemeral)) return false;
  kdf1(ck, ck, shared);

  const tau = new Uint8Array(32);
  const key = new Uint8Array(32);
  kdf3(ck, tau, key, ck, hs.presharedKey);
  mixHash(h, tau);
  const empty = msg.subarray(RESPONSE_EMPTY, RESPONSE_EMPTY + 16);
  if (!crypto.open(new Uint8Array(0), key, ZERO_NONCE, empty, h)) return false;
  mixHash(h, empty);

  hs.hash.set(h);
  hs.chainKey.set(ck);
  hs.remoteIndex = readU32Le(msg, RESPONSE_SENDER);
  hs.state = HANDSHAKE_RESPONSE_CONSUMED;
  shared.fill(0);
  key.fill(0);
  return true;
}

/** The two transport keys a finished handshake yields. */
export interface SessionKeys {
  readonly send: Uint8Array;
  readonly receive: Uint8Array;
  readonly isInitiator: boolean;
  readonly localIndex: number;
  readonly remoteIndex: number;
}

/**
 * Derives the transport keys (T_send, T_recv = KDF2(C, ε), swapped for the responder)
 * and zeroes the handshake. Undefined when the handshake is not at a point to derive.
 */
export function deriveSession(hs: Handshake): SessionKeys | undefined {
  const first = new Uint8Array(32);
  const second = new Uint8Array(32);
  let isInitiator: boolean;
  if (hs.state === HANDSHAKE_RESPONSE_CONSUMED) isInitiator = true;
  else if (hs.state === HANDSHAKE_RESPONSE_CREATED) isInitiator = false;
  else return undefined;
  kdf2(first, second, hs.chainKey, new Uint8Array(0));
  const keys = {
    send: isInitiator ? first : second,
    receive: isInitiator ? second : first,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.chainKey.fill(0);
  hs.hash.fill(0);
  hs.localEphemeral.fill(0);
  hs.state = HANDSHAKE_ZEROED;
  return keys;
}
