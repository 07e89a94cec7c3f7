/**
 * Text from etcd (keys, backend types, reasons quoting them) is printed by `leases`,
 * `status` and the log, often straight to a terminal: control characters and bidi
 * overrides in it are shown escaped (`\u001b`), so no value can move the cursor, change
 * the title or reorder what an operator reads.
 */

// C0, DEL, C1 controls, and the bidi embedding, override and isolate marks.
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

// What JSON.stringify leaves raw in a string (it escapes C0 controls itself).
const RAW_IN_JSON = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `value` as indented JSON in which no character can act on a terminal: what JSON.stringify
 * leaves raw is \u-escaped too, so the text still reads back as exactly `value`.
 */
export function printableJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    RAW_IN_JSON,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** `text` with every control character shown as a \u escape. */
export function printable(text: string): string {
  return text.replace(
    UNPRINTABLE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** True when `text` has nothing `printable` would escape. */
export function isPrintable(text: string): boolean {
  UNPRINTABLE.lastIndex = 0;
  return !UNPRINTABLE.test(text);
}

/** A copy of a JSON value with every string made printable (see printable). */
export function printableDeep<T>(value: T): T {
  if (typeof value === "string") return printable(value) as T;
  if (Array.isArray(value)) return value.map(printableDeep) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) => [printable(key), printableDeep(inner)]),
    ) as T;
  }
  return value;
}
