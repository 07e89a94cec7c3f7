/**
 * HChaCha20 (draft-irtf-cfrg-xchacha §2.2): derives XChaCha20's subkey from a 256-bit key
 * and the first 16 bytes of the 24-byte nonce. Only the node:crypto fallback needs it
 * (libsodium has XChaCha20-Poly1305 built in); it runs once per cookie reply.
 */

/** "expand 32-byte k" as four little-endian words. */
const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];

/** Writes HChaCha20(key, nonce16) into `out` (32 bytes). */
export function hchacha20(out: Uint8Array, key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  if (key.length !== 32 || nonce16.length < 16) {
    throw new RangeError("HChaCha20 needs a 32-byte key and a 16-byte nonce");
  }
  const x = new Uint32Array(16);
  x.set(SIGMA);
  for (let i = 0; i < 8; i++) x[4 + i] = readLe32(key, i * 4);
  for (let i = 0; i < 4; i++) x[12 + i] = readLe32(nonce16, i * 4);
  for (let i = 0; i < 10; i++) {
    quarterRound(x, 0, 4, 8, 12);
    quarterRound(x, 1, 5, 9, 13);
    quarterRound(x, 2, 6, 10, 14);
    quarterRound(x, 3, 7, 11, 15);
    quarterRound(x, 0, 5, 10, 15);
    quarterRound(x, 1, 6, 11, 12);
    quarterRound(x, 2, 7, 8, 13);
    quarterRound(x, 3, 4, 9, 14);
  }
  // Unlike the ChaCha20 block function, no feed-forward: words 0..3 and 12..15 are the key.
  for (let i = 0; i < 4; i++) {
    writeLe32(out, i * 4, x[i]);
    writeLe32(out, 16 + i * 4, x[12 + i]);
  }
  x.fill(0);
  return out;
}

function quarterRound(x: Uint32Array, a: number, b: number, c: number, d: number): void {
  x[a] += x[b];
  x[d] = rotl(x[d] ^ x[a], 16);
  x[c] += x[d];
  x[b] = rotl(x[b] ^ x[c], 12);
  x[a] += x[b];
  x[d] = rotl(x[d] ^ x[a], 8);
  x[c] += x[d];
  x[b] = rotl(x[b] ^ x[c], 7);
}

function rotl(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}

function readLe32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) |
    (bytes[offset + 3] << 24)) >>> 0;
}

function writeLe32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 255;
  bytes[offset + 1] = (value >>> 8) & 255;
  bytes[offset + 2] = (value >>> 16) & 255;
  bytes[offset + 3] = value >>> 24;
}
