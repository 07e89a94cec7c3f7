/**
 * Hostile input: every bad datagram is dropped and counted under its reason, nothing
 * throws, and memory stays flat under floods of them.
 */
import assert from "node:assert/strict";
import { CookieChecker, CookieGenerator } from "../lib/wireguard/cookie.ts";
import {
  COUNTER_NAMES,
  type CounterName,
  type Device,
  DROP,
  RECEIVE_REPLY,
  receiveResult,
} from "../lib/wireguard/device.ts";
import {
  COOKIE_REPLY_SIZE,
  INITIATION_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  readU32Le,
  RESPONSE_SIZE,
  writeU32Le,
} from "../lib/wireguard/messages.ts";
import { REKEY_TIMEOUT } from "../lib/wireguard/constants.ts";
import { defaultCryptoProvider } from "../lib/wireguard/crypto.ts";
import { parseKey } from "../lib/wireguard/keys.ts";
import { type Datagram, icmpEcho, type Network, pair } from "./wireguard_helpers.ts";

const AB = () => icmpEcho("10.10.1.1", "10.10.2.1");
const A_IP = 0xc0000201;

/** The drop counters only (the ones before "data_received"). */
const DROP_NAMES = COUNTER_NAMES.slice(0, COUNTER_NAMES.indexOf("data_received"));

function drops(device: Device): number {
  return DROP_NAMES.reduce((sum, name) => sum + device.counters[name], 0);
}

/** Delivers `bytes` to `device` as from A's address; returns the action. */
function deliver(device: Device, bytes: Uint8Array, fromIp = A_IP, fromPort = 51820): number {
  const copy = bytes.slice();
  return device.handleDatagram(copy, 0, copy.length, fromIp, fromPort, receiveResult());
}

/** The first logged datagram of `type` sent to `toIp`. */
function captured(net: Network, type: number, toIp?: number): Datagram {
  const found = net.log.find((d) => d.bytes[0] === type && (toIp === undefined || d.toIp === toIp));
  assert.ok(found, `no message of type ${type} was sent`);
  return found;
}

/** A session between A and B, with one of each message type captured in net.log. */
function established() {
  const setup = pair();
  setup.a.send(AB());
  setup.net.pump();
  setup.a.send(AB());
  setup.net.pump();
  return setup;
}

function expectOnly(device: Device, reason: CounterName, count: number, before: number): void {
  assert.equal(device.counters[reason], count, `${reason}: ${JSON.stringify(device.counters)}`);
  assert.equal(
    drops(device) - before,
    count,
    `only ${reason} grew: ${JSON.stringify(device.counters)}`,
  );
}

Deno.test("random garbage of every size is dropped as malformed or bad_mac; nothing is delivered", () => {
  const { b } = established();
  const before = drops(b.device);
  const delivered = b.device.counters.data_received;
  const random = new Uint8Array(200);
  const result = receiveResult();
  const count = 20_000;
  for (let i = 0; i < count; i++) {
    crypto.getRandomValues(random);
    const length = i % 200;
    // Half of them carry a plausible type and length so they get past the first check.
    if (i % 2 === 0) {
      const type = 1 + (i % 8) / 2;
      writeU32Le(random, 0, type);
    }
    assert.equal(b.device.handleDatagram(random, 0, length, A_IP, 51820, result), DROP);
  }
  assert.equal(drops(b.device) - before, count);
  assert.equal(b.device.counters.data_received, delivered);
});

Deno.test("every truncation (and extension) of each message type is dropped and counted", () => {
  const { net, a, b } = established();
  net.run(REKEY_TIMEOUT, 1000);
  const messages = [
    captured(net, MESSAGE_INITIATION).bytes,
    captured(net, MESSAGE_RESPONSE).bytes,
    captured(net, MESSAGE_TRANSPORT, b.ip).bytes,
  ];
  // A cookie reply: B under load answers A's next initiation with one.
  const cookie = new Uint8Array(COOKIE_REPLY_SIZE);
  writeU32Le(cookie, 0, MESSAGE_COOKIE_REPLY);
  messages.push(cookie);
  for (const message of messages) {
    for (const target of [a.device, b.device]) {
      for (let length = 0; length < message.length; length++) {
        const before = drops(target);
        assert.equal(deliver(target, message.subarray(0, length)), DROP, `length ${length}`);
        assert.equal(drops(target), before + 1);
      }
    }
  }
  for (const message of messages.slice(0, 2)) {
    const longer = new Uint8Array(message.length + 1);
    longer.set(message);
    const before = b.device.counters.malformed;
    assert.equal(deliver(b.device, longer), DROP);
    assert.equal(b.device.counters.malformed, before + 1);
  }
});

Deno.test("a replayed data message is dropped as replayed; the first copy was delivered", () => {
  const { net, b } = established();
  const data = net.log.filter((d) => d.bytes[0] === MESSAGE_TRANSPORT && d.toIp === b.ip).pop()!;
  const before = drops(b.device);
  for (let i = 0; i < 5; i++) assert.equal(deliver(b.device, data.bytes), DROP);
  expectOnly(b.device, "replayed", 5, before);
});

Deno.test("a replayed initiation is refused by its timestamp, even after the session ended", () => {
  const { net, b } = established();
  const initiation = captured(net, MESSAGE_INITIATION).bytes;
  const before = drops(b.device);
  assert.equal(deliver(b.device, initiation), DROP);
  net.clock.advance(600_000);
  assert.equal(deliver(b.device, initiation), DROP);
  expectOnly(b.device, "replayed", 2, before);
});

Deno.test("forged mac1 on initiations and responses, and forged cookie replies, are bad_mac", () => {
  const { net, a, b } = established();
  const initiation = captured(net, MESSAGE_INITIATION).bytes.slice();
  initiation[116] ^= 1;
  const before = drops(b.device);
  assert.equal(deliver(b.device, initiation), DROP);
  const response = captured(net, MESSAGE_RESPONSE).bytes.slice();
  response[60] ^= 1;
  const beforeA = drops(a.device);
  assert.equal(deliver(a.device, response), DROP);
  // A body byte changed, mac1 kept: mac1 no longer matches either.
  const body = captured(net, MESSAGE_INITIATION).bytes.slice();
  body[20] ^= 1;
  assert.equal(deliver(b.device, body), DROP);
  expectOnly(b.device, "bad_mac", 2, before);

  // A cookie reply to A's handshake in flight, but not sealed with B's cookie key over
  // the mac1 A sent: random bytes, then a reply B's checker made for another message.
  net.filter = () => false;
  net.clock.advance(REKEY_TIMEOUT + 1);
  a.device.initiateHandshake(a.device.peer(b.device.publicKey)!);
  const inFlight = net.log[net.log.length - 1].bytes;
  const forged = crypto.getRandomValues(new Uint8Array(COOKIE_REPLY_SIZE));
  writeU32Le(forged, 0, MESSAGE_COOKIE_REPLY);
  forged.set(inFlight.subarray(4, 8), 4); // its sender index
  assert.equal(deliver(a.device, forged), DROP);
  const checker = new CookieChecker(defaultCryptoProvider(), parseKey(b.device.publicKey));
  const other = initiation.slice();
  checker.createReply(
    other,
    0,
    INITIATION_SIZE,
    readU32Le(inFlight, 4),
    new Uint8Array(6),
    0,
    other,
    0,
  );
  assert.equal(deliver(a.device, other.subarray(0, COOKIE_REPLY_SIZE)), DROP);
  expectOnly(a.device, "bad_mac", 3, beforeA);
  assert.equal(a.device.counters.cookie_replies_received, 0);
});

Deno.test("unknown receiver indices are dropped as unknown_index for data, responses and cookies", () => {
  const { net, a, b } = established();
  const data = captured(net, MESSAGE_TRANSPORT, b.ip).bytes.slice();
  writeU32Le(data, 4, 0x12345678);
  const before = drops(b.device);
  assert.equal(deliver(b.device, data), DROP);
  expectOnly(b.device, "unknown_index", 1, before);

  const cookie = new Uint8Array(COOKIE_REPLY_SIZE);
  writeU32Le(cookie, 0, MESSAGE_COOKIE_REPLY);
  writeU32Le(cookie, 4, 0x12345678);
  const beforeA = drops(a.device);
  assert.equal(deliver(a.device, cookie), DROP);
  // A response to a handshake A is not waiting for: the index names a session now.
  assert.equal(deliver(a.device, captured(net, MESSAGE_RESPONSE).bytes), DROP);
  expectOnly(a.device, "unknown_index", 2, beforeA);
});

Deno.test("a tampered ciphertext is decrypt_failed and does not advance the replay window", () => {
  const { net, b } = established();
  net.queue.length = 0;
  const { a } = { a: net.nodes[0] };
  a.send(AB());
  const message = net.queue.shift()!.bytes;
  const tampered = message.slice();
  tampered[tampered.length - 1] ^= 1;
  const before = drops(b.device);
  assert.equal(deliver(b.device, tampered), DROP);
  expectOnly(b.device, "decrypt_failed", 1, before);
  const inbox = b.inbox.length;
  net.queue.push({ bytes: message, fromIp: a.ip, fromPort: a.port, toIp: b.ip, toPort: b.port });
  net.pump();
  assert.equal(b.inbox.length, inbox + 1, "the genuine message with that counter still gets in");
});

Deno.test("an inner packet whose source is outside the sender's allowed IPs is dropped", () => {
  const { net, a, b } = established();
  assert.equal(a.send(icmpEcho("10.10.9.9", "10.10.2.1")), 1);
  net.pump();
  assert.equal(b.device.counters.not_allowed_source, 1);
  assert.equal(b.inbox.length, 2);
});

Deno.test("an initiation from a key that is not a peer is unknown_peer", () => {
  const { net, b } = established();
  const stranger = net.add("192.0.2.3", 51820);
  stranger.device.addPeer({
    publicKey: b.device.publicKey,
    endpoint: b.endpoint,
    allowedIps: ["10.10.2.0/24"],
  });
  stranger.send(AB());
  net.pump();
  assert.equal(b.device.counters.unknown_peer, 1);
  assert.equal(b.device.counters.responses_sent, 1);
});

Deno.test("a second initiation from one peer within 20 ms is handshake_rate_limited", () => {
  const { net, a, b } = established();
  net.clock.advance(REKEY_TIMEOUT + 1);
  const privateKey = new Uint8Array(a.device.identity.privateKey);
  const twin = net.add("192.0.2.1", 51900, {
    privateKey,
    wallClock: () => 1_800_000_000_000 + net.clock.now,
  });
  twin.device.addPeer({
    publicKey: b.device.publicKey,
    endpoint: b.endpoint,
    allowedIps: ["10.10.2.0/24"],
  });
  a.device.initiateHandshake(a.device.peer(b.device.publicKey)!);
  const first = net.queue.splice(0);
  twin.device.initiateHandshake(twin.device.peer(b.device.publicKey)!);
  const second = net.queue.splice(0);
  net.queue.push(...first, ...second);
  const before = b.device.counters.handshake_rate_limited;
  net.pump();
  assert.equal(b.device.counters.handshake_rate_limited, before + 1);
});

Deno.test("a handshake flood gets cookie replies, then per-source rate limits; the real peer still gets through; memory stays flat", () => {
  const { net, a, b } = pair({ deviceB: { underLoadThreshold: 64 } });
  // The attacker knows B's public key, so its initiations carry a valid mac1.
  const crypto = defaultCryptoProvider();
  const forger = new CookieGenerator(crypto, parseKey(b.device.publicKey));
  const message = new Uint8Array(INITIATION_SIZE);
  const result = receiveResult();
  let replies = 0;
  const flood = (count: number, ip: (i: number) => number) => {
    for (let i = 0; i < count; i++) {
      crypto.randomBytes(message);
      writeU32Le(message, 0, MESSAGE_INITIATION);
      forger.addMacs(message, 0, INITIATION_SIZE, net.clock.now);
      const action = b.device.handleDatagram(message, 0, INITIATION_SIZE, ip(i), 40000, result);
      if (action === RECEIVE_REPLY) {
        replies++;
        // The reply is the cookie for that source: a forger at a real address takes it.
        if (i === 0) forger.consumeReply(message, 0, net.clock.now);
      }
    }
  };
  flood(1000, (i) => 0x0a000000 + i);
  assert.ok(b.device.underLoad(), "the flood put B under load");
  assert.equal(b.device.counters.cookie_sent, replies);
  assert.ok(replies >= 1000 - 64 - 1, `cookie replies: ${replies}`);
  assert.ok(b.device.counters.handshake_failed <= 65, "only traffic below the threshold cost a DH");

  // A forger that holds a cookie for its address (the first one) is rate-limited per source.
  const limitedBefore = b.device.counters.handshake_rate_limited;
  flood(100, () => 0x0a000000);
  assert.ok(b.device.counters.handshake_rate_limited - limitedBefore >= 90);

  // Meanwhile the real peer: its first initiation gets a cookie, its retry goes through.
  a.send(AB());
  net.pump();
  assert.ok(a.device.counters.cookie_replies_received >= 1);
  for (let t = 0; t < REKEY_TIMEOUT + 1000; t += 100) {
    flood(20, (i) => 0x0b000000 + i);
    net.clock.advance(100);
    a.device.tick();
    b.device.tick();
    net.pump();
  }
  assert.equal(b.inbox.length, 1, JSON.stringify(b.device.counters));

  // Memory: 100k more bad messages of mixed kinds do not grow the process.
  const garbage = new Uint8Array(256);
  const mixed = (count: number) => {
    for (let i = 0; i < count; i++) {
      crypto.randomBytes(garbage);
      const kind = i % 4;
      writeU32Le(garbage, 0, kind + 1);
      const length = [INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE, 32 + (i % 200)][kind];
      if (kind === 0) forger.addMacs(garbage, 0, INITIATION_SIZE, net.clock.now);
      b.device.handleDatagram(garbage, 0, length, 0x0c000000 + (i % 50_000), 1024, result);
      if (i % 5000 === 0) net.clock.advance(50);
    }
  };
  mixed(20_000); // warm up: JIT, the pointer cache, the rate-limiter table
  const rssBefore = Deno.memoryUsage().rss;
  mixed(100_000);
  b.device.tick();
  const growth = (Deno.memoryUsage().rss - rssBefore) / 1e6;
  assert.ok(growth < 32, `rss grew ${growth.toFixed(1)} MB over 100k bad messages`);
});

Deno.test("the data path allocates nothing: 200k more hot rounds cause no more garbage collections", async () => {
  // Encrypt, decrypt, and replayed / tampered / unknown-index drops, under --trace-gc,
  // which prints a line per collection (on stdout, not ordered with our own output, so
  // compare whole runs): a run of 200k rounds against one of a single round.
  const fixture = new URL("./fixtures/wg_alloc.ts", import.meta.url).pathname;
  const collections = async (rounds: number) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--v8-flags=--trace-gc", fixture, String(rounds)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assert.ok(output.success, text.slice(-2000));
    const report = JSON.parse(text.split("\n").find((line) => line.startsWith("{"))!);
    const lines = text.split("\n").filter((line) => /Scavenge|Mark-Compact|Mark-sweep/.test(line));
    return { count: lines.length, lines, report };
  };
  const baseline = await collections(1);
  const hot = await collections(200_000);
  // Even 80 bytes a round (16 MB in all) would fill V8's young generation several times.
  assert.ok(
    hot.count - baseline.count <= 1,
    `${hot.count} collections against ${baseline.count}:\n${hot.lines.join("\n")}`,
  );
  const counters = hot.report.counters;
  assert.ok(counters.replayed > 0 && counters.decrypt_failed > 0 && counters.unknown_index > 0);
});
