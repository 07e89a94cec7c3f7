/**
 * Addresses of preallocated memory, for the structures the kernel reads (iovecs,
 * msghdrs) and for calls that take a pointer into the middle of a buffer. A buffer
 * whose address is handed out must stay referenced for as long as the kernel may use it:
 * a raw pointer does not keep it alive.
 */

/** The address of a buffer's first byte. */
export function addressOf(buffer: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/** A pointer `offset` bytes into `buffer` (made once, off the hot path). */
export function pointerInto(buffer: Uint8Array, offset: number): Deno.PointerValue {
  return Deno.UnsafePointer.create(addressOf(buffer) + BigInt(offset));
}
