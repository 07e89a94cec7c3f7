/**
 * libsodium (Debian libsodium23) through Deno FFI: the only place that opens it. Thin,
 * typed, synchronous calls for WireGuard's primitives: X25519, ChaCha20-Poly1305 (IETF,
 * 96-bit nonce), XChaCha20-Poly1305 (cookie replies) and the system CSPRNG.
 *
 * The data-path symbols (`*_fast`) take pointers and u32 lengths so that V8's fast call
 * path applies (~20 ns a call instead of ~200 ns with u64 numbers). libsodium declares
 * its lengths `unsigned long long`; a u32 is only passed where the length travels in a
 * register (the first six integer arguments on x86_64), which the CPU zero-extends. A u32
 * in a stack slot is not widened — a 10-argument call with one crashed — so a length
 * that falls on the stack is typed "pointer" and passed as null (= 0), which is the
 * only value the data path uses there (transport messages carry no associated data).
 *
 * Each thread (main, a data-path Worker) opens its own handle, like ffi/libc.ts.
 */

const SYMBOLS = {
  sodium_init: { parameters: [], result: "i32" },
  randombytes_buf: { parameters: ["buffer", "usize"], result: "void" },
  crypto_scalarmult_curve25519: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  crypto_scalarmult_curve25519_base: { parameters: ["buffer", "buffer"], result: "i32" },
  /** encrypt(c, clen_p, m, mlen, ad, adlen, nsec, npub, k): handshakes, with associated data. */
  crypto_aead_chacha20poly1305_ietf_encrypt: {
    parameters: [
      "buffer",
      "pointer",
      "buffer",
      "u64",
      "buffer",
      "u64",
      "pointer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  /** decrypt(m, mlen_p, nsec, c, clen, ad, adlen, npub, k) */
  crypto_aead_chacha20poly1305_ietf_decrypt: {
    parameters: [
      "buffer",
      "pointer",
      "pointer",
      "buffer",
      "u64",
      "buffer",
      "u64",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  crypto_aead_xchacha20poly1305_ietf_encrypt: {
    parameters: [
      "buffer",
      "pointer",
      "buffer",
      "u64",
      "buffer",
      "u64",
      "pointer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  crypto_aead_xchacha20poly1305_ietf_decrypt: {
    parameters: [
      "buffer",
      "pointer",
      "pointer",
      "buffer",
      "u64",
      "buffer",
      "u64",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  /**
   * Data path, in place: encrypt(c = m, NULL, m, mlen (u32, register), ad = NULL,
   * adlen (u32, register), NULL, npub, k). Writes mlen bytes then the 16-byte tag.
   */
  seal_fast: {
    name: "crypto_aead_chacha20poly1305_ietf_encrypt",
    parameters: [
      "pointer",
      "pointer",
      "pointer",
      "u32",
      "pointer",
      "u32",
      "pointer",
      "pointer",
      "pointer",
    ],
    result: "i32",
  },
  /**
   * Data path, in place: decrypt(m = c, NULL, NULL, c, clen (u32, register), ad = NULL,
   * adlen (stack slot: "pointer", always null), npub, k). Returns -1 on a bad tag.
   */
  open_fast: {
    name: "crypto_aead_chacha20poly1305_ietf_decrypt",
    parameters: [
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "u32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
    ],
    result: "i32",
  },
} as const;

export type Sodium = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The Debian libsodium23 soname. */
export const SODIUM_LIBRARY = "libsodium.so.23";

let handle: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let failure: string | undefined;

/**
 * This thread's libsodium, initialised; undefined when it cannot be loaded (see
 * `sodiumLoadError()`), or when OVERLAY_CRYPTO=node asks for the fallback.
 */
export function sodium(): Sodium | undefined {
  if (handle) return handle.symbols;
  if (failure !== undefined) return undefined;
  if (envCrypto() === "node") {
    failure = "OVERLAY_CRYPTO=node asked for node:crypto";
    return undefined;
  }
  try {
    const library = Deno.dlopen(SODIUM_LIBRARY, SYMBOLS);
    // 0: initialised now, 1: already initialised, -1: failed (no entropy source).
    if (library.symbols.sodium_init() < 0) {
      library.close();
      failure = "sodium_init() failed";
      return undefined;
    }
    handle = library;
    return handle.symbols;
  } catch (error) {
    failure = `cannot load ${SODIUM_LIBRARY}: ${(error as Error).message} ` +
      "(install it with: apt-get install libsodium23)";
    return undefined;
  }
}

/** Why libsodium is not in use on this thread, or undefined when it is (or not yet tried). */
export function sodiumLoadError(): string | undefined {
  return failure;
}

/** OVERLAY_CRYPTO, or undefined when unset or unreadable (no --allow-env). */
function envCrypto(): string | undefined {
  try {
    return Deno.env.get("OVERLAY_CRYPTO");
  } catch {
    return undefined;
  }
}
