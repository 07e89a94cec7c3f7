/**
 * A JSON value handed between the agent and its data-path Worker through shared memory,
 * so that neither side waits for the other: the Worker's loop blocks in poll() and never
 * runs an event loop turn that would deliver a postMessage.
 *
 * One writer, one reader, a sequence lock: the writer makes the sequence odd, writes the
 * length and the bytes, and makes it even again; the reader copies and keeps the copy
 * only when the sequence was even and unchanged around it. A reader that sees nothing new
 * (or a write in progress) keeps what it had and looks again on its next turn.
 *
 * Layout (Int32 words): [0] sequence, [1] length in bytes; bytes from offset 8.
 */

const HEADER = 8;

export class Mailbox {
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  #seen = 0;

  /** A new mailbox of `capacity` bytes, or one around a buffer from the other side. */
  constructor(bufferOrCapacity: SharedArrayBuffer | number) {
    this.buffer = typeof bufferOrCapacity === "number"
      ? new SharedArrayBuffer(HEADER + bufferOrCapacity)
      : bufferOrCapacity;
    this.#words = new Int32Array(this.buffer, 0, 2);
    this.#bytes = new Uint8Array(this.buffer, HEADER);
  }

  /** Publishes `value`. Throws when its JSON does not fit. */
  write(value: unknown): void {
    const encoded = new TextEncoder().encode(JSON.stringify(value));
    if (encoded.length > this.#bytes.length) {
      throw new Error(
        `mailbox: ${encoded.length} bytes do not fit in ${this.#bytes.length}`,
      );
    }
    const sequence = Atomics.load(this.#words, 0);
    Atomics.store(this.#words, 0, sequence + 1);
    this.#bytes.set(encoded);
    Atomics.store(this.#words, 1, encoded.length);
    Atomics.store(this.#words, 0, sequence + 2);
  }

  /** The value written since the last successful read, or undefined (nothing new yet). */
  read<T>(): T | undefined {
    const before = Atomics.load(this.#words, 0);
    if (before === this.#seen || (before & 1) !== 0) return undefined;
    const length = Atomics.load(this.#words, 1);
    if (length < 0 || length > this.#bytes.length) return undefined;
    const copy = this.#bytes.slice(0, length);
    if (Atomics.load(this.#words, 0) !== before) return undefined;
    this.#seen = before;
    return JSON.parse(new TextDecoder().decode(copy)) as T;
  }
}
