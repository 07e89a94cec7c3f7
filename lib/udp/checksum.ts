/**
 * The ones'-complement sum of RFC 1071 that every checksum of the udp data path uses, in
 * two implementations that return the same numbers:
 * - onesComplementSumJs: plain JS, eight bytes per turn of the loop; works on any buffer;
 * - a WebAssembly SIMD routine (lib/udp/checksum.wat, 64 bytes per turn), which can only
 *   read its own linear memory. Packet buffers that the data path checksums are therefore
 *   allocated inside one (packetMemory): each gets a WebAssembly.Memory of its own, fixed
 *   in size (it never grows, so the ArrayBuffer is never detached and pointers the kernel
 *   holds stay valid), and an instance of the module over it. No byte is copied.
 * onesComplementSum picks the routine: WebAssembly for ranges of at least WASM_MIN_LENGTH
 * bytes in such a buffer, JS otherwise (short headers, other buffers, or a runtime without
 * WebAssembly SIMD). The module's bytes live in lib/udp/checksum_wasm.ts, so `deno
 * compile`'s single binary carries them.
 */
import { CHECKSUM_WASM_BASE64 } from "./checksum_wasm.ts";

/**
 * Below this many bytes the call into WebAssembly costs more than it saves: where the two
 * break even was measured with bench/checksum_bench.ts (the README keeps its figures). An
 * IPv4 header (20 bytes) stays in JS.
 */
export const WASM_MIN_LENGTH = 40;

type WasmSum = (pointer: number, length: number, initial: number) => number;

let checksumModule: WebAssembly.Module | null | undefined;
/** The buffers made by packetMemory and their instances' sum functions, in step. */
const wasmBuffers: ArrayBufferLike[] = [];
const wasmSums: WasmSum[] = [];

function compiled(): WebAssembly.Module | null {
  if (checksumModule !== undefined) return checksumModule;
  try {
    const bytes = Uint8Array.from(atob(CHECKSUM_WASM_BASE64), (c) => c.charCodeAt(0));
    checksumModule = new WebAssembly.Module(bytes);
  } catch {
    checksumModule = null; // no WebAssembly, or no SIMD: the JS routine serves
  }
  return checksumModule;
}

/** True when this runtime runs the WebAssembly SIMD routine. */
export function wasmChecksumAvailable(): boolean {
  return compiled() !== null;
}

/**
 * A zeroed buffer of `size` bytes that onesComplementSum sums with WebAssembly SIMD, or a
 * plain Uint8Array where WebAssembly SIMD is missing (or `wasm` is false). Made once, off
 * the hot path: each call makes a memory and an instance.
 */
export function packetMemory(size: number, options: { wasm?: boolean } = {}): Uint8Array<
  ArrayBuffer
> {
  const module = options.wasm === false ? null : compiled();
  if (!module) return new Uint8Array(size);
  const pages = Math.max(1, Math.ceil(size / 65_536));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  // Not shared: the buffer is an ArrayBuffer (fixed size, so never detached).
  const buffer = memory.buffer as ArrayBuffer;
  wasmBuffers.push(buffer);
  wasmSums.push(instance.exports.sum as WasmSum);
  return new Uint8Array(buffer, 0, size);
}

/**
 * The ones'-complement sum of 16-bit words, folded (not yet inverted). In WebAssembly SIMD
 * for a long range of a packetMemory buffer; else onesComplementSumJs.
 */
export function onesComplementSum(
  bytes: Uint8Array,
  offset: number,
  length: number,
  initial = 0,
): number {
  if (length >= WASM_MIN_LENGTH) {
    const buffer = bytes.buffer;
    for (let i = 0; i < wasmBuffers.length; i++) {
      if (wasmBuffers[i] === buffer) return wasmSums[i](bytes.byteOffset + offset, length, initial);
    }
  }
  return onesComplementSumJs(bytes, offset, length, initial);
}

/**
 * The ones'-complement sum in plain JS, eight bytes per turn of the loop. The reference
 * the WebAssembly routine is fuzzed against, and the fallback.
 */
export function onesComplementSumJs(
  bytes: Uint8Array,
  offset: number,
  length: number,
  initial = 0,
): number {
  let sum = initial;
  let i = offset;
  const end8 = offset + (length & ~7);
  for (; i < end8; i += 8) {
    sum += ((bytes[i] << 8) | bytes[i + 1]) + ((bytes[i + 2] << 8) | bytes[i + 3]) +
      ((bytes[i + 4] << 8) | bytes[i + 5]) + ((bytes[i + 6] << 8) | bytes[i + 7]);
  }
  const end2 = offset + (length & ~1);
  for (; i < end2; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (length & 1) sum += bytes[offset + length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return sum;
}
