/**
 * TCP segmentation and coalescing for the udp data path with TUN offloads, keeping
 * flannel's wire format: every UDP datagram carries exactly one ordinary IPv4 packet.
 *
 * With IFF_VNET_HDR the TUN prefixes each packet with a virtio_net_hdr (10 bytes, little
 * endian): u8 flags (1 = NEEDS_CSUM), u8 gso_type (0 none, 1 TCPv4), u16 hdr_len,
 * u16 gso_size, u16 csum_start, u16 csum_offset. With TUNSETOFFLOAD(CSUM|TSO4) the kernel
 * hands us TCP "super-packets" of up to 64 KB and leaves checksums to us:
 * - transmit: segmentTcp4() cuts a super-packet into gso_size segments with correct IP
 *   ids, lengths, TCP sequence numbers, flags and checksums, laid end to end so that one
 *   UDP_SEGMENT send turns them into one datagram each;
 * - receive: TcpCoalescer joins consecutive segments of one flow back into a super-packet
 *   that one TUN write delivers (vnet header gso TCPv4, checksum left to the kernel). Each
 *   segment's checksum is verified before it joins, as the kernel's GRO and wireguard-go's
 *   do: a damaged segment is written alone, unchanged, for the receiver to drop.
 * Everything works in place on caller-owned buffers; nothing is allocated per packet.
 */
import { onesComplementSum, readU32, writeU16, writeU16Le } from "./packet.ts";

export const VNET_HDR_SIZE = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;

const PROTOCOL_TCP = 6;
const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_URG = 0x20;
const TCP_CWR = 0x80;

/** A virtio_net_hdr as read from the TUN (little endian on the wire). */
export interface VnetHeader {
  flags: number;
  gsoType: number;
  headerLength: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

/** Reads the vnet header at `at` into `out` (reused: nothing allocated per packet). */
export function readVnetHeader(bytes: Uint8Array, at: number, out: VnetHeader): VnetHeader {
  out.flags = bytes[at];
  out.gsoType = bytes[at + 1];
  out.headerLength = bytes[at + 2] | (bytes[at + 3] << 8);
  out.gsoSize = bytes[at + 4] | (bytes[at + 5] << 8);
  out.csumStart = bytes[at + 6] | (bytes[at + 7] << 8);
  out.csumOffset = bytes[at + 8] | (bytes[at + 9] << 8);
  return out;
}

/** The ones'-complement sum of the IPv4 pseudo header (not inverted). */
function pseudoHeaderSum(bytes: Uint8Array, ip: number, protocol: number, length: number): number {
  let sum = ((bytes[ip + 12] << 8) | bytes[ip + 13]) + ((bytes[ip + 14] << 8) | bytes[ip + 15]) +
    ((bytes[ip + 16] << 8) | bytes[ip + 17]) + ((bytes[ip + 18] << 8) | bytes[ip + 19]) + protocol +
    length;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** True when the TCP checksum of the IPv4 packet at `ip` (`length` bytes) verifies. */
function tcpChecksumValid(
  bytes: Uint8Array,
  ip: number,
  ipLength: number,
  length: number,
): boolean {
  const tcpLength = length - ipLength;
  const pseudo = pseudoHeaderSum(bytes, ip, PROTOCOL_TCP, tcpLength);
  return onesComplementSum(bytes, ip + ipLength, tcpLength, pseudo) === 0xffff;
}

function ipHeaderChecksum(bytes: Uint8Array, ip: number, headerLength: number): void {
  bytes[ip + 10] = 0;
  bytes[ip + 11] = 0;
  writeU16(bytes, ip + 10, ~onesComplementSum(bytes, ip, headerLength) & 0xffff);
}

/**
 * Completes a checksum the kernel left to us (NEEDS_CSUM): the field at
 * start + offset holds the pseudo-header sum; sum from `start` to the end and store it.
 */
export function finishChecksum(
  bytes: Uint8Array,
  packet: number,
  length: number,
  start: number,
  offset: number,
): void {
  const field = packet + start + offset;
  if (start + offset + 2 > length) return;
  const sum = onesComplementSum(bytes, packet + start, length - start);
  writeU16(bytes, field, ~sum & 0xffff || 0xffff);
}

export interface Segmented {
  /** Segments written. */
  count: number;
  /** Bytes of every segment but the last (the UDP_SEGMENT size). */
  segmentSize: number;
  /** Bytes written in all. */
  total: number;
}

/**
 * Cuts the IPv4/TCP super-packet at `packet` (`length` bytes, without vnet header) into
 * segments of `gsoSize` payload bytes, written end to end at `outOffset` of the same
 * buffer (after the super-packet, so copies are native copyWithin calls). Each segment is
 * a complete IPv4 packet: IP id + i, total length and header checksum; TCP sequence
 * number + i × gsoSize, FIN and PSH only on the last segment, CWR only on the first, and
 * a full TCP checksum. Returns undefined when the packet is not IPv4/TCP or does not fit.
 */
export function segmentTcp4(
  bytes: Uint8Array,
  packet: number,
  length: number,
  gsoSize: number,
  outOffset: number,
  result: Segmented,
): Segmented | undefined {
  const out = bytes;
  if (
    length < 40 || bytes[packet] >>> 4 !== 4 || bytes[packet + 9] !== PROTOCOL_TCP || gsoSize <= 0
  ) return undefined;
  const ipLength = (bytes[packet] & 15) * 4;
  const tcp = packet + ipLength;
  const tcpLength = (bytes[tcp + 12] >>> 4) * 4;
  const headers = ipLength + tcpLength;
  if (headers > length || tcpLength < 20) return undefined;
  const payload = length - headers;
  const count = Math.max(1, Math.ceil(payload / gsoSize));
  if (outOffset + payload + count * headers > out.length) return undefined;
  const id = (bytes[packet + 4] << 8) | bytes[packet + 5];
  const seq = readU32(bytes, tcp + 4);
  const flags = bytes[tcp + 13];
  let o = outOffset;
  for (let i = 0; i < count; i++) {
    const chunk = Math.min(gsoSize, payload - i * gsoSize);
    const segmentLength = headers + chunk;
    out.copyWithin(o, packet, packet + headers);
    out.copyWithin(
      o + headers,
      packet + headers + i * gsoSize,
      packet + headers + i * gsoSize + chunk,
    );
    writeU16(out, o + 2, segmentLength);
    writeU16(out, o + 4, (id + i) & 0xffff);
    ipHeaderChecksum(out, o, ipLength);
    const t = o + ipLength;
    const s = (seq + i * gsoSize) >>> 0;
    out[t + 4] = s >>> 24;
    out[t + 5] = (s >>> 16) & 255;
    out[t + 6] = (s >>> 8) & 255;
    out[t + 7] = s & 255;
    const last = i === count - 1;
    let f = flags;
    if (!last) f &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) f &= ~TCP_CWR;
    out[t + 13] = f;
    out[t + 16] = 0;
    out[t + 17] = 0;
    const sum = onesComplementSum(
      out,
      t,
      tcpLength + chunk,
      pseudoHeaderSum(out, o, PROTOCOL_TCP, tcpLength + chunk),
    );
    writeU16(out, t + 16, ~sum & 0xffff);
    o += segmentLength;
  }
  result.count = count;
  result.segmentSize = headers + Math.min(gsoSize, payload);
  result.total = o - outOffset;
  return result;
}

/**
 * Joins consecutive TCP segments of one flow into a super-packet behind a vnet header.
 * add() takes a validated IPv4 packet; when it cannot extend the current run it first
 * flushes the run through `write`. Call flush() at the end of each receive batch.
 * Packets and the run live in one buffer: the run is built in the region that starts at
 * `start` (a vnet header and up to 64 KB), so every copy is a native copyWithin.
 */
export class TcpCoalescer {
  readonly #buffer: Uint8Array;
  readonly #start: number;
  readonly #capacity: number;
  readonly #write: (start: number, length: number) => void;
  /** Bytes in the run, counted from `start` (vnet header included). */
  #length = 0;
  #segments = 0;
  #headers = 0;
  #mss = 0;
  #nextSeq = 0;
  #ended = false;

  /** `write(start, length)` hands the bytes at [start, start + length) of the buffer to the TUN. */
  constructor(buffer: Uint8Array, start: number, write: (start: number, length: number) => void) {
    this.#buffer = buffer;
    this.#start = start;
    this.#capacity = Math.min(buffer.length - start, VNET_HDR_SIZE + 65535);
    this.#write = write;
  }

  add(packet: number, length: number): void {
    const bytes = this.#buffer;
    const base = this.#start;
    const ipLength = (bytes[packet] & 15) * 4;
    const fragment = ((bytes[packet + 6] & 0x3f) << 8) | bytes[packet + 7];
    const tcpOk = bytes[packet + 9] === PROTOCOL_TCP && fragment === 0 && length >= ipLength + 20;
    const tcp = packet + ipLength;
    const tcpLength = tcpOk ? (bytes[tcp + 12] >>> 4) * 4 : 0;
    const headers = ipLength + tcpLength;
    const payload = length - headers;
    const flags = tcpOk ? bytes[tcp + 13] : 0;
    // A segment whose checksum is wrong passes alone, as it came: joined into a run, the
    // kernel would compute the run's checksum afresh and the damage would go unseen.
    const plain = !tcpOk || headers > length || payload <= 0 ||
      (flags & (TCP_SYN | TCP_RST | TCP_URG | TCP_FIN)) !== 0 ||
      !tcpChecksumValid(bytes, packet, ipLength, length);
    if (this.#segments > 0 && !plain && this.#extends(packet, headers, payload)) {
      if (this.#length + payload <= this.#capacity) {
        bytes.copyWithin(base + this.#length, packet + headers, packet + length);
        this.#length += payload;
        this.#segments++;
        this.#nextSeq = (this.#nextSeq + payload) >>> 0;
        if (payload < this.#mss || (flags & TCP_PSH)) {
          bytes[base + VNET_HDR_SIZE + ipLength + 13] |= flags & TCP_PSH;
          this.#ended = true;
        }
        return;
      }
    }
    this.flush();
    // A packet starts a run; a plain one is flushed at once with an empty vnet header.
    bytes.copyWithin(base + VNET_HDR_SIZE, packet, packet + length);
    this.#length = VNET_HDR_SIZE + length;
    this.#segments = 1;
    this.#headers = headers;
    this.#mss = payload;
    this.#nextSeq = tcpOk ? (readU32(bytes, tcp + 4) + payload) >>> 0 : 0;
    this.#ended = plain || (flags & TCP_PSH) !== 0;
    if (plain) this.flush();
  }

  /** Same flow, next sequence number, same headers but for id, length, checksums and PSH. */
  #extends(packet: number, headers: number, payload: number): boolean {
    if (this.#ended || headers !== this.#headers || payload > this.#mss) return false;
    const bytes = this.#buffer;
    const first = this.#start + VNET_HDR_SIZE;
    const ipLength = (bytes[packet] & 15) * 4;
    // IP: version/IHL, TOS, flags/fragment, TTL, protocol, addresses, options.
    if (bytes[packet] !== bytes[first] || bytes[packet + 1] !== bytes[first + 1]) return false;
    if (bytes[packet + 6] !== bytes[first + 6] || bytes[packet + 8] !== bytes[first + 8]) {
      return false;
    }
    for (let i = 12; i < ipLength; i++) if (bytes[packet + i] !== bytes[first + i]) return false;
    const tcp = packet + ipLength;
    const runTcp = first + ipLength;
    // TCP: ports, ack, data offset, flags but PSH, window, options.
    for (let i = 0; i < 4; i++) if (bytes[tcp + i] !== bytes[runTcp + i]) return false;
    if (readU32(bytes, tcp + 4) !== this.#nextSeq) return false;
    for (let i = 8; i < 13; i++) if (bytes[tcp + i] !== bytes[runTcp + i]) return false;
    if ((bytes[tcp + 13] & ~TCP_PSH) !== (bytes[runTcp + 13] & ~TCP_PSH)) return false;
    if (bytes[tcp + 14] !== bytes[runTcp + 14] || bytes[tcp + 15] !== bytes[runTcp + 15]) {
      return false;
    }
    for (let i = 20; i < headers - ipLength; i++) {
      if (bytes[tcp + i] !== bytes[runTcp + i]) return false;
    }
    return true;
  }

  /** Writes the current run, if any. */
  flush(): void {
    if (this.#segments === 0) return;
    const out = this.#buffer;
    const base = this.#start;
    const ip = base + VNET_HDR_SIZE;
    const ipLength = (out[ip] & 15) * 4;
    out.fill(0, base, base + VNET_HDR_SIZE);
    if (this.#segments > 1) {
      const total = this.#length - VNET_HDR_SIZE;
      writeU16(out, ip + 2, total);
      ipHeaderChecksum(out, ip, ipLength);
      // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the kernel adds the rest.
      writeU16(out, ip + ipLength + 16, pseudoHeaderSum(out, ip, PROTOCOL_TCP, total - ipLength));
      out[base] = VNET_F_NEEDS_CSUM;
      out[base + 1] = VNET_GSO_TCPV4;
      writeU16Le(out, base + 2, this.#headers);
      writeU16Le(out, base + 4, this.#mss);
      writeU16Le(out, base + 6, ipLength);
      writeU16Le(out, base + 8, 16);
    }
    this.#write(base, this.#length);
    this.#segments = 0;
    this.#length = 0;
  }
}
