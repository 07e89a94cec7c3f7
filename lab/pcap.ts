/**
 * Reads a pcap file of Ethernet frames and checks the flannel-udp rule on each UDP
 * datagram: its payload is exactly one IPv4 packet (the inner total length equals the
 * payload length) no larger than the overlay MTU.
 *
 * Between namespaces the kernel keeps UDP GSO batches whole (veth passes them on, and
 * the receiver's GRO joins datagrams again), so a capture there shows one "datagram" per
 * batch. The wire splits a batch at its segment size, which is the first segment's
 * length: the check walks the batch in steps of that size and requires every step to be
 * exactly one inner packet, as each will be one datagram on a real link.
 */

export interface DatagramCheck {
  datagrams: number;
  /** Datagrams whose payload is not exactly one inner packet. */
  notOnePacket: number;
  /** Inner packets larger than the MTU. */
  overMtu: number;
  largestInner: number;
}

export function checkCapture(bytes: Uint8Array, port: number, mtu: number): DatagramCheck {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = view.getUint32(0, true) === 0xa1b2c3d4;
  const result: DatagramCheck = { datagrams: 0, notOnePacket: 0, overMtu: 0, largestInner: 0 };
  let offset = 24;
  while (offset + 16 <= bytes.length) {
    const captured = view.getUint32(offset + 8, little);
    const frame = offset + 16;
    offset = frame + captured;
    if (offset > bytes.length || captured < 14 + 20 + 8) continue;
    if (view.getUint16(frame + 12) !== 0x0800) continue; // IPv4 only
    const ip = frame + 14;
    if (bytes[ip + 9] !== 17) continue;
    const fragment = view.getUint16(ip + 6) & 0x3fff;
    if (fragment !== 0) continue;
    const udp = ip + (bytes[ip] & 15) * 4;
    if (view.getUint16(udp + 2) !== port && view.getUint16(udp) !== port) continue;
    const ipLength = view.getUint16(ip + 2);
    const payloadEnd = Math.min(ip + ipLength, offset);
    let inner = udp + 8;
    if (inner + 4 > payloadEnd) continue;
    const segment = view.getUint16(inner + 2);
    while (inner + 4 <= payloadEnd) {
      const want = Math.min(segment, ip + ipLength - inner);
      const innerLength = view.getUint16(inner + 2);
      result.datagrams++;
      if (bytes[inner] >>> 4 !== 4 || innerLength !== want) result.notOnePacket++;
      if (innerLength > mtu) result.overMtu++;
      result.largestInner = Math.max(result.largestInner, innerLength);
      inner += want;
    }
  }
  return result;
}

export interface WireguardCapture {
  /** UDP datagrams to or from `port`. */
  datagrams: number;
  /** Of those, how many by WireGuard message type (1 initiation … 4 data). */
  byType: Record<number, number>;
  /** UDP payloads that are not a WireGuard message (type 1–4, then three zero bytes). */
  notWireguard: number;
  /** Frames of any kind that hold `needle` anywhere (an inner packet in clear text). */
  withNeedle: number;
  /** IPv4 frames whose addresses are both inside `overlay` (an inner packet on the wire). */
  innerOnWire: number;
}

/**
 * Reads a pcap file of Ethernet frames and checks the WireGuard rule: every UDP datagram
 * to or from `port` is a WireGuard message (first byte 1–4, three reserved zero bytes), and
 * no frame carries `needle` (a pattern the test put in its inner packets) or an IPv4 packet
 * between two overlay addresses (`overlay`: base and prefix length).
 */
export function checkWireguardCapture(
  bytes: Uint8Array,
  port: number,
  needle: Uint8Array,
  overlay: { ip: number; prefixLen: number },
): WireguardCapture {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = view.getUint32(0, true) === 0xa1b2c3d4;
  const result: WireguardCapture = {
    datagrams: 0,
    byType: {},
    notWireguard: 0,
    withNeedle: 0,
    innerOnWire: 0,
  };
  const mask = overlay.prefixLen === 0 ? 0 : (0xffffffff << (32 - overlay.prefixLen)) >>> 0;
  const inOverlay = (ip: number) => ((ip & mask) >>> 0) === overlay.ip;
  let offset = 24;
  while (offset + 16 <= bytes.length) {
    const captured = view.getUint32(offset + 8, little);
    const frame = offset + 16;
    offset = frame + captured;
    if (offset > bytes.length) break;
    if (contains(bytes.subarray(frame, offset), needle)) result.withNeedle++;
    if (captured < 14 + 20 || view.getUint16(frame + 12) !== 0x0800) continue;
    const ip = frame + 14;
    if (inOverlay(view.getUint32(ip + 12)) && inOverlay(view.getUint32(ip + 16))) {
      result.innerOnWire++;
    }
    if (bytes[ip + 9] !== 17 || (view.getUint16(ip + 6) & 0x1fff) !== 0) continue;
    const udp = ip + (bytes[ip] & 15) * 4;
    if (udp + 8 > offset) continue;
    if (view.getUint16(udp + 2) !== port && view.getUint16(udp) !== port) continue;
    result.datagrams++;
    const payload = udp + 8;
    const type = bytes[payload];
    const wireguard = payload + 4 <= offset && type >= 1 && type <= 4 &&
      bytes[payload + 1] === 0 && bytes[payload + 2] === 0 && bytes[payload + 3] === 0;
    if (!wireguard) result.notWireguard++;
    else result.byType[type] = (result.byType[type] ?? 0) + 1;
  }
  return result;
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return false;
  const first = needle[0];
  for (
    let i = haystack.indexOf(first);
    i >= 0 && i + needle.length <= haystack.length;
    i = haystack.indexOf(first, i + 1)
  ) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return true;
  }
  return false;
}
