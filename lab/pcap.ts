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
