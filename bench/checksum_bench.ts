/**
 * The ones'-complement sum, plain JS against WebAssembly SIMD, in Gbit/s of one core
 * (`deno task bench --only checksum`, or run this file alone). Both sum the same bytes of
 * one packetMemory buffer at odd and even offsets, so the figures compare the routines
 * and nothing else; the copy that a per-packet hand-over into wasm memory would cost is
 * measured beside them (the data path does not copy: its buffers live in wasm memory).
 */
import {
  onesComplementSum,
  onesComplementSumJs,
  packetMemory,
  wasmChecksumAvailable,
} from "../lib/udp/checksum.ts";

export interface ChecksumBenchRow {
  length: number;
  jsGbps: number;
  wasmGbps: number;
  /** copyWithin of the same bytes into another place of the buffer: a copy's own cost. */
  copyGbps: number;
}

export interface ChecksumBenchResult {
  wasmAvailable: boolean;
  rows: ChecksumBenchRow[];
}

function gbps(bytes: number, ms: number): number {
  return (bytes * 8) / (ms * 1e6);
}

function time(run: () => void, budgetMs: number): number {
  const started = performance.now();
  let rounds = 0;
  while (performance.now() - started < budgetMs) {
    run();
    rounds++;
  }
  return (performance.now() - started) / rounds;
}

/** Sums `length` bytes at offsets 0..63 (odd ones included) over and over. */
export function checksumBench(
  options: { lengths?: number[]; budgetMs?: number } = {},
): ChecksumBenchResult {
  const lengths = options.lengths ?? [64, 576, 1448, 9000, 65_535];
  const budgetMs = options.budgetMs ?? 300;
  const memory = packetMemory(4 * 65_536);
  for (let i = 0; i < memory.length; i++) memory[i] = (i * 2654435761) >>> 24;
  const rows: ChecksumBenchRow[] = [];
  let sink = 0;
  for (const length of lengths) {
    const per = 64;
    const js = () => {
      for (let o = 0; o < per; o++) sink ^= onesComplementSumJs(memory, o, length);
    };
    const wasm = () => {
      for (let o = 0; o < per; o++) sink ^= onesComplementSum(memory, o, length);
    };
    const copy = () => {
      for (let o = 0; o < per; o++) memory.copyWithin(2 * 65_536 + o, o, o + length);
    };
    // Alternating rounds, best of three each: the machine is shared.
    const jsMs: number[] = [];
    const wasmMs: number[] = [];
    const copyMs: number[] = [];
    for (let round = 0; round < 3; round++) {
      jsMs.push(time(js, budgetMs / 3));
      wasmMs.push(time(wasm, budgetMs / 3));
      copyMs.push(time(copy, budgetMs / 3));
    }
    rows.push({
      length,
      jsGbps: gbps(per * length, Math.min(...jsMs)),
      wasmGbps: gbps(per * length, Math.min(...wasmMs)),
      copyGbps: gbps(per * length, Math.min(...copyMs)),
    });
  }
  if (sink === 0.5) console.log(sink); // keeps the sums alive
  return { wasmAvailable: wasmChecksumAvailable(), rows };
}

if (import.meta.main) {
  const result = checksumBench();
  console.log(`WebAssembly SIMD available: ${result.wasmAvailable}`);
  for (const row of result.rows) {
    console.log(
      `  ${String(row.length).padStart(6)} B  JS ${row.jsGbps.toFixed(1).padStart(6)} Gbit/s  ` +
        `wasm SIMD ${row.wasmGbps.toFixed(1).padStart(6)} Gbit/s (${
          (row.wasmGbps / row.jsGbps).toFixed(1)
        } ×)  a copy ${row.copyGbps.toFixed(1).padStart(6)} Gbit/s`,
    );
  }
}
