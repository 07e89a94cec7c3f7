/**
 * The WebAssembly SIMD ones'-complement sum returns exactly what the JS routine returns:
 * every length 0..9000 at even and odd offsets, initial values, all-zero and all-0xff
 * bytes (0 and 0xffff, the two zeros of ones' complement), and long ranges.
 */
import assert from "node:assert/strict";
import {
  onesComplementSum,
  onesComplementSumJs,
  packetMemory,
  WASM_MIN_LENGTH,
  wasmChecksumAvailable,
} from "../lib/udp/checksum.ts";

/** A seeded generator, so a failure can be replayed. */
function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

Deno.test("this runtime runs the WebAssembly SIMD checksum", () => {
  assert.equal(wasmChecksumAvailable(), true);
});

Deno.test("the wasm sum equals the JS sum for every length 0..9000, odd and even offsets", () => {
  const memory = packetMemory(3 * 65_536);
  const random = xorshift(19);
  for (let i = 0; i < memory.length; i++) memory[i] = random() & 255;
  for (let length = 0; length <= 9000; length++) {
    for (const offset of [0, 1, (random() % 4096) | 1, random() % 4096]) {
      const initial = length % 4 === 0 ? 0 : random() % 0x30000;
      assert.equal(
        onesComplementSum(memory, offset, length, initial),
        onesComplementSumJs(memory, offset, length, initial),
        `length ${length} offset ${offset} initial ${initial}`,
      );
    }
  }
});

Deno.test("the wasm sum agrees on the zeros of ones' complement and on 64 KB ranges", () => {
  const memory = packetMemory(200_000);
  for (const length of [WASM_MIN_LENGTH, 64, 1001, 16_384, 16_448, 65_535, 131_071]) {
    memory.fill(0);
    assert.equal(onesComplementSum(memory, 3, length), 0);
    assert.equal(
      onesComplementSum(memory, 3, length, 0x1234),
      onesComplementSumJs(memory, 3, length, 0x1234),
    );
    memory.fill(0xff);
    assert.equal(onesComplementSum(memory, 1, length), onesComplementSumJs(memory, 1, length));
    assert.equal(onesComplementSum(memory, 0, length), onesComplementSumJs(memory, 0, length));
    if (length % 2 === 0) assert.equal(onesComplementSum(memory, 0, length), 0xffff);
  }
});

Deno.test("a subarray of a wasm buffer is summed at its own offset", () => {
  const memory = packetMemory(4096);
  const random = xorshift(7);
  for (let i = 0; i < memory.length; i++) memory[i] = random() & 255;
  const view = memory.subarray(1001, 3000);
  assert.equal(onesComplementSum(view, 5, 1500, 17), onesComplementSumJs(memory, 1006, 1500, 17));
});

Deno.test("packetMemory without wasm is a plain buffer summed in JS", () => {
  const plain = packetMemory(2000, { wasm: false });
  plain.fill(0xab);
  assert.ok(!(plain.buffer instanceof SharedArrayBuffer));
  assert.equal(onesComplementSum(plain, 1, 999), onesComplementSumJs(plain, 1, 999));
});
