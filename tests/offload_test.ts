/**
 * TCP segmentation and coalescing for TUN offloads, checked against an independent
 * checksum computation: odd sizes, options, flags, non-TCP and fragments, and a fuzz run.
 */
import assert from "node:assert/strict";
import {
  type Segmented,
  segmentTcp,
  segmentUdp,
  TcpCoalescer,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP_L4,
  VNET_HDR_SIZE,
} from "../lib/udp/offload.ts";
import { PACKET_OK, validateIpv4, validateIpv6 } from "../lib/udp/packet.ts";
import { ip6Bytes, parseIp6 } from "../lib/ip6.ts";
import { packetMemory } from "../lib/udp/checksum.ts";

/** RFC 1071 over a list of byte arrays, written plainly. */
function reference(...parts: Uint8Array[]): number {
  const all = parts.flatMap((p) => [...p]);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += (all[i] << 8) + (all[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

function tcpChecksumOk(packet: Uint8Array): boolean {
  if (packet[0] >> 4 === 6) {
    const pseudo6 = new Uint8Array(40);
    pseudo6.set(packet.subarray(8, 40));
    new DataView(pseudo6.buffer).setUint32(32, packet.length - 40);
    pseudo6[39] = 6;
    return reference(pseudo6, packet.subarray(40)) === 0;
  }
  const ipLength = (packet[0] & 15) * 4;
  const tcpLength = packet.length - ipLength;
  const pseudo = new Uint8Array(12);
  pseudo.set(packet.subarray(12, 20));
  pseudo[9] = 6;
  pseudo[10] = tcpLength >> 8;
  pseudo[11] = tcpLength & 255;
  return reference(pseudo, packet.subarray(ipLength)) === 0;
}

function tcpPayload(packet: Uint8Array): Uint8Array {
  const ipLength = packet[0] >> 4 === 6 ? 40 : (packet[0] & 15) * 4;
  return packet.subarray(ipLength + (packet[ipLength + 12] >> 4) * 4);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

/** An IPv4/TCP packet with `payload` bytes, optional TCP options, given flags. */
function tcpPacket(
  payload: number,
  options: { flags?: number; tcpOptions?: number; seq?: number } = {},
): Uint8Array {
  const tcpLength = 20 + (options.tcpOptions ?? 0);
  const bytes = new Uint8Array(20 + tcpLength + payload);
  const view = new DataView(bytes.buffer);
  bytes[0] = 0x45;
  view.setUint16(2, bytes.length);
  view.setUint16(4, 0xfff0); // id near the wrap
  bytes[6] = 0x40; // DF
  bytes[8] = 63;
  bytes[9] = 6;
  view.setUint32(12, 0x0a0a0102);
  view.setUint32(16, 0x0a0a0203);
  view.setUint16(10, reference(bytes.subarray(0, 20)));
  view.setUint16(20, 40000);
  view.setUint16(22, 5201);
  view.setUint32(24, options.seq ?? 0xfffff000); // sequence near the wrap
  view.setUint32(28, 12345);
  bytes[32] = (tcpLength / 4) << 4;
  bytes[33] = options.flags ?? 0x18; // ACK|PSH
  view.setUint16(34, 502);
  for (let i = 0; i < (options.tcpOptions ?? 0); i++) bytes[40 + i] = i === 0 ? 1 : 1; // NOPs
  for (let i = 0; i < payload; i++) bytes[20 + tcpLength + i] = (i * 7 + 3) & 255;
  return bytes;
}

function segment(packet: Uint8Array, gsoSize: number): Uint8Array[] {
  const buffer = new Uint8Array(packet.length * 3 + 4096);
  buffer.set(packet);
  const result: Segmented = { count: 0, segmentSize: 0, total: 0 };
  assert.ok(segmentTcp(buffer, 0, packet.length, gsoSize, packet.length, result));
  const segments: Uint8Array[] = [];
  let offset = packet.length;
  for (let i = 0; i < result.count; i++) {
    const length = buffer[offset] >> 4 === 6
      ? 40 + ((buffer[offset + 4] << 8) | buffer[offset + 5])
      : (buffer[offset + 2] << 8) | buffer[offset + 3];
    assert.ok(i === result.count - 1 || length === result.segmentSize, "equal sizes but the last");
    segments.push(buffer.slice(offset, offset + length));
    offset += length;
  }
  assert.equal(offset - packet.length, result.total);
  return segments;
}

/** Coalesces packets; returns what was written to the "TUN" (vnet header + packet). */
function coalesce(packets: Uint8Array[]): Uint8Array[] {
  const region = 70_000;
  const buffer = new Uint8Array(region + VNET_HDR_SIZE + 65_535);
  const written: Uint8Array[] = [];
  const coalescer = new TcpCoalescer(
    buffer,
    region,
    (start, length) => written.push(buffer.slice(start, start + length)),
  );
  for (const packet of packets) {
    buffer.set(packet, 0);
    coalescer.add(0, packet.length);
  }
  coalescer.flush();
  return written;
}

/** What the kernel does with a NEEDS_CSUM packet: finish the checksum. */
function finish(frame: Uint8Array): Uint8Array {
  const packet = frame.slice(VNET_HDR_SIZE);
  if (frame[0] & 1) {
    const start = frame[6] | (frame[7] << 8);
    const offset = frame[8] | (frame[9] << 8);
    const sum = ~reference(packet.subarray(start)) & 0xffff;
    const value = ~sum & 0xffff;
    packet[start + offset] = value >> 8;
    packet[start + offset + 1] = value & 255;
  }
  return packet;
}

Deno.test("a TSO super-packet is cut into valid segments with ids, sequence numbers and flags", () => {
  const packet = tcpPacket(5000, { flags: 0x80 | 0x18 | 0x01, tcpOptions: 12 }); // CWR|ACK|PSH|FIN
  const segments = segment(packet, 1400);
  assert.deepEqual(segments.map((s) => s.length), [1452, 1452, 1452, 852]);
  segments.forEach((s, i) => {
    assert.equal(validateIpv4(s, 0, s.length), PACKET_OK, `segment ${i} IP`);
    assert.ok(tcpChecksumOk(s), `segment ${i} TCP checksum`);
    assert.equal((s[4] << 8) | s[5], (0xfff0 + i) & 0xffff, "IP id");
    const seq = new DataView(s.buffer).getUint32(24);
    assert.equal(seq, (0xfffff000 + i * 1400) >>> 0, "sequence number");
    const last = i === segments.length - 1;
    assert.equal(s[33] & 0x01, last ? 0x01 : 0, "FIN only on the last");
    assert.equal(s[33] & 0x08, last ? 0x08 : 0, "PSH only on the last");
    assert.equal(s[33] & 0x80, i === 0 ? 0x80 : 0, "CWR only on the first");
  });
  const payload = segments.flatMap((s) => [...s.subarray(52)]);
  assert.deepEqual(payload, [...packet.subarray(52)]);
});

Deno.test("consecutive segments of one flow coalesce into one super-packet the kernel accepts", () => {
  const original = tcpPacket(6000, { flags: 0x18 });
  const segments = segment(original, 1448);
  const written = coalesce(segments);
  assert.equal(written.length, 1);
  const frame = written[0];
  assert.equal(frame[1], VNET_GSO_TCPV4);
  assert.equal(frame[4] | (frame[5] << 8), 1448, "gso_size");
  assert.equal(frame[2] | (frame[3] << 8), 40, "hdr_len");
  const packet = finish(frame);
  assert.equal(validateIpv4(packet, 0, packet.length), PACKET_OK);
  assert.ok(tcpChecksumOk(packet));
  assert.deepEqual([...packet.subarray(40)], [...original.subarray(40)]);
  assert.equal(packet[33] & 0x08, 0x08, "PSH kept from the last segment");
});

Deno.test("non-TCP packets, fragments, SYNs and gaps pass one by one, unchanged", () => {
  const icmp = tcpPacket(100);
  icmp[9] = 1;
  const fragment = tcpPacket(100);
  fragment[6] = 0x20; // more fragments
  const syn = tcpPacket(0, { flags: 0x02 });
  const a = tcpPacket(1000, { seq: 1, flags: 0x10 });
  const gap = tcpPacket(1000, { seq: 5000, flags: 0x10 });
  const written = coalesce([icmp, fragment, syn, a, gap]);
  assert.equal(written.length, 5);
  for (const [i, frame] of written.entries()) {
    assert.deepEqual(
      [...frame.subarray(0, VNET_HDR_SIZE)],
      new Array(10).fill(0),
      `frame ${i} has an empty vnet header`,
    );
  }
  assert.deepEqual(written[0].subarray(VNET_HDR_SIZE), icmp);
  assert.deepEqual(written[4].subarray(VNET_HDR_SIZE), gap);
});

Deno.test("fuzz: segmenting and coalescing never throw and never emit a wrong checksum", () => {
  let seed = 42;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const payload = 1 + random(60_000);
    const gso = 500 + random(1000);
    const packet = tcpPacket(payload, {
      flags: 0x10 | (random(2) ? 0x08 : 0),
      tcpOptions: 4 * random(3),
      seq: random(0x7fffffff) * 2,
    });
    const segments = segment(packet, gso);
    for (const s of segments) {
      assert.equal(validateIpv4(s, 0, s.length), PACKET_OK);
      assert.ok(tcpChecksumOk(s));
    }
    // Drop or corrupt some in transit; what comes out must still be correct.
    const mangled = segments.filter(() => random(10) !== 0).map((s) => {
      if (random(20) === 0) {
        const copy = s.slice();
        copy[random(copy.length)] ^= 0xff;
        return copy;
      }
      return s;
    }).filter((s) => validateIpv4(s, 0, s.length) === PACKET_OK);
    // Each frame written is a run of consecutive inputs: it carries exactly their payload,
    // and its checksum is right exactly when every one of them was right (a corrupted byte
    // must stay visible to the receiver, and a sound run must not be made to look corrupt).
    let next = 0;
    for (const [i, frame] of coalesce(mangled).entries()) {
      const out = finish(frame);
      assert.equal(validateIpv4(out, 0, out.length), PACKET_OK, `frame ${i} IP`);
      const payload = tcpPayload(out);
      const run: Uint8Array[] = [];
      for (let covered = -1; covered < payload.length && next < mangled.length;) {
        run.push(mangled[next++]);
        covered = run.reduce((sum, s) => sum + tcpPayload(s).length, 0);
      }
      assert.deepEqual(payload, concat(run.map(tcpPayload)), `frame ${i} payload`);
      assert.equal(tcpChecksumOk(out), run.every(tcpChecksumOk), `frame ${i} checksum`);
    }
    assert.equal(next, mangled.length, "every input is written once");
  }
});

// ---- TCP over IPv6 (TSO6) ----------------------------------------------------------------

/** An IPv6/TCP packet with `payload` bytes, as tcpPacket builds IPv4 ones. */
function tcp6Packet(
  payload: number,
  options: { flags?: number; tcpOptions?: number; seq?: number; next?: number } = {},
): Uint8Array {
  const tcpLength = 20 + (options.tcpOptions ?? 0);
  const bytes = new Uint8Array(40 + tcpLength + payload);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x6012_3456); // version 6, traffic class 1, flow label 0x23456
  view.setUint16(4, tcpLength + payload);
  bytes[6] = options.next ?? 6;
  bytes[7] = 63;
  bytes.set(ip6Bytes(parseIp6("fd10:0:0:1::2")!), 8);
  bytes.set(ip6Bytes(parseIp6("fd10:0:0:2::3")!), 24);
  view.setUint16(40, 40000);
  view.setUint16(42, 5201);
  view.setUint32(44, options.seq ?? 0xfffff000);
  view.setUint32(48, 12345);
  bytes[52] = (tcpLength / 4) << 4;
  bytes[53] = options.flags ?? 0x18;
  view.setUint16(54, 502);
  for (let i = 0; i < (options.tcpOptions ?? 0); i++) bytes[60 + i] = 1;
  for (let i = 0; i < payload; i++) bytes[40 + tcpLength + i] = (i * 7 + 3) & 255;
  // A correct checksum, as the sender's kernel would have made it.
  const pseudo = new Uint8Array(40);
  pseudo.set(bytes.subarray(8, 40));
  new DataView(pseudo.buffer).setUint32(32, tcpLength + payload);
  pseudo[39] = 6;
  view.setUint16(56, reference(pseudo, bytes.subarray(40)));
  return bytes;
}

Deno.test("a TSO6 super-packet is cut into valid IPv6 segments: payload lengths, sequence numbers, flags, checksums", () => {
  const packet = tcp6Packet(5000, { flags: 0x80 | 0x18 | 0x01, tcpOptions: 12 });
  packet[56] = packet[57] = 0; // the kernel leaves the checksum to us (NEEDS_CSUM)
  const segments = segment(packet, 1400);
  assert.deepEqual(segments.map((s) => s.length), [1472, 1472, 1472, 872]);
  segments.forEach((s, i) => {
    assert.equal(validateIpv6(s, 0, s.length), PACKET_OK, `segment ${i} IPv6`);
    assert.deepEqual(s.subarray(0, 4), packet.subarray(0, 4), "traffic class and flow label");
    assert.deepEqual(s.subarray(6, 40), packet.subarray(6, 40), "hop limit and addresses");
    assert.ok(tcpChecksumOk(s), `segment ${i} TCP checksum over the IPv6 pseudo-header`);
    const seq = new DataView(s.buffer).getUint32(44);
    assert.equal(seq, (0xfffff000 + i * 1400) >>> 0, "sequence number");
    const last = i === segments.length - 1;
    assert.equal(s[53] & 0x01, last ? 0x01 : 0, "FIN only on the last");
    assert.equal(s[53] & 0x08, last ? 0x08 : 0, "PSH only on the last");
    assert.equal(s[53] & 0x80, i === 0 ? 0x80 : 0, "CWR only on the first");
  });
  assert.deepEqual(segments.flatMap((s) => [...s.subarray(72)]), [...packet.subarray(72)]);
});

Deno.test("IPv6 with an extension header before TCP is not segmented", () => {
  const packet = tcp6Packet(3000, { next: 0 }); // hop-by-hop: not TCP right behind the header
  const buffer = new Uint8Array(packet.length * 3 + 4096);
  buffer.set(packet);
  const result: Segmented = { count: 0, segmentSize: 0, total: 0 };
  assert.equal(segmentTcp(buffer, 0, packet.length, 1400, packet.length, result), undefined);
});

Deno.test("consecutive TCPv6 segments coalesce into one TSO6 super-packet the kernel accepts", () => {
  const original = tcp6Packet(6000, { flags: 0x18 });
  const segments = segment(original, 1428);
  const written = coalesce(segments);
  assert.equal(written.length, 1);
  const frame = written[0];
  assert.equal(frame[0], 1, "NEEDS_CSUM");
  assert.equal(frame[1], VNET_GSO_TCPV6);
  assert.equal(frame[2] | (frame[3] << 8), 60, "hdr_len");
  assert.equal(frame[4] | (frame[5] << 8), 1428, "gso_size");
  assert.equal(frame[6] | (frame[7] << 8), 40, "csum_start");
  assert.equal(frame[8] | (frame[9] << 8), 16, "csum_offset");
  const packet = finish(frame);
  assert.equal(validateIpv6(packet, 0, packet.length), PACKET_OK);
  assert.ok(tcpChecksumOk(packet));
  assert.deepEqual([...packet.subarray(60)], [...original.subarray(60)]);
  assert.equal(packet[53] & 0x08, 0x08, "PSH kept from the last segment");
});

Deno.test("IPv4 and IPv6 segments never join one run; other flows, non-TCP and extension headers pass alone", () => {
  const a = tcp6Packet(1000, { seq: 1, flags: 0x10 });
  const b = tcp6Packet(1000, { seq: 1001, flags: 0x10 });
  const otherFlow = tcp6Packet(1000, { seq: 2001, flags: 0x10 });
  otherFlow[23] ^= 1; // another source address
  const v4 = tcpPacket(1000, { seq: 2001, flags: 0x10 });
  const udp = tcp6Packet(100);
  udp[6] = 17;
  const hopByHop = tcp6Packet(100, { next: 0 });
  const written = coalesce([a, b, otherFlow, v4, udp, hopByHop]);
  assert.equal(written.length, 5);
  assert.equal(written[0][1], VNET_GSO_TCPV6, "a and b joined");
  const singles = [[1, otherFlow], [2, v4], [3, udp], [4, hopByHop]] as const;
  for (const [i, original] of singles) {
    assert.deepEqual(written[i].subarray(0, VNET_HDR_SIZE), new Uint8Array(10), `frame ${i}`);
    assert.deepEqual(written[i].subarray(VNET_HDR_SIZE), original, `frame ${i} unchanged`);
  }
});

Deno.test("fuzz: TCPv6 segmenting and coalescing never throw and never emit a wrong checksum", () => {
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const packet = tcp6Packet(1 + random(60_000), {
      flags: 0x10 | (random(2) ? 0x08 : 0),
      tcpOptions: 4 * random(3),
      seq: random(0x7fffffff) * 2,
    });
    const segments = segment(packet, 500 + random(1000));
    for (const s of segments) {
      assert.equal(validateIpv6(s, 0, s.length), PACKET_OK);
      assert.ok(tcpChecksumOk(s));
    }
    const mangled = segments.filter(() => random(10) !== 0).map((s) => {
      if (random(20) === 0) {
        const copy = s.slice();
        copy[40 + random(copy.length - 40)] ^= 0xff;
        return copy;
      }
      return s;
    });
    let next = 0;
    for (const [i, frame] of coalesce(mangled).entries()) {
      const out = finish(frame);
      assert.equal(validateIpv6(out, 0, out.length), PACKET_OK, `frame ${i} IPv6`);
      const payload = tcpPayload(out);
      const run: Uint8Array[] = [];
      for (let covered = -1; covered < payload.length && next < mangled.length;) {
        run.push(mangled[next++]);
        covered = run.reduce((sum, s) => sum + tcpPayload(s).length, 0);
      }
      assert.deepEqual(payload, concat(run.map(tcpPayload)), `frame ${i} payload`);
      assert.equal(tcpChecksumOk(out), run.every(tcpChecksumOk), `frame ${i} checksum`);
    }
    assert.equal(next, mangled.length, "every input is written once");
  }
});

/** The UDP checksum over the family's pseudo-header verifies (RFC 768; RFC 8200 §8.1). */
function udpChecksumOk(packet: Uint8Array): boolean {
  const ipLength = packet[0] >> 4 === 6 ? 40 : (packet[0] & 15) * 4;
  const udpLength = packet.length - ipLength;
  const pseudo = packet[0] >> 4 === 6 ? new Uint8Array(40) : new Uint8Array(12);
  if (packet[0] >> 4 === 6) {
    pseudo.set(packet.subarray(8, 40));
    new DataView(pseudo.buffer).setUint32(32, udpLength);
    pseudo[39] = 17;
  } else {
    pseudo.set(packet.subarray(12, 20));
    pseudo[9] = 17;
    pseudo[10] = udpLength >> 8;
    pseudo[11] = udpLength & 255;
  }
  return reference(pseudo, packet.subarray(ipLength)) === 0;
}

/**
 * A UDP super-packet as the TUN hands it over with USO: one IP header and one UDP header
 * for all the payload, the UDP checksum field holding the pseudo-header sum (NEEDS_CSUM),
 * or 0 (IPv4 without checksum).
 */
function udpSuperPacket(payload: number, options: { v6?: boolean; noChecksum?: boolean } = {}) {
  const ipLength = options.v6 ? 40 : 20;
  const bytes = new Uint8Array(ipLength + 8 + payload);
  const view = new DataView(bytes.buffer);
  const udpLength = 8 + payload;
  if (options.v6) {
    bytes[0] = 0x60;
    view.setUint16(4, udpLength);
    bytes[6] = 17;
    bytes[7] = 63;
    bytes.set(ip6Bytes(parseIp6("fd10:0:0:1::5")!), 8);
    bytes.set(ip6Bytes(parseIp6("fd10:0:0:2::7")!), 24);
  } else {
    bytes[0] = 0x45;
    view.setUint16(2, bytes.length);
    view.setUint16(4, 0xfffe); // id near the wrap
    bytes[8] = 63;
    bytes[9] = 17;
    view.setUint32(12, 0x0a0a0102);
    view.setUint32(16, 0x0a0a0203);
    view.setUint16(10, reference(bytes.subarray(0, 20)));
  }
  view.setUint16(ipLength, 40000);
  view.setUint16(ipLength + 2, 5201);
  view.setUint16(ipLength + 4, udpLength);
  for (let i = 0; i < payload; i++) bytes[ipLength + 8 + i] = (i * 13 + 5) & 255;
  if (!options.noChecksum) {
    // The pseudo-header sum, not inverted: what the kernel leaves for CHECKSUM_PARTIAL.
    const pseudo = options.v6 ? new Uint8Array(40) : new Uint8Array(12);
    if (options.v6) {
      pseudo.set(bytes.subarray(8, 40));
      new DataView(pseudo.buffer).setUint32(32, udpLength);
      pseudo[39] = 17;
    } else {
      pseudo.set(bytes.subarray(12, 20));
      pseudo[9] = 17;
      pseudo[10] = udpLength >> 8;
      pseudo[11] = udpLength & 255;
    }
    view.setUint16(ipLength + 6, ~reference(pseudo) & 0xffff);
  }
  return bytes;
}

/** segmentUdp into `buffer` (a plain or a WebAssembly-memory one); the segments, copied. */
function segmentUdpPacket(
  packet: Uint8Array,
  gsoSize: number,
  buffer = new Uint8Array(packet.length * 3 + 4096),
): Uint8Array[] {
  buffer.set(packet);
  const result: Segmented = { count: 0, segmentSize: 0, total: 0 };
  assert.ok(segmentUdp(buffer, 0, packet.length, gsoSize, packet.length, result));
  const segments: Uint8Array[] = [];
  let offset = packet.length;
  for (let i = 0; i < result.count; i++) {
    const length = buffer[offset] >> 4 === 6
      ? 40 + ((buffer[offset + 4] << 8) | buffer[offset + 5])
      : (buffer[offset + 2] << 8) | buffer[offset + 3];
    assert.ok(i === result.count - 1 || length === result.segmentSize, "equal sizes but the last");
    segments.push(buffer.slice(offset, offset + length));
    offset += length;
  }
  assert.equal(offset - packet.length, result.total);
  return segments;
}

for (const memory of ["a plain buffer", "WebAssembly memory"]) {
  Deno.test(`a USO super-packet is cut into IPv4/UDP datagrams with ids, lengths and checksums (${memory})`, () => {
    const packet = udpSuperPacket(5000);
    const buffer = memory === "a plain buffer" ? undefined : packetMemory(packet.length * 3 + 4096);
    const segments = segmentUdpPacket(packet, 1400, buffer);
    assert.deepEqual(segments.map((s) => s.length), [1428, 1428, 1428, 828], "odd last segment");
    segments.forEach((s, i) => {
      assert.equal(validateIpv4(s, 0, s.length), PACKET_OK, `segment ${i} IP`);
      assert.equal((s[4] << 8) | s[5], (0xfffe + i) & 0xffff, "IP id + i, wrapping");
      assert.equal((s[24] << 8) | s[25], s.length - 20, "UDP length");
      assert.deepEqual([...s.subarray(20, 24)], [...packet.subarray(20, 24)], "ports");
      assert.ok(udpChecksumOk(s), `segment ${i} UDP checksum`);
      assert.notEqual((s[26] << 8) | s[27], 0);
    });
    assert.deepEqual(segments.flatMap((s) => [...s.subarray(28)]), [...packet.subarray(28)]);
  });
}

Deno.test("USO: a payload that divides gives equal segments; a short one gives one datagram", () => {
  assert.deepEqual(segmentUdpPacket(udpSuperPacket(2800), 1400).map((s) => s.length), [1428, 1428]);
  const [single] = segmentUdpPacket(udpSuperPacket(37), 1400);
  assert.equal(single.length, 65);
  assert.ok(udpChecksumOk(single));
  const [empty] = segmentUdpPacket(udpSuperPacket(0), 1400);
  assert.equal(empty.length, 28);
  assert.ok(udpChecksumOk(empty));
});

Deno.test("USO: IPv4 UDP without a checksum (0) stays without one in every segment", () => {
  const segments = segmentUdpPacket(udpSuperPacket(3001, { noChecksum: true }), 1000);
  assert.deepEqual(segments.map((s) => s.length), [1028, 1028, 1028, 29]);
  for (const s of segments) {
    assert.equal(validateIpv4(s, 0, s.length), PACKET_OK);
    assert.equal((s[26] << 8) | s[27], 0, "no checksum");
  }
});

Deno.test("USO: a UDP checksum that computes to 0 is sent as 0xffff", () => {
  // Make the last two payload bytes cancel everything else: the sum folds to 0xffff.
  const packet = udpSuperPacket(100);
  packet[126] = 0;
  packet[127] = 0;
  const [probe] = segmentUdpPacket(packet, 1400);
  const sum = ~((probe[26] << 8) | probe[27]) & 0xffff;
  const fill = 0xffff - sum;
  packet[126] = fill >> 8;
  packet[127] = fill & 255;
  const [s] = segmentUdpPacket(packet, 1400);
  assert.equal((s[26] << 8) | s[27], 0xffff);
  assert.ok(udpChecksumOk(s));
});

Deno.test("USO: an IPv6 super-packet is cut into IPv6/UDP datagrams with lengths and checksums", () => {
  const packet = udpSuperPacket(4000, { v6: true });
  const segments = segmentUdpPacket(packet, 1232);
  assert.deepEqual(segments.map((s) => s.length), [1280, 1280, 1280, 352]);
  segments.forEach((s, i) => {
    assert.equal(validateIpv6(s, 0, s.length), PACKET_OK, `segment ${i} IPv6`);
    assert.equal((s[44] << 8) | s[45], s.length - 40, "UDP length");
    assert.ok(udpChecksumOk(s), `segment ${i} UDP checksum`);
  });
  assert.deepEqual(segments.flatMap((s) => [...s.subarray(48)]), [...packet.subarray(48)]);
});

Deno.test("USO: not UDP, a UDP length that disagrees, or no room: nothing is cut", () => {
  const result: Segmented = { count: 0, segmentSize: 0, total: 0 };
  const buffer = new Uint8Array(20_000);
  const tcp = tcpPacket(3000);
  buffer.set(tcp);
  assert.equal(segmentUdp(buffer, 0, tcp.length, 1400, 8000, result), undefined);
  const wrong = udpSuperPacket(3000);
  wrong[25] ^= 1;
  buffer.set(wrong);
  assert.equal(segmentUdp(buffer, 0, wrong.length, 1400, 8000, result), undefined);
  const tiny = udpSuperPacket(3000);
  buffer.set(tiny);
  assert.equal(segmentUdp(buffer, 0, tiny.length, 1, 8000, result), undefined, "3000 segments");
  assert.equal(segmentUdp(buffer, 0, tiny.length, 0, 8000, result), undefined);
});

Deno.test("same-size UDP datagrams of one flow coalesce into one GSO_UDP_L4 super-packet", () => {
  const original = udpSuperPacket(5000);
  const datagrams = segmentUdpPacket(original, 1400);
  const written = coalesce(datagrams);
  assert.equal(written.length, 1);
  const frame = written[0];
  assert.equal(frame[0], 1, "NEEDS_CSUM");
  assert.equal(frame[1], VNET_GSO_UDP_L4);
  assert.equal(frame[2] | (frame[3] << 8), 28, "hdr_len");
  assert.equal(frame[4] | (frame[5] << 8), 1400, "gso_size");
  assert.equal(frame[6] | (frame[7] << 8), 20, "csum_start");
  assert.equal(frame[8] | (frame[9] << 8), 6, "csum_offset");
  const packet = finish(frame);
  assert.equal(validateIpv4(packet, 0, packet.length), PACKET_OK);
  assert.equal((packet[24] << 8) | packet[25], packet.length - 20, "UDP length");
  assert.ok(udpChecksumOk(packet));
  assert.deepEqual([...packet.subarray(28)], [...original.subarray(28)]);
  // And cut again as the kernel would: the same datagrams.
  const again = segmentUdpPacket(packet, 1400);
  assert.deepEqual(
    again.map((d) => [...d.subarray(20)]),
    datagrams.map((d) => [...d.subarray(20)]),
  );
});

Deno.test("IPv6 UDP datagrams coalesce too; a short one ends the run", () => {
  const datagrams = segmentUdpPacket(udpSuperPacket(3000, { v6: true }), 1200);
  const more = segmentUdpPacket(udpSuperPacket(2400, { v6: true }), 1200);
  const written = coalesce([...datagrams, ...more]);
  assert.deepEqual(written.map((f) => f.length - VNET_HDR_SIZE), [40 + 8 + 3000, 40 + 8 + 2400]);
  for (const frame of written) {
    assert.equal(frame[1], VNET_GSO_UDP_L4);
    const packet = finish(frame);
    assert.equal(validateIpv6(packet, 0, packet.length), PACKET_OK);
    assert.ok(udpChecksumOk(packet));
  }
});

Deno.test("UDP without a checksum, with a wrong one, or of another flow passes alone", () => {
  const [a, b] = segmentUdpPacket(udpSuperPacket(2800), 1400);
  const [none1, none2] = segmentUdpPacket(udpSuperPacket(2800, { noChecksum: true }), 1400);
  const damaged = b.slice();
  damaged[100] ^= 1;
  const otherPort = b.slice();
  otherPort[21] ^= 1; // source port; a valid checksum again
  otherPort[26] = 0;
  otherPort[27] = 0;
  const pseudo = new Uint8Array(12);
  pseudo.set(otherPort.subarray(12, 20));
  pseudo[9] = 17;
  pseudo[10] = (otherPort.length - 20) >> 8;
  pseudo[11] = (otherPort.length - 20) & 255;
  const check = reference(pseudo, otherPort.subarray(20)) || 0xffff;
  otherPort[26] = check >> 8;
  otherPort[27] = check & 255;
  assert.ok(udpChecksumOk(otherPort));
  const written = coalesce([none1, none2, a, damaged, a, otherPort]);
  assert.equal(written.length, 6);
  for (const frame of written) assert.equal(frame[1], 0, "no GSO");
  assert.deepEqual(written[0].subarray(VNET_HDR_SIZE), none1);
  assert.deepEqual(written[3].subarray(VNET_HDR_SIZE), damaged);
  assert.deepEqual(written[5].subarray(VNET_HDR_SIZE), otherPort);
});

Deno.test("a UDP run and TCP segments keep their order and do not mix", () => {
  const udp = segmentUdpPacket(udpSuperPacket(2800), 1400);
  const tcp = segment(tcpPacket(2896, { flags: 0x10 }), 1448);
  const written = coalesce([...udp, ...tcp, ...udp]);
  assert.deepEqual(written.map((f) => f[1]), [VNET_GSO_UDP_L4, VNET_GSO_TCPV4, VNET_GSO_UDP_L4]);
});
