/**
 * Two of our devices on an in-memory network with a driven clock: handshake, data both
 * ways, rekeying and key expiry on the whitepaper's timers, keepalives, roaming, PSK,
 * restarts, retransmission and giving up, and the cookie path under load.
 */
import assert from "node:assert/strict";
import {
  KEEPALIVE_TIMEOUT,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
} from "../lib/wireguard/constants.ts";
import { SEND_QUEUED, SEND_READY } from "../lib/wireguard/device.ts";
import { INITIAL_CHAIN_KEY, INITIAL_HASH } from "../lib/wireguard/noise.ts";
import { libsodiumProvider, nodeCryptoProvider } from "../lib/wireguard/crypto.ts";
import { paddingFor } from "../lib/wireguard/messages.ts";
import { icmpEcho, newPrivateKey, pair, toHex } from "./wireguard_helpers.ts";

const AB = () => icmpEcho("10.10.1.1", "10.10.2.1");
const BA = () => icmpEcho("10.10.2.1", "10.10.1.1", { reply: true });

Deno.test("the Noise constants are WireGuard's initial chain key and hash", () => {
  // HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), and HASH(Ci || identifier).
  assert.equal(
    toHex(INITIAL_CHAIN_KEY),
    "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36",
  );
  assert.equal(
    toHex(INITIAL_HASH),
    "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3",
  );
});

Deno.test("padding rounds inner packets up to 16 bytes but never past the MTU", () => {
  assert.equal(paddingFor(0, 1420), 0);
  assert.equal(paddingFor(1, 1420), 15);
  assert.equal(paddingFor(84, 1420), 12);
  assert.equal(paddingFor(1419, 1420), 1);
  assert.equal(paddingFor(1420, 1420), 0);
  assert.equal(paddingFor(1412, 1420), 8);
});

Deno.test("a first packet starts a handshake; held data then flows both ways", () => {
  const { net, a, b } = pair();
  assert.equal(a.send(AB()), SEND_QUEUED);
  assert.equal(a.device.counters.initiations_sent, 1);
  net.pump();
  assert.equal(b.device.counters.responses_sent, 1);
  assert.equal(a.device.counters.handshakes_completed, 1);
  assert.equal(b.inbox.length, 1, "the held packet arrives once the session is up");
  assert.deepEqual(b.inbox[0], AB());
  // B's session was confirmed by that data packet: B may now send without a handshake.
  assert.equal(b.device.counters.handshakes_completed, 1);
  assert.equal(b.send(BA()), SEND_READY);
  net.pump();
  assert.deepEqual(a.inbox[0], BA());
  for (let i = 0; i < 50; i++) {
    assert.equal(a.send(icmpEcho("10.10.1.1", "10.10.2.1", { sequence: i, payload: i * 20 })), 1);
  }
  net.pump();
  assert.equal(b.inbox.length, 51);
  assert.deepEqual(b.inbox[50], icmpEcho("10.10.1.1", "10.10.2.1", { sequence: 49, payload: 980 }));
  assert.equal(b.device.counters.data_received, 51);
});

Deno.test("without anything to send, the initiator confirms the session with a keepalive", () => {
  const { net, a, b } = pair();
  a.device.initiateHandshake(a.device.peer(b.device.publicKey)!);
  net.pump();
  assert.equal(b.device.counters.keepalives_received, 1);
  assert.equal(b.device.counters.handshakes_completed, 1);
  assert.equal(b.send(BA()), SEND_READY);
});

Deno.test("the initiator rekeys after REKEY_AFTER_TIME and the old session still receives", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  const peerOfA = a.device.peer(b.device.publicKey)!;
  const first = peerOfA.current!;
  net.run(REKEY_AFTER_TIME - 1000, 1000);
  a.send(AB());
  net.pump();
  assert.equal(a.device.counters.initiations_sent, 1, "no rekey before REKEY_AFTER_TIME");
  // A packet still in flight on the old key when the rekey happens.
  net.run(2000, 1000);
  b.send(BA());
  const inFlight = net.queue.splice(0);
  assert.equal(a.send(AB()), SEND_READY, "the old key still sends while the new handshake runs");
  assert.equal(a.device.counters.initiations_sent, 2);
  net.pump();
  assert.notEqual(peerOfA.current, first);
  assert.equal(peerOfA.previous, first);
  net.queue.push(...inFlight);
  const before = a.inbox.length;
  net.pump();
  assert.equal(a.inbox.length, before + 1, "a packet on the previous key is still accepted");
  assert.equal(a.send(AB()), SEND_READY);
  net.pump();
  assert.equal(b.device.counters.handshakes_completed, 2);
});

Deno.test("nothing is sent or accepted on a key older than REJECT_AFTER_TIME", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  // An old message captured now, delivered after the key expired.
  a.send(AB());
  const captured = net.queue.splice(0);
  net.clock.advance(REJECT_AFTER_TIME);
  net.queue.push(...captured);
  net.pump();
  assert.equal(b.device.counters.key_expired, 1);
  // B's key is too old to send on: it holds the packet and starts a handshake itself.
  assert.equal(b.send(BA()), SEND_QUEUED);
  assert.equal(b.device.counters.initiations_sent, 1);
  net.pump();
  assert.equal(a.inbox.length, 1, "the held packet went out on the new session");
});

Deno.test("a peer that received data but has nothing to say sends a keepalive after 10 s", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  const before = a.device.counters.keepalives_received;
  net.run(KEEPALIVE_TIMEOUT - 500, 500);
  assert.equal(a.device.counters.keepalives_received, before);
  net.run(1000, 500);
  assert.equal(a.device.counters.keepalives_received, before + 1);
  assert.equal(b.device.counters.keepalives_sent, 1);
});

Deno.test("a persistent keepalive goes out every interval even when idle", () => {
  const { net, a, b } = pair();
  a.device.addPeer({ publicKey: b.device.publicKey, persistentKeepalive: 25 });
  a.send(AB());
  net.pump();
  const start = b.device.counters.keepalives_received;
  // Any authenticated traffic restarts the interval (B's own keepalive at 10 s does).
  net.run(25_000 * 5 + 1000, 1000);
  assert.ok(b.device.counters.keepalives_received - start >= 4);
});

Deno.test("sending data without hearing back for 15 s starts a new handshake", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  net.filter = () => false; // B goes silent
  a.send(AB());
  net.run(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 500, 100);
  assert.equal(a.device.counters.initiations_sent, 2);
  void b;
});

Deno.test("an unanswered handshake is retried every 5 s and abandoned after 90 s", () => {
  const { net, a } = pair();
  net.filter = () => false;
  a.send(AB());
  a.send(AB());
  net.run(120_000, 250);
  // The first attempt plus MAX_TIMER_HANDSHAKES + 1 retries (as wireguard-go: 20 in all).
  assert.equal(a.device.counters.initiations_sent, 20);
  assert.equal(a.device.counters.handshake_timeout, 2, "held packets are dropped when it gives up");
});

Deno.test("the endpoint follows an authenticated peer to its new address (roaming)", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  const peerOfA = b.device.peer(a.device.publicKey)!;
  assert.equal(b.device.endpointOf(peerOfA), "192.0.2.1:51820");
  a.ip = 0xc0000263; // 192.0.2.99
  a.port = 40000;
  a.send(AB());
  net.pump();
  assert.equal(b.device.endpointOf(peerOfA), "192.0.2.99:40000");
  assert.equal(b.device.counters.endpoint_changes, 1);
  b.send(BA());
  assert.equal(net.queue[0].toIp, 0xc0000263);
  assert.equal(net.queue[0].toPort, 40000);
  net.pump();
  assert.equal(a.inbox.length, 1);
});

Deno.test("a forged source address does not move the endpoint", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  a.send(AB());
  const datagram = net.queue.shift()!;
  datagram.bytes[40] ^= 1; // tampered on the way, from another address
  datagram.fromIp = 0xc0000264;
  net.queue.push(datagram);
  net.pump();
  assert.equal(b.device.counters.decrypt_failed, 1);
  assert.equal(b.device.endpointOf(b.device.peer(a.device.publicKey)!), "192.0.2.1:51820");
});

Deno.test("with a preshared key on both sides the handshake completes; a mismatch fails", () => {
  const psk = newPrivateKey();
  const good = pair({ psk });
  good.a.send(AB());
  good.net.pump();
  assert.equal(good.b.inbox.length, 1);

  const bad = pair();
  bad.a.device.addPeer({ publicKey: bad.b.device.publicKey, presharedKey: psk });
  bad.a.send(AB());
  bad.net.pump();
  assert.equal(bad.a.device.counters.handshake_failed, 1, "the initiator rejects the response");
  assert.equal(bad.b.inbox.length, 0);
});

Deno.test("a restarted peer with the same key is accepted (its timestamp is newer)", () => {
  const { net, a, b } = pair();
  a.send(AB());
  net.pump();
  net.clock.advance(1000);
  // "Restart" A: a new device with the same private key at the same address.
  const privateKey = new Uint8Array(a.device.identity.privateKey);
  const again = net.add("192.0.2.1", 51821, { privateKey });
  again.device.addPeer({
    publicKey: b.device.publicKey,
    endpoint: b.endpoint,
    allowedIps: ["10.10.2.0/24"],
  });
  net.nodes.splice(net.nodes.indexOf(a), 1);
  assert.equal(again.send(AB()), SEND_QUEUED);
  net.pump();
  assert.equal(b.device.counters.handshakes_completed, 2);
  assert.equal(b.inbox.length, 2);
  assert.equal(b.device.endpointOf(b.device.peer(a.device.publicKey)!), "192.0.2.1:51821");
});

Deno.test("under load, an initiation without a cookie gets a cookie reply, and the retry with mac2 succeeds", () => {
  const { net, a, b } = pair({ deviceB: { underLoadThreshold: 0 } });
  a.send(AB());
  net.pump();
  assert.equal(b.device.counters.cookie_sent, 1);
  assert.equal(a.device.counters.cookie_replies_received, 1);
  assert.equal(b.inbox.length, 0);
  // The retry after REKEY_TIMEOUT carries mac2 made with the cookie.
  net.run(REKEY_TIMEOUT + 500, 100);
  assert.equal(b.device.counters.cookie_sent, 1);
  assert.equal(b.inbox.length, 1);
  assert.equal(b.device.counters.handshakes_completed, 1);
});

Deno.test("the cookie expires after 2 minutes and is asked for again", () => {
  const { net, a, b } = pair({ deviceB: { underLoadThreshold: 0 } });
  a.send(AB());
  net.pump();
  net.run(REKEY_TIMEOUT + 500, 100);
  assert.equal(b.device.counters.handshakes_completed, 1);
  net.run(121_000, 1000);
  // A rekeys on sending after REKEY_AFTER_TIME; its cookie is stale by then.
  a.send(AB());
  net.pump();
  assert.equal(b.device.counters.cookie_sent, 2);
});

Deno.test("a libsodium device and a node:crypto device handshake and exchange data", () => {
  const { net, a, b } = pair({
    deviceA: { crypto: libsodiumProvider() },
    deviceB: { crypto: nodeCryptoProvider() },
    psk: newPrivateKey(),
  });
  a.send(AB());
  net.pump();
  b.send(BA());
  net.pump();
  assert.deepEqual(b.inbox, [AB()]);
  assert.deepEqual(a.inbox, [BA()]);
  net.clock.advance(REKEY_AFTER_TIME + 1);
  a.send(AB());
  net.pump();
  assert.equal(b.device.counters.handshakes_completed, 2);
});

Deno.test("without libsodium (OVERLAY_CRYPTO=node stands in for it) the node:crypto provider is used", async () => {
  const module = new URL("../lib/wireguard/crypto.ts", import.meta.url).href;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import { cryptoProvider } from "${module}"; console.log(cryptoProvider());`],
    env: { OVERLAY_CRYPTO: "node" },
    stdout: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(output.stdout).trim(), "node:crypto");
});

Deno.test("reconfiguring a peer's allowed IPs replaces them, as wg set does", () => {
  const { a, b } = pair();
  const peer = a.device.addPeer({ publicKey: b.device.publicKey, allowedIps: ["10.10.7.0/24"] });
  assert.equal(a.device.route(0x0a0a0701), peer);
  assert.equal(a.device.route(0x0a0a0201), undefined);
  assert.deepEqual(a.device.allowedIps.prefixesOf(peer), ["10.10.7.0/24"]);
});
