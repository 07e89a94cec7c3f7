/**
 * IPv4 packet work for the udp data path: validation, TTL decrement with an
 * incremental checksum update (RFC 1624), and ICMP destination-unreachable replies.
 * Every function works in place on a buffer and an offset: nothing is allocated.
 *
 * IPv4 header (RFC 791), offsets from the packet start:
 *   0 version(4 bits) | IHL(4 bits), 2 total length, 8 TTL, 9 protocol,
 *   10 header checksum, 12 source address, 16 destination address
 */

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

/**
 * The ones'-complement sum of 16-bit words, folded (not yet inverted). Eight bytes per
 * turn of the loop: the transmit path checksums every byte it segments.
 */
export function onesComplementSum(
  bytes: Uint8Array,
  offset: number,
  length: number,
  initial = 0,
): number {
  let sum = initial;
  let i = offset;
  const end8 = offset + (length & ~7);
  for (; i < end8; i += 8) {
    sum += ((bytes[i] << 8) | bytes[i + 1]) + ((bytes[i + 2] << 8) | bytes[i + 3]) +
      ((bytes[i + 4] << 8) | bytes[i + 5]) + ((bytes[i + 6] << 8) | bytes[i + 7]);
  }
  const end2 = offset + (length & ~1);
  for (; i < end2; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (length & 1) sum += bytes[offset + length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return sum;
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
