/**
 * Logging: one event per line on stderr, as text (`time LEVEL message key=value …`) or
 * JSON (`{"time":…,"level":…,"msg":…,key:value,…}`). Keys are stable so operators can
 * grep or parse them. Per-packet problems are never logged one line per packet: the data
 * path counts them and the agent logs a summary at most every 10 s.
 */

import { isPrintable, printable } from "./printable.ts";

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;

let threshold: number = LEVELS.info;
let json = false;

/** Chooses text or JSON lines. Returns false for an unknown format. */
export function setLogFormat(format: string): boolean {
  if (format !== "text" && format !== "json") return false;
  json = format === "json";
  return true;
}

/** Sets the lowest level that is printed. Returns false for an unknown level name. */
export function setLogLevel(level: string): boolean {
  if (!(level in LEVELS)) return false;
  threshold = LEVELS[level as LogLevel];
  return true;
}

function emit(level: LogLevel, message: string, fields: Record<string, unknown>): void {
  if (LEVELS[level] < threshold) return;
  if (json) {
    console.error(
      JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields }),
    );
    return;
  }
  let line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${printable(message)}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = typeof value === "string" ? value : JSON.stringify(value);
    // JSON quoting escapes control characters; bare values must not carry any.
    line += ` ${key}=${/[\s"=]/.test(text) || !isPrintable(text) ? JSON.stringify(text) : text}`;
  }
  console.error(printable(line));
}

export const log = {
  debug: (message: string, fields: Record<string, unknown> = {}) => emit("debug", message, fields),
  info: (message: string, fields: Record<string, unknown> = {}) => emit("info", message, fields),
  warn: (message: string, fields: Record<string, unknown> = {}) => emit("warn", message, fields),
  error: (message: string, fields: Record<string, unknown> = {}) => emit("error", message, fields),
};
