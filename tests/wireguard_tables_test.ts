/**
 * The device's tables on their own: the replay window (the kernel's and wireguard-go's
 * replay test sequence, with our window size and number limit), the allowed-IPs
 * longest-prefix match, and the per-source handshake rate limiter.
 */
import assert from "node:assert/strict";
import { MAX_COUNTER, ReplayFilter, WINDOW_SIZE } from "../lib/wireguard/replay.ts";
import { AllowedIps, parsePrefix } from "../lib/wireguard/allowed_ips.ts";
import { RateLimiter } from "../lib/wireguard/rate_limiter.ts";
import { parseKey } from "../lib/wireguard/keys.ts";
import { readCounter, writeCounter } from "../lib/wireguard/messages.ts";

Deno.test("the replay window accepts each counter once, within WINDOW_SIZE, below the limit", () => {
  const filter = new ReplayFilter();
  const LIMIT = MAX_COUNTER;
  const T_LIM = WINDOW_SIZE + 1;
  let step = 0;
  const T = (counter: number, expected: boolean) => {
    step++;
    // check() never records; validate() does.
    const checked = filter.check(counter, LIMIT);
    assert.equal(filter.validate(counter, LIMIT), expected, `step ${step}: ${counter}`);
    assert.equal(checked, expected, `step ${step}: check(${counter})`);
  };
  T(0, true);
  T(1, true);
  T(1, false);
  T(9, true);
  T(8, true);
  T(7, true);
  T(7, false);
  T(T_LIM, true);
  T(T_LIM - 1, true);
  T(T_LIM - 1, false);
  T(T_LIM - 2, true);
  T(2, true);
  T(2, false);
  T(T_LIM + 16, true);
  T(3, false);
  T(T_LIM + 16, false);
  T(T_LIM * 4, true);
  T(T_LIM * 4 - (T_LIM - 1), true);
  T(10, false);
  T(T_LIM * 4 - T_LIM, false);
  T(T_LIM * 4 - (T_LIM + 1), false);
  T(T_LIM * 4 - (T_LIM - 2), true);
  T(T_LIM * 4 + 1 - T_LIM, false);
  T(0, false);
  T(LIMIT, false);
  T(LIMIT - 1, true);
  T(LIMIT, false);
  T(LIMIT - 1, false);
  T(LIMIT - 2, true);
  T(LIMIT + 1, false);
  T(LIMIT + 2, false);
  T(LIMIT - 2, false);
  T(LIMIT - 3, true);
  T(0, false);
  T(-1, false);
  T(Number.NaN, false);
});

Deno.test("the replay window takes a whole window in any order, and nothing older", () => {
  const filter = new ReplayFilter();
  for (let i = 1; i <= WINDOW_SIZE; i++) assert.ok(filter.validate(i));
  assert.ok(filter.validate(0));
  assert.ok(!filter.validate(0));

  filter.reset();
  for (let i = WINDOW_SIZE + 1; i > 0; i--) assert.ok(filter.validate(i), `down ${i}`);
  filter.reset();
  for (let i = WINDOW_SIZE + 2; i > 1; i--) assert.ok(filter.validate(i));
  assert.ok(!filter.validate(0), "one past the window");
  filter.reset();
  for (let i = WINDOW_SIZE; i > 0; i--) assert.ok(filter.validate(i));
  assert.ok(filter.validate(0));
  assert.ok(filter.validate(WINDOW_SIZE + 1));
});

Deno.test("u64 counters on the wire read exactly up to 2^53 and are refused beyond", () => {
  const bytes = new Uint8Array(8);
  for (const counter of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345, MAX_COUNTER]) {
    writeCounter(bytes, 0, counter);
    assert.equal(readCounter(bytes, 0), counter);
  }
  bytes.set([0, 0, 0, 0, 0, 0, 0x20, 0]); // 2^53
  assert.equal(readCounter(bytes, 0), -1);
  bytes.fill(0xff);
  assert.equal(readCounter(bytes, 0), -1);
});

Deno.test("allowed IPs pick the longest matching prefix and forget a removed peer", () => {
  const table = new AllowedIps<string>();
  const add = (prefix: string, value: string) => {
    const net = parsePrefix(prefix);
    table.insert(net.ip, net.prefixLen, value);
  };
  add("10.10.0.0/16", "wide");
  add("10.10.2.0/24", "b");
  add("10.10.2.7/32", "host");
  add("192.168.0.0/16", "high"); // above 2^31 as a number
  add("0.0.0.0/0", "default");
  const ip = (text: string) => parsePrefix(text).ip;
  assert.equal(table.lookup(ip("10.10.2.7")), "host");
  assert.equal(table.lookup(ip("10.10.2.8")), "b");
  assert.equal(table.lookup(ip("10.10.3.1")), "wide");
  assert.equal(table.lookup(ip("192.168.4.4")), "high");
  assert.equal(table.lookup(ip("8.8.8.8")), "default");
  assert.deepEqual(table.prefixesOf("high"), ["192.168.0.0/16"]);
  add("10.10.2.0/24", "other"); // the same prefix moves to another peer, as `wg set` does
  assert.equal(table.lookup(ip("10.10.2.8")), "other");
  table.removeValue("host");
  table.removeValue("default");
  assert.equal(table.lookup(ip("10.10.2.7")), "other");
  assert.equal(table.lookup(ip("8.8.8.8")), undefined);
  assert.throws(() => parsePrefix("10.10.2.0/33"), /Invalid allowed IP "10.10.2.0\/33"/);
  assert.throws(() => parsePrefix("fd00::/64"), /IPv4 prefix/);
});

Deno.test("the handshake rate limiter allows a short burst, then 20 a second, per source", () => {
  const limiter = new RateLimiter(3);
  let now = 0;
  let allowed = 0;
  // As wireguard-go: a bucket of 5 packets' worth, but a packet needs strictly more than
  // its cost left, so 4 pass at the same instant.
  for (let i = 0; i < 100; i++) if (limiter.allow(1, now)) allowed++;
  assert.equal(allowed, 4);
  now += 1000;
  allowed = 0;
  for (let i = 0; i < 100; i++) if (limiter.allow(1, now)) allowed++;
  assert.ok(allowed >= 4 && allowed <= 5, `after a second: ${allowed}`);
  // Other sources have buckets of their own; the table is bounded.
  assert.ok(limiter.allow(2, now) && limiter.allow(3, now));
  assert.ok(!limiter.allow(4, now), "a full table refuses new sources");
  limiter.sweep(now + 2000);
  assert.equal(limiter.size, 0);
  assert.ok(limiter.allow(4, now + 2000));
});

Deno.test("keys are 44 characters of base64; a wrong one names the fix", () => {
  assert.equal(parseKey("YAnzGoTLOPyR+MXCA+UF4t+/kaZ9BhPe62wlzzxe6Es=").length, 32);
  assert.throws(() => parseKey("not-a-key"), /wg genkey/);
  assert.throws(() => parseKey(new Uint8Array(31)), /32 bytes/);
});
