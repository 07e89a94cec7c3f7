/**
 * The cryptographic primitives WireGuard needs, behind one interface with two providers:
 * libsodium through FFI (ffi/sodium.ts; fast, allocates nothing per data packet) and
 * node:crypto (fallback where libsodium23 is not installed; correct, but it allocates a
 * cipher object and output buffers per call and is several times slower).
 *
 * AEAD nonces follow WireGuard: ChaCha20-Poly1305 (RFC 8439) with the 96-bit nonce
 * 0x00000000 || little-endian u64 counter; XChaCha20-Poly1305 with a random 24-byte nonce.
 * Counters are JS numbers, exact up to 2^53 (see replay.ts for why that is enough).
 */
import { type Sodium, sodium, sodiumLoadError } from "../../ffi/sodium.ts";
import * as nodeCrypto from "node:crypto";
import { Buffer } from "node:buffer";
import { hchacha20 } from "./hchacha20.ts";

export type CryptoProviderName = "libsodium" | "node:crypto";

/** Poly1305 tag length. */
export const TAG_SIZE = 16;
export const KEY_SIZE = 32;

/** A 32-byte ChaCha20-Poly1305 transport key, held in the form its provider wants. */
export interface TransportKey {
  /** Overwrites the key material with zeros (the key is unusable afterwards). */
  wipe(): void;
}

/** WireGuard's primitives. Every method is synchronous; handshake ones may allocate. */
export interface CryptoProvider {
  readonly name: CryptoProviderName;
  /** Fills `out` from the system CSPRNG. */
  randomBytes(out: Uint8Array): Uint8Array;
  /** X25519(scalar, point) into `out`; false when the result is all zeros (a bad point). */
  x25519(out: Uint8Array, scalar: Uint8Array, point: Uint8Array): boolean;
  /** The X25519 public key of `scalar` into `out`. */
  x25519Base(out: Uint8Array, scalar: Uint8Array): Uint8Array;
  /** ChaCha20-Poly1305 seal with a 12-byte nonce: `out` gets plaintext.length + 16 bytes. */
  seal(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    ad: Uint8Array,
  ): void;
  /** ChaCha20-Poly1305 open into `out` (ciphertext.length − 16 bytes); false on a bad tag. */
  open(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): boolean;
  /** XChaCha20-Poly1305 seal with a 24-byte nonce. */
  xseal(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    ad: Uint8Array,
  ): void;
  /** XChaCha20-Poly1305 open; false on a bad tag. */
  xopen(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): boolean;
  /** A transport key holding a copy of `bytes` (32). */
  transportKey(bytes: Uint8Array): TransportKey;
  /**
   * Data path: encrypts `length` bytes at `offset` in place and writes the 16-byte tag
   * right after them (the caller leaves that room). No associated data.
   */
  sealInPlace(
    key: TransportKey,
    counter: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
  ): void;
  /**
   * Data path: checks and decrypts `length` bytes at `offset` (ciphertext and its tag) in
   * place; the plaintext is the first length − 16 bytes. False on a bad tag (the bytes
   * are then unspecified).
   */
  openInPlace(
    key: TransportKey,
    counter: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
  ): boolean;
}

/** The all-zero nonce every handshake AEAD uses (each of its keys seals once). */
export const ZERO_NONCE: Uint8Array = new Uint8Array(12);

/** Writes WireGuard's 96-bit nonce for `counter` (0 ≤ counter < 2^53). */
export function writeNonce(nonce: Uint8Array, counter: number): void {
  const low = counter >>> 0;
  const high = Math.floor(counter / 0x1_0000_0000);
  nonce[0] =
    nonce[1] =
    nonce[2] =
    nonce[3] =
      0;
  nonce[4] = low & 255;
  nonce[5] = (low >>> 8) & 255;
  nonce[6] = (low >>> 16) & 255;
  nonce[7] = low >>> 24;
  nonce[8] = high & 255;
  nonce[9] = (high >>> 8) & 255;
  nonce[10] = (high >>> 16) & 255;
  nonce[11] = high >>> 24;
}

class SodiumKey implements TransportKey {
  readonly bytes = new Uint8Array(KEY_SIZE);
  readonly pointer: Deno.PointerValue;
  constructor(bytes: Uint8Array) {
    this.bytes.set(bytes.subarray(0, KEY_SIZE));
    this.pointer = Deno.UnsafePointer.of(this.bytes);
  }
  wipe(): void {
    this.bytes.fill(0);
  }
}

/** Most distinct offsets remembered per buffer (a batched data path uses a few hundred). */
const POINTER_CACHE_LIMIT = 8192;

/**
 * Pointers to `buffer + offset`, made once and reused: creating one costs a small
 * allocation, and a data path uses the same few slot offsets over and over.
 */
class PointerCache {
  readonly #buffers = new WeakMap<Uint8Array, Map<number, Deno.PointerValue>>();
  #lastBuffer: Uint8Array | undefined;
  #lastMap: Map<number, Deno.PointerValue> | undefined;

  at(buffer: Uint8Array, offset: number): Deno.PointerValue {
    let map = this.#lastMap;
    if (buffer !== this.#lastBuffer || map === undefined) {
      map = this.#buffers.get(buffer);
      if (map === undefined) {
        map = new Map();
        this.#buffers.set(buffer, map);
      }
      this.#lastBuffer = buffer;
      this.#lastMap = map;
    }
    let pointer = map.get(offset);
    if (pointer === undefined) {
      pointer = Deno.UnsafePointer.offset(Deno.UnsafePointer.of(buffer)!, offset);
      if (map.size < POINTER_CACHE_LIMIT) map.set(offset, pointer);
    }
    return pointer;
  }
}

class SodiumProvider implements CryptoProvider {
  readonly name = "libsodium" as const;
  readonly #s: Sodium;
  readonly #nonce = new Uint8Array(12);
  readonly #noncePointer = Deno.UnsafePointer.of(this.#nonce);
  readonly #pointers = new PointerCache();

  constructor(s: Sodium) {
    this.#s = s;
  }

  randomBytes(out: Uint8Array): Uint8Array {
    if (out.length > 0) this.#s.randombytes_buf(out, BigInt(out.length));
    return out;
  }

  x25519(out: Uint8Array, scalar: Uint8Array, point: Uint8Array): boolean {
    // -1 when the result is all zeros (a small-order point).
    return this.#s.crypto_scalarmult_curve25519(out, scalar, point) === 0;
  }

  x25519Base(out: Uint8Array, scalar: Uint8Array): Uint8Array {
    this.#s.crypto_scalarmult_curve25519_base(out, scalar);
    return out;
  }

  seal(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array) {
    this.#s.crypto_aead_chacha20poly1305_ietf_encrypt(
      out,
      null,
      plaintext,
      BigInt(plaintext.length),
      ad,
      BigInt(ad.length),
      null,
      nonce,
      key,
    );
  }

  open(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): boolean {
    if (ciphertext.length < TAG_SIZE) return false;
    return this.#s.crypto_aead_chacha20poly1305_ietf_decrypt(
      out,
      null,
      null,
      ciphertext,
      BigInt(ciphertext.length),
      ad,
      BigInt(ad.length),
      nonce,
      key,
    ) === 0;
  }

  xseal(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    ad: Uint8Array,
  ) {
    this.#s.crypto_aead_xchacha20poly1305_ietf_encrypt(
      out,
      null,
      plaintext,
      BigInt(plaintext.length),
      ad,
      BigInt(ad.length),
      null,
      nonce,
      key,
    );
  }

  xopen(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): boolean {
    if (ciphertext.length < TAG_SIZE) return false;
    return this.#s.crypto_aead_xchacha20poly1305_ietf_decrypt(
      out,
      null,
      null,
      ciphertext,
      BigInt(ciphertext.length),
      ad,
      BigInt(ad.length),
      nonce,
      key,
    ) === 0;
  }

  transportKey(bytes: Uint8Array): TransportKey {
    return new SodiumKey(bytes);
  }

  sealInPlace(
    key: TransportKey,
    counter: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
  ): void {
    writeNonce(this.#nonce, counter);
    const at = this.#pointers.at(buffer, offset);
    this.#s.seal_fast(
      at,
      null,
      at,
      length,
      null,
      0,
      null,
      this.#noncePointer,
      (key as SodiumKey).pointer,
    );
  }

  openInPlace(
    key: TransportKey,
    counter: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
  ): boolean {
    if (length < TAG_SIZE) return false;
    writeNonce(this.#nonce, counter);
    const at = this.#pointers.at(buffer, offset);
    return this.#s.open_fast(
      at,
      null,
      null,
      at,
      length,
      null,
      null,
      this.#noncePointer,
      (key as SodiumKey).pointer,
    ) === 0;
  }
}

class NodeKey implements TransportKey {
  readonly bytes: Buffer;
  constructor(bytes: Uint8Array) {
    this.bytes = Buffer.from(bytes.subarray(0, KEY_SIZE));
  }
  wipe(): void {
    this.bytes.fill(0);
  }
}

/** DER prefixes that wrap a raw 32-byte X25519 key (RFC 8410) for node:crypto. */
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");

function privateKeyObject(scalar: Uint8Array): nodeCrypto.KeyObject {
  return nodeCrypto.createPrivateKey({
    key: Buffer.concat([PKCS8_X25519, scalar]),
    format: "der",
    type: "pkcs8",
  });
}

class NodeProvider implements CryptoProvider {
  readonly name = "node:crypto" as const;
  readonly #nonce = Buffer.alloc(12);
  readonly #xnonce = Buffer.alloc(12);
  readonly #subkey = new Uint8Array(32);

  randomBytes(out: Uint8Array): Uint8Array {
    nodeCrypto.randomFillSync(out);
    return out;
  }

  x25519(out: Uint8Array, scalar: Uint8Array, point: Uint8Array): boolean {
    try {
      const shared = nodeCrypto.diffieHellman({
        privateKey: privateKeyObject(scalar),
        publicKey: nodeCrypto.createPublicKey({
          key: Buffer.concat([SPKI_X25519, point]),
          format: "der",
          type: "spki",
        }),
      });
      out.set(shared);
      let any = 0;
      for (const byte of shared) any |= byte;
      return any !== 0;
    } catch {
      // OpenSSL refuses a derivation whose result is all zeros (a small-order point).
      out.fill(0);
      return false;
    }
  }

  x25519Base(out: Uint8Array, scalar: Uint8Array): Uint8Array {
    const spki = nodeCrypto.createPublicKey(privateKeyObject(scalar)).export({
      format: "der",
      type: "spki",
    });
    out.set(spki.subarray(spki.length - 32));
    return out;
  }

  seal(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array) {
    sealWith(out, key, nonce, plaintext, ad);
  }

  open(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): boolean {
    return openWith(out, key, nonce, ciphertext, ad);
  }

  xseal(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    ad: Uint8Array,
  ) {
    hchacha20(this.#subkey, key, nonce);
    this.#xnonce.fill(0);
    this.#xnonce.set(nonce.subarray(16, 24), 4);
    sealWith(out, this.#subkey, this.#xnonce, plaintext, ad);
    this.#subkey.fill(0);
  }

  xopen(
    out: Uint8Array,
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): boolean {
    hchacha20(this.#subkey, key, nonce);
    this.#xnonce.fill(0);
    this.#xnonce.set(nonce.subarray(16, 24), 4);
    const ok = openWith(out, this.#subkey, this.#xnonce, ciphertext, ad);
    this.#subkey.fill(0);
    return ok;
  }

  transportKey(bytes: Uint8Array): TransportKey {
    return new NodeKey(bytes);
  }

  sealInPlace(
    key: TransportKey,
    counter: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
  ): void {
    writeNonce(this.#nonce, counter);
    const cipher = nodeCrypto.createCipheriv(
      "chacha20-poly1305",
      (key as NodeKey).bytes,
      this.#nonce,
      {
        authTagLength: TAG_SIZE,
      },
    );
    const body = cipher.update(buffer.subarray(offset, offset + length));
    cipher.final();
    buffer.set(body, offset);
    buffer.set(cipher.getAuthTag(), offset + length);
  }

  openInPlace(
    key: TransportKey,
    counter: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
  ): boolean {
    if (length < TAG_SIZE) return false;
    writeNonce(this.#nonce, counter);
    return openWith(
      buffer.subarray(offset, offset + length - TAG_SIZE),
      (key as NodeKey).bytes,
      this.#nonce,
      buffer.subarray(offset, offset + length),
      undefined,
    );
  }
}

function sealWith(
  out: Uint8Array,
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array | undefined,
): void {
  const cipher = nodeCrypto.createCipheriv("chacha20-poly1305", key, nonce, {
    authTagLength: TAG_SIZE,
  });
  if (ad && ad.length > 0) cipher.setAAD(ad, { plaintextLength: plaintext.length });
  const body = cipher.update(plaintext);
  cipher.final();
  out.set(body, 0);
  out.set(cipher.getAuthTag(), plaintext.length);
}

function openWith(
  out: Uint8Array,
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  ad: Uint8Array | undefined,
): boolean {
  if (ciphertext.length < TAG_SIZE) return false;
  const bodyLength = ciphertext.length - TAG_SIZE;
  try {
    const decipher = nodeCrypto.createDecipheriv("chacha20-poly1305", key, nonce, {
      authTagLength: TAG_SIZE,
    });
    // The tag is copied out first: `out` may overlap the ciphertext (in place).
    decipher.setAuthTag(Buffer.from(ciphertext.subarray(bodyLength)));
    if (ad && ad.length > 0) decipher.setAAD(ad, { plaintextLength: bodyLength });
    const body = decipher.update(ciphertext.subarray(0, bodyLength));
    decipher.final(); // throws on a bad tag
    out.set(body, 0);
    return true;
  } catch {
    return false;
  }
}

let libsodiumInstance: SodiumProvider | undefined;
let nodeInstance: NodeProvider | undefined;

/** The libsodium provider of this thread; throws, naming the fix, when it cannot load. */
export function libsodiumProvider(): CryptoProvider {
  if (libsodiumInstance) return libsodiumInstance;
  const s = sodium();
  if (!s) {
    throw new Error(
      `libsodium is not available: ${sodiumLoadError()} ` +
        "(install it with: apt-get install libsodium23)",
    );
  }
  libsodiumInstance = new SodiumProvider(s);
  return libsodiumInstance;
}

/** The node:crypto provider (always available; slower, allocates per call). */
export function nodeCryptoProvider(): CryptoProvider {
  nodeInstance ??= new NodeProvider();
  return nodeInstance;
}

/** libsodium when it loads on this thread, else node:crypto. */
export function defaultCryptoProvider(): CryptoProvider {
  return sodium() ? libsodiumProvider() : nodeCryptoProvider();
}

/** Which provider `defaultCryptoProvider()` uses on this thread. */
export function cryptoProvider(): CryptoProviderName {
  return defaultCryptoProvider().name;
}
