/**
 * WireGuard data-path cost per core: 1420-byte inner packets encrypted into type-4
 * messages and decrypted again, on one thread, with the libsodium provider and with the
 * node:crypto fallback, side by side in one run (rounds alternate; the median is shown).
 *
 *   seal+open  — the provider's in-place AEAD alone (sealInPlace then openInPlace)
 *   device     — Device.encryptTo + Device.handleDatagram: header, padding, counters,
 *                replay window, timers, allowed-IPs check, as a data path calls them
 *   handshakes — full initiation/response/confirmation exchanges per second
 *
 * Gbit/s counts inner-packet bits once per encrypt+decrypt pair, so one core doing
 * both halves at X Gbit/s could carry about 2X in one direction if the other end
 * decrypted. Run: deno run --allow-all bench/wireguard_bench.ts [seconds-per-round]
 */
import {
  type CryptoProvider,
  libsodiumProvider,
  nodeCryptoProvider,
} from "../lib/wireguard/crypto.ts";
import { RECEIVE_DELIVER, receiveResult, sendResult } from "../lib/wireguard/device.ts";
import { icmpEcho, pair } from "../tests/wireguard_helpers.ts";

const PACKET = 1420;
const ROUNDS = 3;

function sealOpen(crypto: CryptoProvider, seconds: number): number {
  const key = crypto.transportKey(crypto.randomBytes(new Uint8Array(32)));
  const buffer = new Uint8Array(16 + PACKET + 32);
  crypto.randomBytes(buffer);
  let packets = 0;
  let counter = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 256; i++) {
      crypto.sealInPlace(key, counter, buffer, 16, PACKET);
      if (!crypto.openInPlace(key, counter, buffer, 16, PACKET + 16)) {
        throw new Error("open failed");
      }
      counter++;
    }
    packets += 256;
  }
  return (packets * PACKET * 8) / ((performance.now() - started) / 1000) / 1e9;
}

function device(crypto: CryptoProvider, seconds: number): number {
  const { net, a, b } = pair({ deviceA: { crypto }, deviceB: { crypto } });
  a.send(icmpEcho("10.10.1.1", "10.10.2.1"));
  net.pump();
  const peer = a.device.peer(b.device.publicKey)!;
  const packet = icmpEcho("10.10.1.1", "10.10.2.1", { payload: PACKET - 28 });
  const buffer = new Uint8Array(2048);
  const send = sendResult();
  const receive = receiveResult();
  let packets = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 256; i++) {
      buffer.set(packet, 16);
      a.device.encryptTo(peer, buffer, 16, PACKET, send);
      if (b.device.handleDatagram(buffer, 0, send.length, a.ip, a.port, receive) !== 1) {
        throw new Error(`not delivered: ${receive.reason}`);
      }
    }
    packets += 256;
  }
  if (receive.action !== RECEIVE_DELIVER) throw new Error("last packet not delivered");
  return (packets * PACKET * 8) / ((performance.now() - started) / 1000) / 1e9;
}

function handshakes(crypto: CryptoProvider, seconds: number): number {
  const { net, a, b } = pair({ deviceA: { crypto }, deviceB: { crypto } });
  const peer = a.device.peer(b.device.publicKey)!;
  let count = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  while (performance.now() < deadline) {
    net.clock.advance(6_000); // past REKEY_TIMEOUT, so each initiation goes out
    a.device.initiateHandshake(peer);
    net.pump();
    count++;
  }
  if (b.device.counters.handshakes_completed < count) throw new Error("handshakes failed");
  return count / ((performance.now() - started) / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

if (import.meta.main) {
  const seconds = Number(Deno.args[0] ?? 2);
  const providers = [libsodiumProvider(), nodeCryptoProvider()];
  const results = new Map<string, { sealOpen: number[]; device: number[]; hs: number[] }>();
  for (const p of providers) results.set(p.name, { sealOpen: [], device: [], hs: [] });
  // Warm up every path once, then alternate providers round by round.
  for (const p of providers) {
    sealOpen(p, 0.3);
    device(p, 0.3);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const p of providers) {
      const r = results.get(p.name)!;
      r.sealOpen.push(sealOpen(p, seconds));
      r.device.push(device(p, seconds));
      r.hs.push(handshakes(p, Math.min(1, seconds)));
    }
  }
  console.log(
    `WireGuard data path, ${PACKET}-byte packets, one core, encrypt+decrypt (median of ${ROUNDS})`,
  );
  console.log("provider      seal+open Gbit/s   device Gbit/s   handshakes/s");
  for (const [name, r] of results) {
    console.log(
      `${name.padEnd(12)}  ${median(r.sealOpen).toFixed(2).padStart(16)}   ${
        median(r.device).toFixed(2).padStart(13)
      }   ${median(r.hs).toFixed(0).padStart(12)}`,
    );
  }
}
