import assert from "node:assert/strict";
import {
  decrementTtl,
  internetChecksum,
  PACKET_BAD_CHECKSUM,
  PACKET_BAD_HEADER_LENGTH,
  PACKET_BAD_TOTAL_LENGTH,
  PACKET_NOT_IPV4,
  PACKET_OK,
  PACKET_TOO_SHORT,
  readU32,
  validateIpv4,
  writeNetUnreachable,
} from "../lib/udp/packet.ts";
import { parseIp4 } from "../lib/ip.ts";

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
