/**
 * TCP segmentation and coalescing for the udp data path with TUN offloads, keeping
 * flannel's wire format: every UDP datagram carries exactly one ordinary IP packet
 * (IPv4, or IPv6 in a dual-stack network).
 *
 * With IFF_VNET_HDR the TUN prefixes each packet with a virtio_net_hdr (10 bytes, little
 * endian): u8 flags (1 = NEEDS_CSUM), u8 gso_type (0 none, 1 TCPv4, 4 TCPv6), u16 hdr_len,
 * u16 gso_size, u16 csum_start, u16 csum_offset. With TUNSETOFFLOAD(CSUM|TSO4|TSO6) the
 * kernel hands us TCP "super-packets" of up to 64 KB and leaves checksums to us:
 * - transmit: segmentTcp() cuts a super-packet into gso_size segments with correct
 *   lengths, TCP sequence numbers, flags and checksums (IPv4: IP ids and header checksums
 *   too; IPv6 has neither, and its TCP checksum covers the IPv6 pseudo-header), laid end
 *   to end so that one UDP_SEGMENT send turns them into one datagram each;
 * - receive: TcpCoalescer joins consecutive segments of one flow back into a super-packet
 *   that one TUN write delivers (vnet header gso TCPv4 or TCPv6, checksum left to the
 *   kernel), and consecutive same-size UDP datagrams of one flow into a GSO_UDP_L4 one
 *   (segmentUdp is the transmit side: the TUN's USO super-packets). Each segment's checksum is verified before it joins, as the kernel's GRO and
 *   wireguard-go's do: a damaged segment is written alone, unchanged, for the receiver to
 *   drop.
 * Everything works in place on caller-owned buffers; nothing is allocated per packet.
 * IPv6 packets with extension headers are not segmented (the kernel does not build TSO
 * super-packets with them for a TUN) and pass the coalescer one by one.
 */
import { IPV6_HEADER, onesComplementSum, readU32, writeU16, writeU16Le } from "./packet.ts";

export const VNET_HDR_SIZE = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_TCPV6 = 4;
/** UDP segmentation (TUN_F_USO4|USO6): gso_size is the UDP payload of each segment. */
export const VNET_GSO_UDP_L4 = 5;

const PROTOCOL_TCP = 6;
const PROTOCOL_UDP = 17;
const UDP_HEADER = 8;
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

/**
 * The ones'-complement sum (not inverted) of the pseudo header of the IPv4 or IPv6 packet
 * at `ip`: addresses, protocol and upper-layer length (RFC 793; RFC 8200 §8.1).
 */
function pseudoHeaderSum(bytes: Uint8Array, ip: number, protocol: number, length: number): number {
  if (bytes[ip] >>> 4 === 6) return onesComplementSum(bytes, ip + 8, 32, protocol + length);
  let sum = ((bytes[ip + 12] << 8) | bytes[ip + 13]) + ((bytes[ip + 14] << 8) | bytes[ip + 15]) +
    ((bytes[ip + 16] << 8) | bytes[ip + 17]) + ((bytes[ip + 18] << 8) | bytes[ip + 19]) + protocol +
    length;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * The IP header length of the packet at `ip` when it carries TCP right behind the IP
 * header (IPv4: IHL × 4; IPv6: 40, next header TCP), else 0.
 */
function tcpIpHeaderLength(bytes: Uint8Array, ip: number): number {
  const version = bytes[ip] >>> 4;
  if (version === 4) return bytes[ip + 9] === PROTOCOL_TCP ? (bytes[ip] & 15) * 4 : 0;
  if (version === 6) return bytes[ip + 6] === PROTOCOL_TCP ? IPV6_HEADER : 0;
  return 0;
}

/**
 * The IP header length of the packet at `ip` when it carries UDP right behind the IP
 * header and is not an IPv4 fragment (IPv4: IHL × 4; IPv6: 40, next header UDP), else 0.
 */
function udpIpHeaderLength(bytes: Uint8Array, ip: number): number {
  const version = bytes[ip] >>> 4;
  if (version === 4) {
    if (bytes[ip + 9] !== PROTOCOL_UDP) return 0;
    if ((((bytes[ip + 6] & 0x3f) << 8) | bytes[ip + 7]) !== 0) return 0;
    return (bytes[ip] & 15) * 4;
  }
  if (version === 6) return bytes[ip + 6] === PROTOCOL_UDP ? IPV6_HEADER : 0;
  return 0;
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
 * Cuts the TCP super-packet at `packet` (`length` bytes, without vnet header; IPv4, or
 * IPv6 without extension headers) into segments of `gsoSize` payload bytes, written end to
 * end at `outOffset` of the same buffer (after the super-packet, so copies are native
 * copyWithin calls). Each segment is a complete IP packet: IPv4 total length, IP id + i
 * and header checksum, or IPv6 payload length; TCP sequence number + i × gsoSize, FIN and
 * PSH only on the last segment, CWR only on the first, and a full TCP checksum over the
 * family's pseudo-header. Returns undefined when the packet is not TCP or does not fit.
 */
export function segmentTcp(
  bytes: Uint8Array,
  packet: number,
  length: number,
  gsoSize: number,
  outOffset: number,
  result: Segmented,
): Segmented | undefined {
  const out = bytes;
  if (length < 40 || gsoSize <= 0) return undefined;
  const ipLength = tcpIpHeaderLength(bytes, packet);
  if (ipLength < 20 || ipLength + 20 > length) return undefined;
  const v6 = ipLength === IPV6_HEADER && bytes[packet] >>> 4 === 6;
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
    if (v6) {
      writeU16(out, o + 4, segmentLength - IPV6_HEADER);
    } else {
      writeU16(out, o + 2, segmentLength);
      writeU16(out, o + 4, (id + i) & 0xffff);
      ipHeaderChecksum(out, o, ipLength);
    }
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
 * Cuts the UDP super-packet at `packet` (`length` bytes, without vnet header; IPv4, or IPv6
 * without extension headers; vnet gso_type GSO_UDP_L4) into datagrams of `gsoSize` UDP
 * payload bytes, the last one shorter when the payload does not divide, written end to end
 * at `outOffset` of the same buffer as segmentTcp does. Each segment is a complete IP
 * packet: IPv4 total length, IP id + i and header checksum, or IPv6 payload length; UDP
 * length; and the UDP checksum over the family's pseudo-header (0 computed is sent as
 * 0xffff, RFC 768). An IPv4 super-packet whose checksum field is 0 carries no checksum and
 * its segments neither: with NEEDS_CSUM the kernel leaves the pseudo-header sum there,
 * which is never 0 (the protocol, 17, is part of it). Returns undefined when the packet is
 * not UDP, its UDP length disagrees with its IP length, or its segments do not fit.
 */
export function segmentUdp(
  bytes: Uint8Array,
  packet: number,
  length: number,
  gsoSize: number,
  outOffset: number,
  result: Segmented,
): Segmented | undefined {
  if (length < 28 || gsoSize <= 0) return undefined;
  const version = bytes[packet] >>> 4;
  let ipLength = 0;
  if (version === 4 && bytes[packet + 9] === PROTOCOL_UDP) ipLength = (bytes[packet] & 15) * 4;
  if (version === 6 && bytes[packet + 6] === PROTOCOL_UDP) ipLength = IPV6_HEADER;
  if (ipLength < 20 || ipLength + UDP_HEADER > length) return undefined;
  const v6 = version === 6;
  const udp = packet + ipLength;
  const headers = ipLength + UDP_HEADER;
  const payload = length - headers;
  if (((bytes[udp + 4] << 8) | bytes[udp + 5]) !== length - ipLength) return undefined;
  const count = Math.max(1, Math.ceil(payload / gsoSize));
  if (outOffset + payload + count * headers > bytes.length) return undefined;
  const checksum = v6 || bytes[udp + 6] !== 0 || bytes[udp + 7] !== 0;
  const id = (bytes[packet + 4] << 8) | bytes[packet + 5];
  let o = outOffset;
  for (let i = 0; i < count; i++) {
    const chunk = Math.min(gsoSize, payload - i * gsoSize);
    const segmentLength = headers + chunk;
    const from = packet + headers + i * gsoSize;
    bytes.copyWithin(o, packet, packet + headers);
    bytes.copyWithin(o + headers, from, from + chunk);
    if (v6) {
      writeU16(bytes, o + 4, segmentLength - IPV6_HEADER);
    } else {
      writeU16(bytes, o + 2, segmentLength);
      writeU16(bytes, o + 4, (id + i) & 0xffff);
      ipHeaderChecksum(bytes, o, ipLength);
    }
    const u = o + ipLength;
    writeU16(bytes, u + 4, UDP_HEADER + chunk);
    bytes[u + 6] = 0;
    bytes[u + 7] = 0;
    if (checksum) {
      const sum = onesComplementSum(
        bytes,
        u,
        UDP_HEADER + chunk,
        pseudoHeaderSum(bytes, o, PROTOCOL_UDP, UDP_HEADER + chunk),
      );
      writeU16(bytes, u + 6, ~sum & 0xffff || 0xffff);
    }
    o += segmentLength;
  }
  result.count = count;
  result.segmentSize = headers + Math.min(gsoSize, payload);
  result.total = o - outOffset;
  return result;
}

/**
 * Joins consecutive TCP segments of one flow into a super-packet behind a vnet header, and
 * consecutive UDP datagrams of one flow and one size (the last may be shorter) into a
 * GSO_UDP_L4 one, which the kernel cuts back into the same datagrams where it must (at the
 * receiving socket, at the latest). add() takes a validated IPv4 or IPv6 packet; when it cannot extend the current run it first
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
  /** The run's IP header length: IPv4 IHL × 4, or 40 for IPv6 (0 when not TCP). */
  #ipLength = 0;
  /** The run's transport: TCP (or a plain packet), or UDP. */
  #protocol = PROTOCOL_TCP;
  #mss = 0;
  #nextSeq = 0;
  #ended = false;

  readonly #udp: boolean;

  /**
   * `write(start, length)` hands the bytes at [start, start + length) of the buffer to the
   * TUN; `udp: false` passes UDP datagrams one by one.
   */
  constructor(
    buffer: Uint8Array,
    start: number,
    write: (start: number, length: number) => void,
    options: { udp?: boolean } = {},
  ) {
    this.#udp = options.udp ?? true;
    this.#buffer = buffer;
    this.#start = start;
    this.#capacity = Math.min(buffer.length - start, VNET_HDR_SIZE + 65535);
    this.#write = write;
  }

  add(packet: number, length: number): void {
    const udpIpLength = this.#udp ? udpIpHeaderLength(this.#buffer, packet) : 0;
    if (udpIpLength >= 20) {
      this.#addUdp(packet, length, udpIpLength);
      return;
    }
    const bytes = this.#buffer;
    const base = this.#start;
    // TCP right behind the IP header; for IPv4 not a fragment (IPv6 fragments carry a
    // fragment header, so their next header is not TCP).
    const v6 = bytes[packet] >>> 4 === 6;
    let ipLength = tcpIpHeaderLength(bytes, packet);
    if (!v6 && (((bytes[packet + 6] & 0x3f) << 8) | bytes[packet + 7]) !== 0) ipLength = 0;
    const tcpOk = ipLength >= 20 && length >= ipLength + 20;
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
    if (this.#segments > 0 && !plain && this.#extends(packet, ipLength, headers, payload)) {
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
    this.#protocol = PROTOCOL_TCP;
    this.#headers = headers;
    this.#ipLength = ipLength;
    this.#mss = payload;
    this.#nextSeq = tcpOk ? (readU32(bytes, tcp + 4) + payload) >>> 0 : 0;
    this.#ended = plain || (flags & TCP_PSH) !== 0;
    if (plain) this.flush();
  }

  /**
   * add() for a UDP datagram (`ipLength` of IP header in front): datagrams of one flow, of
   * one payload size but for a shorter last one, join into a GSO_UDP_L4 run. A datagram
   * without a checksum (IPv4, 0), with a wrong one, or whose UDP length disagrees passes
   * alone, unchanged.
   */
  #addUdp(packet: number, length: number, ipLength: number): void {
    const bytes = this.#buffer;
    const base = this.#start;
    const udp = packet + ipLength;
    const headers = ipLength + UDP_HEADER;
    const payload = length - headers;
    const plain = payload <= 0 ||
      ((bytes[udp + 4] << 8) | bytes[udp + 5]) !== length - ipLength ||
      (bytes[udp + 6] === 0 && bytes[udp + 7] === 0) ||
      onesComplementSum(
          bytes,
          udp,
          length - ipLength,
          pseudoHeaderSum(bytes, packet, PROTOCOL_UDP, length - ipLength),
        ) !== 0xffff;
    if (
      this.#segments > 0 && !plain && this.#protocol === PROTOCOL_UDP &&
      this.#extendsUdp(packet, ipLength, headers, payload) &&
      this.#length + payload <= this.#capacity
    ) {
      bytes.copyWithin(base + this.#length, packet + headers, packet + length);
      this.#length += payload;
      this.#segments++;
      if (payload < this.#mss) this.#ended = true;
      return;
    }
    this.flush();
    bytes.copyWithin(base + VNET_HDR_SIZE, packet, packet + length);
    this.#length = VNET_HDR_SIZE + length;
    this.#segments = 1;
    this.#protocol = PROTOCOL_UDP;
    this.#headers = headers;
    this.#ipLength = ipLength;
    this.#mss = payload;
    this.#ended = plain;
    if (plain) this.flush();
  }

  /** Same flow and IP header fields as the UDP run (see #ipFieldsMatch), no longer payload. */
  #extendsUdp(packet: number, ipLength: number, headers: number, payload: number): boolean {
    if (this.#ended || headers !== this.#headers || payload > this.#mss) return false;
    if (ipLength !== this.#ipLength || !this.#ipFieldsMatch(packet, ipLength)) return false;
    const bytes = this.#buffer;
    const udp = packet + ipLength;
    const runUdp = this.#start + VNET_HDR_SIZE + ipLength;
    for (let i = 0; i < 4; i++) if (bytes[udp + i] !== bytes[runUdp + i]) return false;
    return true;
  }

  /**
   * Same flow, next sequence number, same headers but for the lengths, checksums, IPv4 id
   * and PSH. IPv4: version/IHL, TOS, flags/fragment, TTL, protocol, addresses, options.
   * IPv6: version, traffic class, flow label, next header, hop limit, addresses.
   */
  #extends(packet: number, ipLength: number, headers: number, payload: number): boolean {
    if (this.#ended || headers !== this.#headers || payload > this.#mss) return false;
    if (this.#protocol !== PROTOCOL_TCP || ipLength !== this.#ipLength) return false;
    if (!this.#ipFieldsMatch(packet, ipLength)) return false;
    const bytes = this.#buffer;
    const first = this.#start + VNET_HDR_SIZE;
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

  /**
   * The IP header of the packet at `packet` matches the run's but for lengths, checksum
   * and IPv4 id. IPv4: version/IHL, TOS, flags/fragment, TTL, protocol, addresses, options.
   * IPv6: version, traffic class, flow label, next header, hop limit, addresses.
   */
  #ipFieldsMatch(packet: number, ipLength: number): boolean {
    const bytes = this.#buffer;
    const first = this.#start + VNET_HDR_SIZE;
    if (bytes[packet] !== bytes[first] || bytes[packet + 1] !== bytes[first + 1]) return false;
    if (bytes[first] >>> 4 === 6) {
      if (bytes[packet + 2] !== bytes[first + 2] || bytes[packet + 3] !== bytes[first + 3]) {
        return false;
      }
      if (bytes[packet + 6] !== bytes[first + 6] || bytes[packet + 7] !== bytes[first + 7]) {
        return false;
      }
      for (let i = 8; i < IPV6_HEADER; i++) {
        if (bytes[packet + i] !== bytes[first + i]) return false;
      }
    } else {
      if (bytes[packet + 6] !== bytes[first + 6] || bytes[packet + 8] !== bytes[first + 8]) {
        return false;
      }
      for (let i = 12; i < ipLength; i++) if (bytes[packet + i] !== bytes[first + i]) return false;
    }
    return true;
  }

  /** Writes the current run, if any. */
  flush(): void {
    if (this.#segments === 0) return;
    const out = this.#buffer;
    const base = this.#start;
    const ip = base + VNET_HDR_SIZE;
    const ipLength = this.#ipLength;
    out.fill(0, base, base + VNET_HDR_SIZE);
    if (this.#segments > 1) {
      const total = this.#length - VNET_HDR_SIZE;
      const v6 = out[ip] >>> 4 === 6;
      if (v6) {
        writeU16(out, ip + 4, total - IPV6_HEADER);
      } else {
        writeU16(out, ip + 2, total);
        ipHeaderChecksum(out, ip, ipLength);
      }
      // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the kernel adds the rest.
      const udp = this.#protocol === PROTOCOL_UDP;
      if (udp) writeU16(out, ip + ipLength + 4, total - ipLength);
      const field = ip + ipLength + (udp ? 6 : 16);
      writeU16(out, field, pseudoHeaderSum(out, ip, this.#protocol, total - ipLength));
      out[base] = VNET_F_NEEDS_CSUM;
      out[base + 1] = udp ? VNET_GSO_UDP_L4 : v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4;
      writeU16Le(out, base + 2, this.#headers);
      writeU16Le(out, base + 4, this.#mss);
      writeU16Le(out, base + 6, ipLength);
      writeU16Le(out, base + 8, udp ? 6 : 16);
    }
    this.#write(base, this.#length);
    this.#segments = 0;
    this.#length = 0;
  }
}
