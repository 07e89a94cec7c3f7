/**
 * WireGuard's four message layouts (whitepaper §5.4) and little-endian field helpers.
 * Every message starts with a u32 little-endian type (the type byte and three zero
 * reserved bytes). Offsets are from the start of the message:
 *
 *   1 initiation, 148 B: type 0, sender 4, ephemeral 8 (32), static 40 (32 + 16 tag),
 *                        timestamp 88 (12 + 16 tag), mac1 116 (16), mac2 132 (16)
 *   2 response,    92 B: type 0, sender 4, receiver 8, ephemeral 12 (32),
 *                        empty 44 (0 + 16 tag), mac1 60 (16), mac2 76 (16)
 *   3 cookie reply, 64 B: type 0, receiver 4, nonce 8 (24), cookie 32 (16 + 16 tag)
 *   4 transport, 16 B header + ciphertext: type 0, receiver 4, counter 8 (u64),
 *                        then the padded inner packet and its 16-byte tag from 16
 */

export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT = 4;

export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
export const TRANSPORT_HEADER_SIZE = 16;
/** A keepalive: a transport message with an empty (zero-length) inner packet. */
export const KEEPALIVE_SIZE = TRANSPORT_HEADER_SIZE + 16;

export const INITIATION_SENDER = 4;
export const INITIATION_EPHEMERAL = 8;
export const INITIATION_STATIC = 40;
export const INITIATION_TIMESTAMP = 88;
export const INITIATION_MAC1 = 116;
export const INITIATION_MAC2 = 132;

export const RESPONSE_SENDER = 4;
export const RESPONSE_RECEIVER = 8;
export const RESPONSE_EPHEMERAL = 12;
export const RESPONSE_EMPTY = 44;
export const RESPONSE_MAC1 = 60;
export const RESPONSE_MAC2 = 76;

export const COOKIE_RECEIVER = 4;
export const COOKIE_NONCE = 8;
export const COOKIE_ENCRYPTED = 32;

export const TRANSPORT_RECEIVER = 4;
export const TRANSPORT_COUNTER = 8;

/** Inner packets are zero-padded to a multiple of this (whitepaper §5.4.6). */
export const PADDING_MULTIPLE = 16;

/** A u32 little-endian at `offset`, unsigned. */
export function readU32Le(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) |
    (bytes[offset + 3] << 24)) >>> 0;
}

export function writeU32Le(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 255;
  bytes[offset + 1] = (value >>> 8) & 255;
  bytes[offset + 2] = (value >>> 16) & 255;
  bytes[offset + 3] = value >>> 24;
}

/**
 * The u64 little-endian counter at `offset` as a number, or -1 when it is 2^53 or more
 * (beyond what a number holds exactly; such counters are refused, see replay.ts).
 */
export function readCounter(bytes: Uint8Array, offset: number): number {
  const high = readU32Le(bytes, offset + 4);
  if (high >= 0x20_0000) return -1;
  return high * 0x1_0000_0000 + readU32Le(bytes, offset);
}

/** Writes `counter` (< 2^53) as a u64 little-endian at `offset`. */
export function writeCounter(bytes: Uint8Array, offset: number, counter: number): void {
  writeU32Le(bytes, offset, counter >>> 0);
  writeU32Le(bytes, offset + 4, Math.floor(counter / 0x1_0000_0000));
}

/**
 * Padding after an inner packet of `length` bytes: up to the next multiple of 16, but
 * never past `mtu` (as wireguard-go's calculatePaddingSize).
 */
export function paddingFor(length: number, mtu: number): number {
  if (mtu <= 0) return (PADDING_MULTIPLE - (length % PADDING_MULTIPLE)) % PADDING_MULTIPLE;
  let last = length;
  if (last > mtu) last %= mtu;
  let padded = (last + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
  if (padded > mtu) padded = mtu;
  return padded - last;
}
