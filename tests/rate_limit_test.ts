import assert from "node:assert/strict";
import { KeyedRateLimit } from "../lib/rate_limit.ts";

Deno.test("a key gets one line per window; the next line says how many were held back", () => {
  const limit = new KeyedRateLimit(60_000);
  assert.deepEqual(limit.allow("peer joined\0a", 1_000), { allowed: true, held: 0 });
  assert.deepEqual(limit.allow("peer joined\0a", 2_000), { allowed: false, held: 1 });
  assert.deepEqual(limit.allow("peer joined\0a", 3_000), { allowed: false, held: 2 });
  assert.deepEqual(limit.allow("peer joined\0b", 3_000), { allowed: true, held: 0 });
  assert.deepEqual(limit.allow("peer joined\0a", 61_000), { allowed: true, held: 2 });
});

Deno.test("keys whose window is over are forgotten, though fewer than 10,000 were seen", () => {
  const limit = new KeyedRateLimit(60_000);
  for (let i = 0; i < 5_000; i++) limit.allow(`peer joined\0${i}`, 1_000 + 12 * i);
  assert.equal(limit.size, 5_000);
  limit.allow("peer joined\0flapping", 2_000);
  limit.allow("peer joined\0flapping", 3_000); // held back
  limit.allow("peer left\0x", 70_000);
  assert.equal(limit.size, 5_002, "swept at most once a window (last at 60,004 ms)");
  limit.allow("peer left\0y", 125_000);
  assert.equal(limit.size, 3, "the 5,000 are gone; x, y and the key with a line held back stay");
  limit.allow("peer left\0z", 190_000);
  assert.equal(limit.size, 2, "z and the key with a line held back");
  assert.deepEqual(limit.allow("peer joined\0flapping", 190_000), { allowed: true, held: 1 });
});

Deno.test("distinct keys over many windows: about one window's worth is kept", () => {
  const limit = new KeyedRateLimit(1_000);
  const started = performance.now();
  for (let i = 0; i < 100_000; i++) limit.allow(`k${i}`, i / 10);
  // 10,000 keys a window: about the last window's worth is kept, twice that at most.
  assert.ok(limit.size <= 20_001, `${limit.size} keys kept`);
  assert.ok(performance.now() - started < 1_000, "sweeps are amortized, not one per key");
});

Deno.test("flapping keys (lines held back) over many windows stay bounded", () => {
  const limit = new KeyedRateLimit(1_000);
  let most = 0;
  // 100 new keys a second, each logged twice within its window, for an hour.
  for (let second = 0; second < 3_600; second++) {
    for (let i = 0; i < 100; i++) {
      const key = `k${second}-${i}`;
      limit.allow(key, second * 1_000 + i);
      limit.allow(key, second * 1_000 + i + 1);
    }
    most = Math.max(most, limit.size);
  }
  assert.ok(most <= 10_001, `at most ${most} keys kept`);
});

Deno.test("a flood within one window keeps every key: forgetting one would lift its limit", () => {
  const limit = new KeyedRateLimit(60_000);
  for (let i = 0; i < 30_000; i++) limit.allow(`k${i}`, i);
  assert.equal(limit.size, 30_000);
  assert.deepEqual(limit.allow("k0", 30_000), { allowed: false, held: 1 });
});
