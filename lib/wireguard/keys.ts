/**
 * WireGuard keys as people and `wg` write them: base64 of 32 bytes.
 */
import { Buffer } from "node:buffer";

/** A 32-byte key from base64 (as `wg genkey` / `wg pubkey` print it) or from bytes. */
export function parseKey(key: string | Uint8Array, what = "key"): Uint8Array {
  if (typeof key !== "string") {
    if (key.length !== 32) throw new Error(`WireGuard ${what} must be 32 bytes, got ${key.length}`);
    return new Uint8Array(key);
  }
  const bytes = Buffer.from(key.trim(), "base64");
  if (bytes.length !== 32 || !/^[A-Za-z0-9+/]{43}=$/.test(key.trim())) {
    throw new Error(
      `WireGuard ${what} "${key}" is not 44 characters of base64 for 32 bytes ` +
        "(make one with: wg genkey)",
    );
  }
  return new Uint8Array(bytes);
}

/** base64 of a key, as `wg` prints it. */
export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}
