/**
 * A small etcd v3 client over etcd's JSON gateway (`POST /v3/kv/range`, `/v3/watch`, …),
 * on Deno's built-in fetch.
 *
 * Why not npm:etcd3, which the design card names: loading it (grpc-js, proto-loader and
 * the parsing of etcd's .proto files) took 255–284 ms and 37 MB of RSS on this machine,
 * before any request. The agent's targets are ready ≤ 300 ms after `overlay run` and
 * RSS ≤ 80 MB; with etcd3 the agent measured 530–600 ms to ready and 91 MB. This client
 * adds neither. npm:etcd3 stays in the tests, as an independent client that checks what
 * the agent writes.
 *
 * The gateway speaks etcd's protobuf messages as JSON: bytes are base64, 64-bit
 * integers are decimal strings, and fields with default values (false, 0, PUT) are left
 * out. Endpoints are tried in turn: a request that cannot connect moves on to the next.
 */
import {
  describeEtcdError,
  type EtcdOptions,
  EtcdResponseError,
  EtcdUnavailableError,
} from "./etcd.ts";
import { UsageError } from "./errors.ts";
import { log } from "./log.ts";

export interface KeyValue {
  readonly key: string;
  /** The value as UTF-8 text (etcd values here are JSON). */
  readonly value: string;
  /** etcd lease ID as a decimal string; "0" when the key has none. */
  readonly lease: string;
  readonly modRevision: string;
  readonly createRevision: string;
  readonly version: string;
}

export interface RangeResult {
  readonly kvs: KeyValue[];
  readonly more: boolean;
  readonly revision: string;
}

export type Compare =
  | { readonly key: string; readonly target: "VERSION"; readonly version: string }
  | { readonly key: string; readonly target: "MOD"; readonly modRevision: string };

export type Operation =
  | { readonly put: { readonly key: string; readonly value: string; readonly lease?: string } }
  | { readonly delete: { readonly key: string } };

export interface WatchEvent {
  readonly type: "PUT" | "DELETE";
  readonly kv: KeyValue;
}

export interface WatchResponse {
  readonly revision: string;
  readonly created: boolean;
  readonly canceled: boolean;
  readonly compactRevision: string;
  readonly cancelReason: string;
  readonly events: WatchEvent[];
}

const REQUEST_TIMEOUT_MS = 5000;
/** The longest watch response line accepted (etcd's own are far below it). */
export const MAX_WATCH_LINE_CHARS = 64 * 1024 * 1024;
/** etcd errors that an election causes and that clear up within a few seconds. */
const TRANSIENT = /leader changed|no leader|request timed out|too many requests/i;
const MAX_TRANSIENT_RETRIES = 15;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function toBase64(data: string | Uint8Array): string {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return (bytes as Uint8Array & { toBase64(): string }).toBase64();
}

export function fromBase64(text: string | undefined): Uint8Array {
  if (!text) return new Uint8Array();
  return (Uint8Array as unknown as { fromBase64(text: string): Uint8Array }).fromBase64(text);
}

/** The key just past every key that starts with `prefix`: the range end of a prefix. */
export function prefixEnd(prefix: string): string {
  const bytes = encoder.encode(prefix);
  bytes[bytes.length - 1]++;
  return decoder.decode(bytes);
}

/**
 * Base64 to text. Keys and lease values are nearly always ASCII, for which atob is
 * several times faster than TextDecoder (60,000 leases are read at every start).
 */
function decodeText(base64: string | undefined): string {
  if (!base64) return "";
  const binary = atob(base64);
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(binary) ? binary : decoder.decode(fromBase64(base64));
}

interface RawKv {
  key?: string;
  value?: string;
  lease?: string;
  mod_revision?: string;
  create_revision?: string;
  version?: string;
}

function parseKv(raw: RawKv): KeyValue {
  return {
    key: decodeText(raw.key),
    value: decodeText(raw.value),
    lease: raw.lease ?? "0",
    modRevision: raw.mod_revision ?? "0",
    createRevision: raw.create_revision ?? "0",
    version: raw.version ?? "0",
  };
}

export class EtcdClient {
  readonly options: EtcdOptions;
  readonly #endpoints: string[];
  readonly #http: Deno.HttpClient | undefined;
  #current = 0;
  #token: string | undefined;
  #closed = new AbortController();

  constructor(options: EtcdOptions) {
    this.options = options;
    const tls = Boolean(options.caFile || options.certFile) ||
      options.endpoints.some((e) => e.startsWith("https:"));
    this.#endpoints = options.endpoints.map((e) =>
      (tls ? e.replace(/^http:/, "https:") : e).replace(/\/+$/, "")
    );
    if (options.username && this.#endpoints.some((e) => e.startsWith("http:"))) {
      log.warn(
        "the etcd password and its token go over plain http:// (anyone on the path can read them); use https:// endpoints with --etcd-cafile",
        { endpoints: this.#endpoints.join(",") },
      );
    }
    if (tls) {
      const ca = readPem("etcd-cafile", options.caFile);
      // Deno adds caCerts to its root store instead of replacing it, so any publicly trusted
      // certificate for the etcd host name would pass. An empty DENO_TLS_CA_STORE, set before
      // the store is first used (it is made on first use), leaves only the CA given here.
      if (ca) Deno.env.set("DENO_TLS_CA_STORE", "");
      const cert = readPem("etcd-certfile", options.certFile);
      const key = readPem("etcd-keyfile", options.keyFile);
      this.#http = Deno.createHttpClient({
        ...(ca ? { caCerts: [ca] } : {}),
        ...(cert && key ? { cert, key } : {}),
      });
    }
  }

  close(): void {
    this.#closed.abort();
    this.#http?.close();
  }

  // ---- KV ------------------------------------------------------------------------

  async range(
    key: string,
    options: { rangeEnd?: string; limit?: number; revision?: string; keysOnly?: boolean } = {},
  ): Promise<RangeResult> {
    const response = await this.call<
      { kvs?: RawKv[]; more?: boolean; header: { revision: string } }
    >(
      "/v3/kv/range",
      {
        key: toBase64(key),
        ...(options.rangeEnd !== undefined ? { range_end: toBase64(options.rangeEnd) } : {}),
        ...(options.limit ? { limit: String(options.limit) } : {}),
        ...(options.revision ? { revision: options.revision } : {}),
        ...(options.keysOnly ? { keys_only: true } : {}),
      },
    );
    return {
      kvs: (response.kvs ?? []).map(parseKv),
      more: response.more === true,
      revision: response.header.revision,
    };
  }

  /** The value of one key as text; undefined when absent. */
  async get(key: string): Promise<string | undefined> {
    const { kvs } = await this.range(key);
    return kvs.length > 0 ? kvs[0].value : undefined;
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call("/v3/kv/put", {
      key: toBase64(key),
      value: toBase64(value),
      ...(lease && lease !== "0" ? { lease } : {}),
    });
  }

  /** One transaction: if every compare holds, run `success`. Returns whether it did. */
  /**
   * One transaction: `success` runs when every comparison holds. Returns the revision it
   * committed at (what a key it put now has as its mod revision), or undefined when a
   * comparison failed and nothing was written.
   */
  async txn(compare: Compare[], success: Operation[]): Promise<string | undefined> {
    const response = await this.call<{ succeeded?: boolean; header?: { revision?: string } }>(
      "/v3/kv/txn",
      {
        compare: compare.map((c) =>
          c.target === "VERSION"
            ? { key: toBase64(c.key), target: "VERSION", result: "EQUAL", version: c.version }
            : { key: toBase64(c.key), target: "MOD", result: "EQUAL", mod_revision: c.modRevision }
        ),
        success: success.map((op) =>
          "put" in op
            ? {
              request_put: {
                key: toBase64(op.put.key),
                value: toBase64(op.put.value),
                ...(op.put.lease && op.put.lease !== "0" ? { lease: op.put.lease } : {}),
              },
            }
            : { request_delete_range: { key: toBase64(op.delete.key) } }
        ),
        failure: [],
      },
    );
    return response.succeeded === true ? response.header?.revision ?? "0" : undefined;
  }

  // ---- leases --------------------------------------------------------------------

  async leaseGrant(ttlSeconds: number): Promise<string> {
    const response = await this.call<{ ID: string }>("/v3/lease/grant", {
      TTL: String(ttlSeconds),
    });
    return response.ID;
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call("/v3/lease/revoke", { ID: id });
  }

  /** Renews a lease to its full TTL; returns the TTL in seconds, 0 when the lease is gone. */
  async leaseKeepAlive(id: string): Promise<number> {
    const response = await this.call<{ result?: { TTL?: string }; TTL?: string }>(
      "/v3/lease/keepalive",
      { ID: id },
    );
    return Number(response.result?.TTL ?? response.TTL ?? 0);
  }

  /** Seconds a lease has left; -1 when it no longer exists. */
  async leaseTimeToLive(id: string): Promise<number> {
    const response = await this.call<{ TTL?: string }>("/v3/lease/timetolive", { ID: id });
    return Number(response.TTL ?? -1);
  }

  // ---- watch ---------------------------------------------------------------------

  /**
   * Opens a watch stream on [key, rangeEnd) from `startRevision` and calls `onResponse`
   * for each response. Resolves when the stream ends (error, cancel or abort); the
   * caller decides where to resume.
   */
  async watch(
    options: { key: string; rangeEnd?: string; startRevision: string; signal: AbortSignal },
    onResponse: (response: WatchResponse) => void,
  ): Promise<void> {
    const signal = AbortSignal.any([options.signal, this.#closed.signal]);
    const endpoint = this.#endpoints[this.#current];
    let response: Response;
    try {
      response = await fetch(`${endpoint}/v3/watch`, {
        method: "POST",
        headers: this.#headers(),
        body: JSON.stringify({
          create_request: {
            key: toBase64(options.key),
            ...(options.rangeEnd !== undefined ? { range_end: toBase64(options.rangeEnd) } : {}),
            start_revision: options.startRevision,
            progress_notify: true,
          },
        }),
        signal,
        client: this.#http,
      });
    } catch (error) {
      this.#current = (this.#current + 1) % this.#endpoints.length;
      throw new EtcdUnavailableError(describeEtcdError(error, this.options), { cause: error });
    }
    if (!response.ok || !response.body) {
      const text = await response.text().catch(() => "");
      throw new EtcdResponseError(errorMessage(text, response.status), response.status);
    }
    // One JSON response per line. Only the new chunk is searched for line ends, and a line
    // may not grow past MAX_WATCH_LINE_CHARS: a server that never ends one cannot make the
    // agent hold (or rescan) an unbounded buffer.
    let pending = "";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        let start = 0;
        let newline: number;
        while ((newline = value.indexOf("\n", start)) >= 0) {
          const line = (pending + value.slice(start, newline)).trim();
          pending = "";
          start = newline + 1;
          if (line) onResponse(parseWatchLine(line));
        }
        pending += value.slice(start);
        if (pending.length > MAX_WATCH_LINE_CHARS) {
          throw new EtcdResponseError(
            `watch response line longer than ${MAX_WATCH_LINE_CHARS} characters (is ${endpoint} etcd?)`,
            502,
          );
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  /**
   * True when some endpoint accepts a TCP connection (no etcd request is made): a cheap
   * way to notice, while waiting, that etcd is listening again.
   */
  async listening(timeoutMs = 1000): Promise<boolean> {
    const attempts = this.#endpoints.map(async (endpoint) => {
      const url = new URL(endpoint);
      const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
      const connecting = Deno.connect({ hostname: url.hostname.replace(/^\[|\]$/g, ""), port });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      });
      const conn = await Promise.race([connecting.catch(() => undefined), late]);
      clearTimeout(timer);
      if (!conn) {
        connecting.then((slow) => slow.close(), () => {});
        return false;
      }
      conn.close();
      return true;
    });
    return (await Promise.all(attempts)).some(Boolean);
  }

  // ---- transport -----------------------------------------------------------------

  /**
   * POSTs a request to the current endpoint, moving on to the next endpoint when one
   * cannot be reached. Throws EtcdUnavailableError when none answers, EtcdResponseError
   * when etcd refuses.
   */
  async call<T = unknown>(path: string, body: unknown): Promise<T> {
    let lastError: unknown;
    let transientRetries = 0;
    for (let attempt = 0; attempt < this.#endpoints.length; attempt++) {
      const endpoint = this.#endpoints[this.#current];
      let response: Response;
      try {
        response = await fetch(`${endpoint}${path}`, {
          method: "POST",
          headers: await this.#authorizedHeaders(endpoint),
          body: JSON.stringify(body),
          signal: AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), this.#closed.signal]),
          client: this.#http,
        });
      } catch (error) {
        if (error instanceof EtcdResponseError) throw error;
        lastError = error;
        this.#current = (this.#current + 1) % this.#endpoints.length;
        continue;
      }
      const text = await response.text();
      if (!response.ok) {
        if (response.status === 401 && this.#token) {
          this.#token = undefined; // expired token: authenticate again next time
        }
        const message = errorMessage(text, response.status);
        if (response.status === 503 || response.status === 502) {
          // No leader, or the member is going away: another member may do better.
          lastError = new Error(message);
          this.#current = (this.#current + 1) % this.#endpoints.length;
          if (!(TRANSIENT.test(message) && transientRetries++ < MAX_TRANSIENT_RETRIES)) continue;
          attempt--;
          await new Promise((resolve) => setTimeout(resolve, 200));
          continue;
        }
        if (TRANSIENT.test(message) && transientRetries++ < MAX_TRANSIENT_RETRIES) {
          // An election in progress: the same request will do in a moment.
          lastError = new Error(message);
          attempt--;
          await new Promise((resolve) => setTimeout(resolve, 200));
          continue;
        }
        throw new EtcdResponseError(message, response.status);
      }
      const parsed = JSON.parse(text);
      return (parsed.result ?? parsed) as T;
    }
    throw new EtcdUnavailableError(describeEtcdError(lastError, this.options), {
      cause: lastError,
    });
  }

  #headers(): Record<string, string> {
    return this.#token
      ? { "content-type": "application/json", authorization: this.#token }
      : { "content-type": "application/json" };
  }

  async #authorizedHeaders(endpoint: string): Promise<Record<string, string>> {
    if (this.options.username && !this.#token) {
      const response = await fetch(`${endpoint}/v3/auth/authenticate`, {
        method: "POST",
        body: JSON.stringify({ name: this.options.username, password: this.options.password }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        client: this.#http,
      });
      const text = await response.text();
      if (!response.ok) {
        throw new EtcdResponseError(errorMessage(text, response.status), response.status);
      }
      this.#token = JSON.parse(text).token;
    }
    return this.#headers();
  }
}

function parseWatchLine(line: string): WatchResponse {
  const parsed = JSON.parse(line);
  if (parsed.error) {
    throw new EtcdResponseError(
      parsed.error.message ?? JSON.stringify(parsed.error),
      parsed.error.http_code ?? 500,
    );
  }
  const result = parsed.result ?? {};
  return {
    revision: result.header?.revision ?? "0",
    created: result.created === true,
    canceled: result.canceled === true,
    compactRevision: result.compact_revision ?? "0",
    cancelReason: result.cancel_reason ?? "",
    events: (result.events ?? []).map((event: { type?: string; kv: RawKv }) => ({
      type: event.type === "DELETE" ? "DELETE" : "PUT",
      kv: parseKv(event.kv ?? {}),
    })),
  };
}

function errorMessage(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text);
    return parsed.message ?? parsed.error ?? `HTTP ${status}`;
  } catch {
    return text.trim() || `HTTP ${status}`;
  }
}

function readPem(flag: string, path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(
      `--${flag} ${JSON.stringify(path)}: ${(error as Error).message} (give a readable PEM file)`,
    );
  }
}
