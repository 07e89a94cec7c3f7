/**
 * IPv4 packet work for the udp data path: validation, TTL decrement with an
 * incremental checksum update (RFC 1624), and ICMP destination-unreachable replies.
 * Every function works in place on a buffer and an offset: nothing is allocated.
 *
 * IPv4 header (RFC 791), offsets from the packet start:
 *   0 version(4 bits) | IHL(4 bits), 2 total length, 8 TTL, 9 protocol,
 *   10 header checksum, 12 source address, 16 destination address
 */

import { onesComplementSum } from "./checksum.ts";

export { onesComplementSum };

export const IPV4_MIN_HEADER = 20;
export const PROTOCOL_ICMP = 1;

/** Why a packet was refused; 0 means it is a well-formed IPv4 packet. */
export const PACKET_OK = 0;
export const PACKET_TOO_SHORT = 1;
export const PACKET_NOT_IPV4 = 2;
export const PACKET_BAD_HEADER_LENGTH = 3;
export const PACKET_BAD_TOTAL_LENGTH = 4;
export const PACKET_BAD_CHECKSUM = 5;

/** A big-endian u32 at `offset`, as an unsigned number. */
export function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) |
    bytes[offset + 3]) >>> 0;
}

/** A big-endian u16 at `offset`. */
export function writeU16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 8;
  bytes[offset + 1] = value & 255;
}

/** A little-endian u16 at `offset` (the vnet header's byte order). */
export function writeU16Le(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 255;
  bytes[offset + 1] = value >>> 8;
}

export function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 24;
  bytes[offset + 1] = (value >>> 16) & 255;
  bytes[offset + 2] = (value >>> 8) & 255;
  bytes[offset + 3] = value & 255;
}

/** The internet checksum of a range (RFC 1071). */
export function internetChecksum(bytes: Uint8Array, offset: number, length: number): number {
  return ~onesComplementSum(bytes, offset, length) & 0xffff;
}

/**
 * Checks that `length` bytes at `offset` hold exactly one IPv4 packet with a valid
 * header checksum. Returns PACKET_OK or the reason.
 */
export function validateIpv4(bytes: Uint8Array, offset: number, length: number): number {
  if (length < IPV4_MIN_HEADER) return PACKET_TOO_SHORT;
  const first = bytes[offset];
  if (first >>> 4 !== 4) return PACKET_NOT_IPV4;
  const headerLength = (first & 15) * 4;
  if (headerLength < IPV4_MIN_HEADER || headerLength > length) return PACKET_BAD_HEADER_LENGTH;
  const totalLength = (bytes[offset + 2] << 8) | bytes[offset + 3];
  if (totalLength !== length) return PACKET_BAD_TOTAL_LENGTH;
  if (onesComplementSum(bytes, offset, headerLength) !== 0xffff) return PACKET_BAD_CHECKSUM;
  return PACKET_OK;
}

/**
 * Decrements the TTL and patches the header checksum incrementally. Returns false,
 * changing nothing, when the TTL is already 1 or 0 (the packet must be dropped).
 */
export function decrementTtl(bytes: Uint8Array, offset: number): boolean {
  const ttl = bytes[offset + 8];
  if (ttl <= 1) return false;
  bytes[offset + 8] = ttl - 1;
  // HC' = ~(~HC + ~m + m') with m = ttl<<8 | proto; TTL drops by one, so m' = m - 0x100.
  const old = (bytes[offset + 10] << 8) | bytes[offset + 11];
  let sum = (~old & 0xffff) + (~(ttl << 8) & 0xffff) + ((ttl - 1) << 8);
  // The protocol byte is in both m and m': it cancels out.
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const fresh = ~sum & 0xffff;
  bytes[offset + 10] = fresh >>> 8;
  bytes[offset + 11] = fresh & 255;
  return true;
}

/** ICMP type 3 (destination unreachable), code 0 (network unreachable). */
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_NET_UNREACHABLE = 0;

/**
 * Writes into `out` at `outOffset` an ICMP net-unreachable from `sourceIp` back to the
 * sender of the packet at `offset`: IPv4 header + 8-byte ICMP header + the original IP
 * header + the first 8 bytes of its payload. Returns the reply length, or 0 when no
 * reply is due (the original is itself ICMP error traffic or not a first fragment).
 */
export function writeNetUnreachable(
  bytes: Uint8Array,
  offset: number,
  length: number,
  sourceIp: number,
  out: Uint8Array,
  outOffset: number,
): number {
  const headerLength = (bytes[offset] & 15) * 4;
  const fragmentOffset = ((bytes[offset + 6] & 0x1f) << 8) | bytes[offset + 7];
  if (fragmentOffset !== 0) return 0;
  if (bytes[offset + 9] === PROTOCOL_ICMP) {
    const type = bytes[offset + headerLength];
    if (!(type === 0 || type === 8 || type === 13 || type === 14)) return 0; // never answer an ICMP error
  }
  const quoted = Math.min(length, headerLength + 8);
  const total = IPV4_MIN_HEADER + 8 + quoted;
  const o = outOffset;
  out[o] = 0x45;
  out[o + 1] = 0;
  out[o + 2] = total >>> 8;
  out[o + 3] = total & 255;
  out[o + 4] = 0;
  out[o + 5] = 0;
  out[o + 6] = 0;
  out[o + 7] = 0;
  out[o + 8] = 64;
  out[o + 9] = PROTOCOL_ICMP;
  out[o + 10] = 0;
  out[o + 11] = 0;
  writeU32(out, o + 12, sourceIp);
  for (let i = 0; i < 4; i++) out[o + 16 + i] = bytes[offset + 12 + i];
  const header = internetChecksum(out, o, IPV4_MIN_HEADER);
  out[o + 10] = header >>> 8;
  out[o + 11] = header & 255;
  const icmp = o + IPV4_MIN_HEADER;
  out[icmp] = ICMP_DEST_UNREACHABLE;
  out[icmp + 1] = ICMP_NET_UNREACHABLE;
  out[icmp + 2] = 0;
  out[icmp + 3] = 0;
  out[icmp + 4] = 0;
  out[icmp + 5] = 0;
  out[icmp + 6] = 0;
  out[icmp + 7] = 0;
  for (let i = 0; i < quoted; i++) out[icmp + 8 + i] = bytes[offset + i];
  const sum = internetChecksum(out, icmp, 8 + quoted);
  out[icmp + 2] = sum >>> 8;
  out[icmp + 3] = sum & 255;
  return total;
}

/*
 * IPv6 (RFC 8200), carried as inner packets in a dual-stack network. Header offsets:
 *   0 version(4 bits) | traffic class(8) | flow label(20), 4 payload length,
 *   6 next header, 7 hop limit, 8 source address (16 bytes), 24 destination (16 bytes)
 * The header has no checksum: the hop limit changes with nothing else to patch.
 */

export const IPV6_HEADER = 40;
export const PROTOCOL_ICMPV6 = 58;
export const PACKET_NOT_IPV6 = 6;
export const PACKET_BAD_PAYLOAD_LENGTH = 7;

/**
 * Checks that `length` bytes at `offset` hold exactly one IPv6 packet: version 6, a whole
 * 40-byte header, and a payload length that accounts for every byte after it (a jumbogram,
 * payload length 0 with more bytes behind, is refused too). Returns PACKET_OK or the reason.
 */
export function validateIpv6(bytes: Uint8Array, offset: number, length: number): number {
  if (length < IPV6_HEADER) return PACKET_TOO_SHORT;
  if (bytes[offset] >>> 4 !== 6) return PACKET_NOT_IPV6;
  const payloadLength = (bytes[offset + 4] << 8) | bytes[offset + 5];
  if (payloadLength + IPV6_HEADER !== length) return PACKET_BAD_PAYLOAD_LENGTH;
  return PACKET_OK;
}

/**
 * Decrements the hop limit. Returns false, changing nothing, when it is already 1 or 0
 * (the packet must be dropped), as decrementTtl does for IPv4.
 */
export function decrementHopLimit(bytes: Uint8Array, offset: number): boolean {
  const hops = bytes[offset + 7];
  if (hops <= 1) return false;
  bytes[offset + 7] = hops - 1;
  return true;
}

/**
 * An IPv6 prefix matched against addresses in packet bytes: four masked 32-bit compares,
 * no bigint on the hot path (the bigint is turned into words once, here).
 */
export class Ip6Prefix {
  readonly #words = new Uint32Array(4);
  readonly #masks = new Uint32Array(4);

  constructor(ip: bigint, prefixLen: number) {
    for (let i = 0; i < 4; i++) {
      const bits = Math.max(0, Math.min(32, prefixLen - 32 * i));
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      this.#masks[i] = mask;
      this.#words[i] = (Number((ip >> BigInt(96 - 32 * i)) & 0xffffffffn) & mask) >>> 0;
    }
  }

  /** True when the 16-byte address at `offset` lies in the prefix. */
  contains(bytes: Uint8Array, offset: number): boolean {
    const w = this.#words;
    const m = this.#masks;
    return ((readU32(bytes, offset) & m[0]) >>> 0) === w[0] &&
      ((readU32(bytes, offset + 4) & m[1]) >>> 0) === w[1] &&
      ((readU32(bytes, offset + 8) & m[2]) >>> 0) === w[2] &&
      ((readU32(bytes, offset + 12) & m[3]) >>> 0) === w[3];
  }
}

/** ICMPv6 type 1 (destination unreachable), code 0 (no route to destination). */
export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_NO_ROUTE = 0;
/** An ICMPv6 error is at most the IPv6 minimum MTU long (RFC 4443 §2.4(c)). */
export const ICMPV6_ERROR_MAX = 1280;

const EXT_HOP_BY_HOP = 0;
const EXT_ROUTING = 43;
const EXT_FRAGMENT = 44;
const EXT_AUTH = 51;
const EXT_DEST_OPTIONS = 60;

/**
 * True when an ICMPv6 error may answer the IPv6 packet at `offset` (RFC 4443 §2.4(e)):
 * its source is neither unspecified nor multicast, its destination is not multicast, it is
 * not itself an ICMPv6 error (types below 128), and it is not a fragment other than the
 * first (as for IPv4). A header chain cut short is not answered.
 */
function icmp6Eligible(bytes: Uint8Array, offset: number, length: number): boolean {
  if (bytes[offset + 8] === 0xff || bytes[offset + 24] === 0xff) return false;
  let unspecified = true;
  for (let i = 8; i < 24; i++) if (bytes[offset + i] !== 0) unspecified = false;
  if (unspecified) return false;
  const end = offset + length;
  let next = bytes[offset + 6];
  let at = offset + IPV6_HEADER;
  // At most 8 extension headers are walked; a longer chain is not answered.
  for (let hops = 0; hops < 8; hops++) {
    if (next === PROTOCOL_ICMPV6) return at < end && bytes[at] >= 128;
    if (next === EXT_HOP_BY_HOP || next === EXT_ROUTING || next === EXT_DEST_OPTIONS) {
      if (at + 2 > end) return false;
      next = bytes[at];
      at += (bytes[at + 1] + 1) * 8;
    } else if (next === EXT_FRAGMENT) {
      if (at + 8 > end) return false;
      if ((((bytes[at + 2] << 8) | bytes[at + 3]) & 0xfff8) !== 0) return false;
      next = bytes[at];
      at += 8;
    } else if (next === EXT_AUTH) {
      if (at + 2 > end) return false;
      next = bytes[at];
      at += (bytes[at + 1] + 2) * 4;
    } else {
      return true;
    }
  }
  return false;
}

/**
 * Writes into `out` at `outOffset` an ICMPv6 destination unreachable (no route) from the
 * 16 bytes of `sourceIp` back to the sender of the IPv6 packet at `offset`: IPv6 header +
 * 8-byte ICMPv6 header + as much of the original as fits in 1280 bytes, with the checksum
 * over the IPv6 pseudo-header (RFC 4443 §2.3). Returns the reply length, or 0 when no reply
 * is due (see icmp6Eligible). `out` needs ICMPV6_ERROR_MAX bytes from `outOffset`.
 */
export function writeNoRoute6(
  bytes: Uint8Array,
  offset: number,
  length: number,
  sourceIp: Uint8Array,
  out: Uint8Array,
  outOffset: number,
): number {
  if (length < IPV6_HEADER || !icmp6Eligible(bytes, offset, length)) return 0;
  const quoted = Math.min(length, ICMPV6_ERROR_MAX - IPV6_HEADER - 8);
  const icmpLength = 8 + quoted;
  const o = outOffset;
  out[o] = 0x60;
  out[o + 1] = 0;
  out[o + 2] = 0;
  out[o + 3] = 0;
  writeU16(out, o + 4, icmpLength);
  out[o + 6] = PROTOCOL_ICMPV6;
  out[o + 7] = 64;
  for (let i = 0; i < 16; i++) out[o + 8 + i] = sourceIp[i];
  for (let i = 0; i < 16; i++) out[o + 24 + i] = bytes[offset + 8 + i];
  const icmp = o + IPV6_HEADER;
  out[icmp] = ICMPV6_DEST_UNREACHABLE;
  out[icmp + 1] = ICMPV6_NO_ROUTE;
  for (let i = 2; i < 8; i++) out[icmp + i] = 0;
  for (let i = 0; i < quoted; i++) out[icmp + 8 + i] = bytes[offset + i];
  // Pseudo-header: source, destination, upper-layer length (32 bits), next header (32 bits).
  const pseudo = onesComplementSum(out, o + 8, 32, icmpLength + PROTOCOL_ICMPV6);
  const sum = onesComplementSum(out, icmp, icmpLength, pseudo);
  writeU16(out, icmp + 2, ~sum & 0xffff);
  return IPV6_HEADER + icmpLength;
}
