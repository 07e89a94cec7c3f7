/**
 * BLAKE2s (RFC 7693) with 1..32-byte output and an optional key of up to 32 bytes, and
 * what WireGuard builds on it: HASH (BLAKE2s-256), MAC (keyed BLAKE2s-128), HMAC-BLAKE2s
 * (RFC 2104 with a 64-byte block) and the HKDF chain KDF1/KDF2/KDF3.
 *
 * libsodium has BLAKE2b only, so this is plain TypeScript. It runs on handshakes and on
 * mac1/mac2 checks, never per data packet; a Blake2s object may be reset and reused.
 */

const BLOCK = 64;

/** The BLAKE2s IV: the SHA-256 IV (RFC 7693 §2.6). */
const IV = new Uint32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

/** Message word schedule for each of the 10 rounds (RFC 7693 §2.7), one hex digit a word. */
const SIGMA = Uint8Array.from(
  "0123456789abcdef" + "ea489fd61c02b753" + "b8c052fdae367194" + "7931dcbe265a40f8" +
    "905724afe1bc683d" + "2c6a0b834d75fe19" + "c51fed4a0763928b" + "db7ec13950f4862a" +
    "6fe9b308c2d714a5" + "a2847615fb9e3cd0",
  (digit) => parseInt(digit, 16),
);

/** An incremental BLAKE2s. */
export class Blake2s {
  readonly #h = new Uint32Array(8);
  readonly #v = new Uint32Array(16);
  readonly #m = new Uint32Array(16);
  readonly #block = new Uint8Array(BLOCK);
  readonly #key = new Uint8Array(32);
  #keyLength = 0;
  #outLength = 32;
  #fill = 0;
  /** Bytes compressed so far (t0; t1 stays 0: messages here are far below 4 GiB). */
  #count = 0;

  /** A BLAKE2s of `outLength` bytes (1..32), keyed when `key` is given (≤ 32 bytes). */
  constructor(outLength = 32, key?: Uint8Array) {
    this.reset(outLength, key);
  }

  /** Starts over, with a new output length and key. Throws on out-of-range sizes. */
  reset(outLength = 32, key?: Uint8Array): this {
    if (outLength < 1 || outLength > 32) {
      throw new RangeError(`BLAKE2s output length ${outLength} must be 1..32 bytes`);
    }
    const keyLength = key?.length ?? 0;
    if (keyLength > 32) throw new RangeError(`BLAKE2s key of ${keyLength} bytes must be ≤ 32`);
    this.#outLength = outLength;
    this.#keyLength = keyLength;
    this.#key.fill(0);
    if (key) this.#key.set(key);
    this.#h.set(IV);
    // Parameter block word 0: digest length, key length, fanout 1, depth 1.
    this.#h[0] ^= 0x01010000 ^ (keyLength << 8) ^ outLength;
    this.#count = 0;
    this.#fill = 0;
    this.#block.fill(0);
    if (keyLength > 0) {
      // The key, zero-padded to a full block, is the first block of the message.
      this.#block.set(this.#key);
      this.#fill = BLOCK;
    }
    return this;
  }

  /** Adds `length` bytes of `data` from `offset`. */
  update(data: Uint8Array, offset = 0, length = data.length - offset): this {
    let i = offset;
    const end = offset + length;
    while (i < end) {
      // The last block is compressed with the final flag, so a full block waits
      // until more data arrives.
      if (this.#fill === BLOCK) {
        this.#count += BLOCK;
        this.#compress(false);
        this.#fill = 0;
      }
      const take = Math.min(BLOCK - this.#fill, end - i);
      this.#block.set(data.subarray(i, i + take), this.#fill);
      this.#fill += take;
      i += take;
    }
    return this;
  }

  /** Writes the digest into `out` at `outOffset`; the object must be reset before reuse. */
  digest(out: Uint8Array = new Uint8Array(this.#outLength), outOffset = 0): Uint8Array {
    this.#count += this.#fill;
    this.#block.fill(0, this.#fill);
    this.#compress(true);
    const h = this.#h;
    for (let i = 0; i < this.#outLength; i++) {
      out[outOffset + i] = h[i >>> 2] >>> (8 * (i & 3));
    }
    return out;
  }

  #compress(last: boolean): void {
    const v = this.#v;
    const m = this.#m;
    const h = this.#h;
    const b = this.#block;
    for (let i = 0; i < 16; i++) {
      const j = i * 4;
      m[i] = b[j] | (b[j + 1] << 8) | (b[j + 2] << 16) | (b[j + 3] << 24);
    }
    for (let i = 0; i < 8; i++) {
      v[i] = h[i];
      v[i + 8] = IV[i];
    }
    v[12] ^= this.#count;
    v[13] ^= Math.floor(this.#count / 0x1_0000_0000);
    if (last) v[14] = ~v[14];
    for (let round = 0; round < 10; round++) {
      const s = round * 16;
      g(v, m, 0, 4, 8, 12, SIGMA[s], SIGMA[s + 1]);
      g(v, m, 1, 5, 9, 13, SIGMA[s + 2], SIGMA[s + 3]);
      g(v, m, 2, 6, 10, 14, SIGMA[s + 4], SIGMA[s + 5]);
      g(v, m, 3, 7, 11, 15, SIGMA[s + 6], SIGMA[s + 7]);
      g(v, m, 0, 5, 10, 15, SIGMA[s + 8], SIGMA[s + 9]);
      g(v, m, 1, 6, 11, 12, SIGMA[s + 10], SIGMA[s + 11]);
      g(v, m, 2, 7, 8, 13, SIGMA[s + 12], SIGMA[s + 13]);
      g(v, m, 3, 4, 9, 14, SIGMA[s + 14], SIGMA[s + 15]);
    }
    for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
  }
}

/** The mixing function G (RFC 7693 §3.1) with BLAKE2s's rotations 16, 12, 8, 7. */
function g(
  v: Uint32Array,
  m: Uint32Array,
  a: number,
  b: number,
  c: number,
  d: number,
  x: number,
  y: number,
): void {
  let va = v[a], vb = v[b], vc = v[c], vd = v[d];
  va = (va + vb + m[x]) | 0;
  vd ^= va;
  vd = (vd >>> 16) | (vd << 16);
  vc = (vc + vd) | 0;
  vb ^= vc;
  vb = (vb >>> 12) | (vb << 20);
  va = (va + vb + m[y]) | 0;
  vd ^= va;
  vd = (vd >>> 8) | (vd << 24);
  vc = (vc + vd) | 0;
  vb ^= vc;
  vb = (vb >>> 7) | (vb << 25);
  v[a] = va;
  v[b] = vb;
  v[c] = vc;
  v[d] = vd;
}

// One shared instance for the helpers below: a thread runs one of them at a time.
const shared = new Blake2s();

/** HASH(parts…): BLAKE2s-256 of the concatenation, into `out` (32 bytes). */
export function hash(out: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  shared.reset(32);
  for (const part of parts) shared.update(part);
  return shared.digest(out);
}

/** MAC(key, data): keyed BLAKE2s-128 (WireGuard's mac1/mac2 and cookie), into `out`. */
export function mac(out: Uint8Array, key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  shared.reset(16, key);
  for (const part of parts) shared.update(part);
  return shared.digest(out);
}

const HMAC_PAD = new Uint8Array(BLOCK);
const HMAC_INNER = new Uint8Array(32);
const HMAC_KEY = new Uint8Array(32);

/** HMAC-BLAKE2s-256(key, parts…) into `out` (32 bytes); keys longer than 64 bytes are hashed. */
export function hmac(out: Uint8Array, key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  let k = key;
  if (k.length > BLOCK) k = hash(HMAC_KEY, key);
  HMAC_PAD.fill(0x36);
  for (let i = 0; i < k.length; i++) HMAC_PAD[i] ^= k[i];
  shared.reset(32).update(HMAC_PAD);
  for (const part of parts) shared.update(part);
  shared.digest(HMAC_INNER);
  HMAC_PAD.fill(0x5c);
  for (let i = 0; i < k.length; i++) HMAC_PAD[i] ^= k[i];
  shared.reset(32).update(HMAC_PAD).update(HMAC_INNER);
  shared.digest(out);
  HMAC_PAD.fill(0);
  HMAC_INNER.fill(0);
  return out;
}

const ONE = new Uint8Array([1]);
const TWO = new Uint8Array([2]);
const THREE = new Uint8Array([3]);
const PRK = new Uint8Array(32);

/** KDF1(key, input) → t0 (the Noise HKDF with one output). */
export function kdf1(t0: Uint8Array, key: Uint8Array, input: Uint8Array): void {
  hmac(PRK, key, input);
  hmac(t0, PRK, ONE);
  PRK.fill(0);
}

/** KDF2(key, input) → t0, t1. `key` may alias t0: it is read before t0 is written. */
export function kdf2(t0: Uint8Array, t1: Uint8Array, key: Uint8Array, input: Uint8Array): void {
  hmac(PRK, key, input);
  hmac(t0, PRK, ONE);
  hmac(t1, PRK, t0, TWO);
  PRK.fill(0);
}

/** KDF3(key, input) → t0, t1, t2. */
export function kdf3(
  t0: Uint8Array,
  t1: Uint8Array,
  t2: Uint8Array,
  key: Uint8Array,
  input: Uint8Array,
): void {
  hmac(PRK, key, input);
  hmac(t0, PRK, ONE);
  hmac(t1, PRK, t0, TWO);
  hmac(t2, PRK, t1, THREE);
  PRK.fill(0);
}
