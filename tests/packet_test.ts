import assert from "node:assert/strict";
import {
  decrementHopLimit,
  decrementTtl,
  ICMPV6_ERROR_MAX,
  internetChecksum,
  Ip6Prefix,
  PACKET_BAD_CHECKSUM,
  PACKET_BAD_HEADER_LENGTH,
  PACKET_BAD_PAYLOAD_LENGTH,
  PACKET_BAD_TOTAL_LENGTH,
  PACKET_NOT_IPV4,
  PACKET_NOT_IPV6,
  PACKET_OK,
  PACKET_TOO_SHORT,
  readU32,
  validateIpv4,
  validateIpv6,
  writeNetUnreachable,
  writeNoRoute6,
} from "../lib/udp/packet.ts";
import { parseIp4 } from "../lib/ip.ts";
import { ip6Bytes, parseIp6 } from "../lib/ip6.ts";

/** An IPv4/ICMP echo request with a correct header checksum, built independently. */
function echoRequest(options: { ttl?: number; payload?: number } = {}): Uint8Array {
  const payload = options.payload ?? 32;
  const total = 20 + 8 + payload;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes[0] = 0x45;
  view.setUint16(2, total);
  view.setUint16(4, 0x1234);
  bytes[8] = options.ttl ?? 64;
  bytes[9] = 1;
  view.setUint32(12, parseIp4("10.10.1.2")!);
  view.setUint32(16, parseIp4("10.10.2.3")!);
  view.setUint16(10, referenceChecksum(bytes.subarray(0, 20)));
  bytes[20] = 8;
  for (let i = 0; i < payload; i++) bytes[28 + i] = i;
  view.setUint16(22, referenceChecksum(bytes.subarray(20)));
  return bytes;
}

/** RFC 1071, written plainly as the reference. */
function referenceChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) + (bytes[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

Deno.test("a well-formed packet validates and every kind of damage is named", () => {
  const packet = echoRequest();
  assert.equal(validateIpv4(packet, 0, packet.length), PACKET_OK);
  assert.equal(validateIpv4(packet, 0, 19), PACKET_TOO_SHORT);
  assert.equal(validateIpv4(packet, 0, packet.length - 1), PACKET_BAD_TOTAL_LENGTH);
  const v6 = packet.slice();
  v6[0] = 0x60;
  assert.equal(validateIpv4(v6, 0, v6.length), PACKET_NOT_IPV4);
  const shortHeader = packet.slice();
  shortHeader[0] = 0x44;
  assert.equal(validateIpv4(shortHeader, 0, shortHeader.length), PACKET_BAD_HEADER_LENGTH);
  const corrupt = packet.slice();
  corrupt[15] ^= 1;
  assert.equal(validateIpv4(corrupt, 0, corrupt.length), PACKET_BAD_CHECKSUM);
});

Deno.test("TTL decrement keeps the header checksum right for every TTL", () => {
  for (let ttl = 2; ttl <= 255; ttl++) {
    const packet = echoRequest({ ttl });
    assert.equal(decrementTtl(packet, 0), true);
    assert.equal(packet[8], ttl - 1);
    const recomputed = packet.slice(0, 20);
    recomputed[10] = recomputed[11] = 0;
    assert.equal((packet[10] << 8) | packet[11], referenceChecksum(recomputed), `ttl ${ttl}`);
    assert.equal(validateIpv4(packet, 0, packet.length), PACKET_OK);
  }
  for (const ttl of [0, 1]) {
    const packet = echoRequest({ ttl });
    const before = packet.slice();
    assert.equal(decrementTtl(packet, 0), false);
    assert.deepEqual(packet, before);
  }
});

Deno.test("an unroutable overlay destination gets an ICMP net-unreachable back", () => {
  const packet = echoRequest({ payload: 100 });
  const out = new Uint8Array(128);
  const length = writeNetUnreachable(packet, 0, packet.length, parseIp4("10.10.1.0")!, out, 0);
  assert.equal(length, 20 + 8 + 28);
  assert.equal(validateIpv4(out, 0, length), PACKET_OK);
  assert.equal(readU32(out, 12), parseIp4("10.10.1.0"));
  assert.equal(readU32(out, 16), parseIp4("10.10.1.2"));
  assert.equal(out[20], 3);
  assert.equal(out[21], 0);
  assert.equal(internetChecksum(out, 20, length - 20), 0);
  assert.deepEqual(out.subarray(28, length), packet.subarray(0, 28));
});

Deno.test("ICMP errors are never answered with ICMP errors", () => {
  const packet = echoRequest();
  packet[20] = 3; // itself a destination-unreachable
  assert.equal(writeNetUnreachable(packet, 0, packet.length, 1, new Uint8Array(128), 0), 0);
});

// ---- IPv6 inner packets -------------------------------------------------------------

/** An IPv6 packet: 40-byte header, then `next` header bytes as given, then payload. */
function ipv6Packet(
  options: {
    next?: number;
    hops?: number;
    source?: string;
    destination?: string;
    body?: number[];
  } = {},
): Uint8Array {
  const body = options.body ?? [128, 0, 0, 0, 0x12, 0x34, 0, 1, ...new Array(24).fill(7)]; // echo request
  const bytes = new Uint8Array(40 + body.length);
  bytes[0] = 0x60;
  bytes[1] = 0x0a; // traffic class / flow label bits, carried as they are
  bytes[3] = 0x55;
  new DataView(bytes.buffer).setUint16(4, body.length);
  bytes[6] = options.next ?? 58;
  bytes[7] = options.hops ?? 64;
  bytes.set(ip6Bytes(parseIp6(options.source ?? "fd10:0:0:1::2")!), 8);
  bytes.set(ip6Bytes(parseIp6(options.destination ?? "fd10:0:0:9::3")!), 24);
  bytes.set(body, 40);
  return bytes;
}

Deno.test("IPv6: a well-formed packet validates; truncated headers and wrong payload lengths do not", () => {
  const packet = ipv6Packet();
  assert.equal(validateIpv6(packet, 0, packet.length), PACKET_OK);
  assert.equal(validateIpv6(packet, 0, 39), PACKET_TOO_SHORT);
  assert.equal(validateIpv6(packet, 0, packet.length - 1), PACKET_BAD_PAYLOAD_LENGTH);
  const longer = new Uint8Array(packet.length + 4);
  longer.set(packet);
  assert.equal(validateIpv6(longer, 0, longer.length), PACKET_BAD_PAYLOAD_LENGTH, "trailing bytes");
  const jumbo = packet.slice();
  jumbo[4] = jumbo[5] = 0;
  assert.equal(validateIpv6(jumbo, 0, jumbo.length), PACKET_BAD_PAYLOAD_LENGTH);
  const v4 = echoRequest();
  assert.equal(validateIpv6(v4, 0, v4.length), PACKET_NOT_IPV6);
  const headerOnly = ipv6Packet({ next: 59, body: [] });
  assert.equal(validateIpv6(headerOnly, 0, 40), PACKET_OK, "no next header, no payload");
});

Deno.test("IPv6: the hop limit drops by one, and a packet at 1 or 0 is left alone for dropping", () => {
  const packet = ipv6Packet({ hops: 2 });
  assert.equal(decrementHopLimit(packet, 0), true);
  assert.equal(packet[7], 1);
  for (const hops of [0, 1]) {
    const expiring = ipv6Packet({ hops });
    const before = expiring.slice();
    assert.equal(decrementHopLimit(expiring, 0), false);
    assert.deepEqual(expiring, before);
  }
});

Deno.test("IPv6 prefixes match on bytes for every prefix length", () => {
  const base = parseIp6("fd10:ab:cd00::")!;
  for (const len of [0, 8, 31, 32, 33, 40, 48, 63, 64, 65, 96, 127, 128]) {
    const prefix = new Ip6Prefix(base, len);
    const inside = ip6Bytes(base | ((1n << BigInt(128 - len)) - 1n));
    assert.equal(prefix.contains(inside, 0), true, `/${len} last address`);
    if (len > 0) {
      const outside = ip6Bytes(base ^ (1n << BigInt(128 - len)));
      assert.equal(prefix.contains(outside, 0), false, `/${len} neighbour`);
    }
  }
});

/** The ICMPv6 checksum computed the long way: a pseudo-header written out, then RFC 1071. */
function icmp6ChecksumOk(packet: Uint8Array): boolean {
  const icmpLength = packet.length - 40;
  const pseudo = new Uint8Array(40 + icmpLength);
  pseudo.set(packet.subarray(8, 40), 0);
  new DataView(pseudo.buffer).setUint32(32, icmpLength);
  pseudo[39] = 58;
  pseudo.set(packet.subarray(40), 40);
  return referenceChecksum(pseudo) === 0;
}

Deno.test("IPv6: an unroutable overlay destination gets an ICMPv6 no-route back, checksummed", () => {
  const packet = ipv6Packet();
  const out = new Uint8Array(ICMPV6_ERROR_MAX);
  const source = ip6Bytes(parseIp6("fd10::")!);
  const length = writeNoRoute6(packet, 0, packet.length, source, out, 0);
  assert.equal(length, 40 + 8 + packet.length);
  const reply = out.slice(0, length);
  assert.equal(validateIpv6(reply, 0, length), PACKET_OK);
  assert.equal(reply[6], 58);
  assert.deepEqual(reply.subarray(8, 24), source);
  assert.deepEqual(reply.subarray(24, 40), packet.subarray(8, 24), "back to the sender");
  assert.equal(reply[40], 1, "destination unreachable");
  assert.equal(reply[41], 0, "no route");
  assert.ok(icmp6ChecksumOk(reply));
  assert.deepEqual(reply.subarray(48), packet, "the whole original, as it fits");
  // A hand-computed example: fd10::1 → fd10:0:0:1::2, the 40-byte header of an empty
  // packet (next header 59) quoted. By hand, in 16-bit words: pseudo-header fd11 (source)
  // + fd13 (destination) + 0030 (length 48) + 003a (next header 58); ICMPv6 0100 (type 1,
  // code 0); quoted 600a + 0055 + 0000 + 3b40 + fd13 + fd19. Sum 0x49159, folded 0x915d,
  // so the checksum field holds ~0x915d = 0x6ea2.
  const empty = ipv6Packet({ next: 59, body: [], source: "fd10:0:0:1::2", destination: "fd10::9" });
  const n = writeNoRoute6(empty, 0, 40, ip6Bytes(parseIp6("fd10::1")!), out, 0);
  assert.equal(n, 88);
  assert.equal((out[42] << 8) | out[43], 0x6ea2);
});

Deno.test("IPv6: a large packet is quoted only up to the 1280-byte minimum MTU", () => {
  const packet = ipv6Packet({ next: 17, body: new Array(1400).fill(3) });
  const out = new Uint8Array(ICMPV6_ERROR_MAX + 10);
  const length = writeNoRoute6(packet, 0, packet.length, new Uint8Array(16), out, 0);
  assert.equal(length, 1280);
  assert.ok(icmp6ChecksumOk(out.slice(0, length)));
});

Deno.test("IPv6: no ICMPv6 error about errors, multicast or unspecified sources, or later fragments", () => {
  const out = new Uint8Array(ICMPV6_ERROR_MAX);
  const none = (packet: Uint8Array) =>
    assert.equal(writeNoRoute6(packet, 0, packet.length, new Uint8Array(16), out, 0), 0);
  const some = (packet: Uint8Array) =>
    assert.notEqual(writeNoRoute6(packet, 0, packet.length, new Uint8Array(16), out, 0), 0);
  for (const type of [1, 2, 3, 4, 127]) none(ipv6Packet({ body: [type, 0, 0, 0, 0, 0, 0, 0] }));
  some(ipv6Packet({ body: [129, 0, 0, 0, 0, 0, 0, 0] })); // an echo reply is informational
  none(ipv6Packet({ source: "::" }));
  none(ipv6Packet({ source: "ff02::1" }));
  none(ipv6Packet({ destination: "ff02::1" }));
  // An ICMPv6 error behind a hop-by-hop header and a destination-options header.
  none(
    ipv6Packet({ next: 0, body: [60, 0, 1, 4, 0, 0, 0, 0, 58, 0, 1, 4, 0, 0, 0, 0, 1, 0, 0, 0] }),
  );
  some(ipv6Packet({ next: 0, body: [6, 0, 1, 4, 0, 0, 0, 0, ...new Array(20).fill(0)] })); // TCP
  // Fragments: the first is answered, a later one is not.
  some(ipv6Packet({ next: 44, body: [17, 0, 0, 1, 0, 0, 0, 9, ...new Array(8).fill(0)] }));
  none(ipv6Packet({ next: 44, body: [17, 0, 0, 0x10, 0, 0, 0, 9, ...new Array(8).fill(0)] }));
  // A header chain cut short, or an ICMPv6 header missing: not answered.
  none(ipv6Packet({ next: 0, body: [58, 5] }));
  none(ipv6Packet({ next: 58, body: [] }));
});
