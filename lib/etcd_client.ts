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
import {
  cancelCode,
  type GatewayError,
  gatewayError,
  type KeyValue,
  parseKv,
  parseWatchLine,
  type RawKv,
  toBase64,
  type WatchResponse,
} from "./etcd_gateway.ts";
import { Backoff, sleep } from "./backoff.ts";
import { UsageError } from "./errors.ts";
import { log } from "./log.ts";

export type { KeyValue, WatchEvent, WatchResponse } from "./etcd_gateway.ts";
export { fromBase64, prefixEnd, toBase64 } from "./etcd_gateway.ts";

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

const REQUEST_TIMEOUT_MS = 5000;
/** The longest watch response line accepted (etcd's own are far below it). */
export const MAX_WATCH_LINE_CHARS = 64 * 1024 * 1024;
/** Retries of a request an election refused (about 12 s in all, the first within 100 ms). */
const MAX_TRANSIENT_RETRIES = 15;
const TRANSIENT_BACKOFF = { baseMs: 100, capMs: 2_000 };
/**
 * A watch asks etcd for progress this often, and is given up as silent (the member or the
 * path to it is gone, though the connection looks open) when nothing came for
 * WATCH_SILENCE_MS: a silent watch is moved to another endpoint within
 * WATCH_PROGRESS_MS + WATCH_SILENCE_MS (15 s).
 */
export const WATCH_PROGRESS_MS = 5_000;
export const WATCH_SILENCE_MS = 10_000;
/**
 * Asks etcd to refuse the call when the member has no leader, and to cancel a watch when
 * it loses its leader (etcd's require-leader metadata, through the gateway's header):
 * a member cut off from its quorum would otherwise serve a watch that never moves.
 */
const REQUIRE_LEADER = { "grpc-metadata-hasleader": "true" };
const encoder = new TextEncoder();

export interface EtcdClientTuning {
  /** The waits between retries of a refused request (the bench compares fixed delays). */
  readonly transientBackoff?: () => Backoff;
}

export class EtcdClient {
  readonly options: EtcdOptions;
  readonly #endpoints: string[];
  readonly #http: Deno.HttpClient | undefined;
  readonly #transientBackoff: () => Backoff;
  #current = 0;
  #token: string | undefined;
  #closed = new AbortController();

  constructor(options: EtcdOptions, tuning: EtcdClientTuning = {}) {
    this.options = options;
    this.#transientBackoff = tuning.transientBackoff ?? (() => new Backoff(TRANSIENT_BACKOFF));
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
   * for each response. Resolves when the stream ends (cancel or abort); throws when it
   * breaks, with the endpoint moved on when the member was at fault (no leader, silent,
   * unreachable). The caller decides where to resume. An expired token is renewed once.
   */
  async watch(
    options: { key: string; rangeEnd?: string; startRevision: string; signal: AbortSignal },
    onResponse: (response: WatchResponse) => void,
  ): Promise<void> {
    try {
      return await this.#watchOnce(options, onResponse);
    } catch (error) {
      if (!this.#mayLogInAgain(error)) throw error;
      return await this.#watchOnce(options, onResponse);
    }
  }

  async #watchOnce(
    options: { key: string; rangeEnd?: string; startRevision: string; signal: AbortSignal },
    onResponse: (response: WatchResponse) => void,
  ): Promise<void> {
    const endpoint = this.#endpoints[this.#current];
    const silent = new AbortController();
    const signal = AbortSignal.any([options.signal, this.#closed.signal, silent.signal]);
    const wentSilent = () => silent.signal.aborted && !options.signal.aborted;
    // The request body stays open: progress requests go up the same stream. etcd's gateway
    // answers such a stream only when the request says "Expect: 100-continue" (without it
    // the response never started, on etcd 3.4 and this Deno).
    let send: (message: unknown) => void = () => {};
    let endRequest = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let open = true;
        send = (message) => {
          if (open) controller.enqueue(encoder.encode(JSON.stringify(message) + "\n"));
        };
        endRequest = () => {
          if (!open) return;
          open = false;
          try {
            controller.close();
          } catch { /* the fetch cancelled it */ }
        };
      },
      cancel() {
        send = () => {};
      },
    });
    send({
      create_request: {
        key: toBase64(options.key),
        ...(options.rangeEnd !== undefined ? { range_end: toBase64(options.rangeEnd) } : {}),
        start_revision: options.startRevision,
        progress_notify: true,
      },
    });
    // An abort ends the request body too: a fetch still sending it would otherwise wait.
    signal.addEventListener("abort", () => endRequest(), { once: true });
    let heardAt = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - heardAt > WATCH_SILENCE_MS) silent.abort();
      else send({ progress_request: {} });
    }, WATCH_PROGRESS_MS);
    try {
      let response: Response;
      try {
        response = await fetch(`${endpoint}/v3/watch`, {
          method: "POST",
          headers: {
            ...await this.#authorizedHeaders(endpoint),
            ...REQUIRE_LEADER,
            expect: "100-continue",
          },
          body,
          signal,
          client: this.#http,
        });
      } catch (error) {
        if (error instanceof EtcdResponseError) throw error;
        this.#moveOn();
        throw new EtcdUnavailableError(describeEtcdError(error, this.options), { cause: error });
      }
      if (!response.ok || !response.body) {
        const text = await response.text().catch(() => "");
        throw this.#refusal(
          gatewayError(text, response.status) ??
            { message: `HTTP ${response.status}`, code: undefined, httpStatus: response.status },
        );
      }
      await this.#readWatch(response.body, endpoint, signal, (line) => {
        heardAt = Date.now();
        const parsed = parseWatchLine(line);
        if (!("events" in parsed)) throw this.#refusal(parsed);
        const refused = parsed.canceled ? cancelCode(parsed.cancelReason) : undefined;
        if (refused !== undefined) {
          throw this.#refusal({ message: parsed.cancelReason, code: refused, httpStatus: 200 });
        }
        // The answers to progress requests (watch id -1) are this watcher's progress too:
        // etcd sends one only when every watcher of the stream has caught up.
        onResponse(parsed);
        // A cancelled watcher ends the stream: the open request body would keep it alive.
        return parsed.canceled ? "end" : undefined;
      });
    } catch (error) {
      if (!wentSilent()) throw error;
    } finally {
      clearInterval(watchdog);
      endRequest();
    }
    if (wentSilent()) {
      this.#moveOn();
      throw new EtcdUnavailableError(
        `etcd at ${endpoint}: the watch heard nothing for ${WATCH_SILENCE_MS / 1000} s; moving on`,
      );
    }
  }

  /**
   * Calls `onLine` for each line of a watch stream. Only the new chunk is searched for
   * line ends, and a line may not grow past MAX_WATCH_LINE_CHARS: a server that never
   * ends one cannot make the agent hold (or rescan) an unbounded buffer. The last line
   * of a stream that breaks (etcd's error) may come without a line end.
   */
  async #readWatch(
    stream: ReadableStream<Uint8Array>,
    endpoint: string,
    signal: AbortSignal,
    onLine: (line: string) => "end" | void,
  ): Promise<void> {
    let pending = "";
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    // An abort does not always reach a body read under way (a streamed request body is
    // still open): cancelling the reader ends it for sure.
    const stop = () => reader.cancel().catch(() => {});
    signal.addEventListener("abort", stop, { once: true });
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) {
          if (pending.trim()) onLine(pending.trim());
          return;
        }
        let start = 0;
        let newline: number;
        while ((newline = value.indexOf("\n", start)) >= 0) {
          const line = (pending + value.slice(start, newline)).trim();
          pending = "";
          start = newline + 1;
          if (line && onLine(line) === "end") return;
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
      signal.removeEventListener("abort", stop);
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

  /**
   * After a long outage: returns once some endpoint answers `GET /version` again, and then
   * only after a random part of `spreadMs`. etcd accepts connections a while before it
   * serves them and answers everything held meanwhile at once; /version, which it answers
   * without touching its store, takes that wait instead of the fleet's real requests, and
   * the spread that follows starts when etcd serves.
   */
  async untilAnswering(spreadMs: number, signal: AbortSignal): Promise<void> {
    const answers = async (endpoint: string) => {
      try {
        const response = await fetch(`${endpoint}/version`, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(3_000)]),
          client: this.#http,
        });
        await response.body?.cancel();
        return response.ok;
      } catch {
        return false;
      }
    };
    while (!signal.aborted && !(await Promise.all(this.#endpoints.map(answers))).some(Boolean)) {
      await sleep(500 + Math.random() * 1000, signal);
    }
    await sleep(Math.random() * spreadMs, signal);
  }

  // ---- transport -----------------------------------------------------------------

  /**
   * POSTs a request to the current endpoint, moving on to the next endpoint when one
   * cannot be reached or has no leader, retrying (with backoff) what an election refused
   * and logging in again once when the token expired. Throws EtcdUnavailableError when
   * no endpoint answers, EtcdResponseError when etcd refuses.
   */
  async call<T = unknown>(path: string, body: unknown): Promise<T> {
    try {
      return await this.#callOnce<T>(path, body);
    } catch (error) {
      if (!this.#mayLogInAgain(error)) throw error;
      return await this.#callOnce<T>(path, body);
    }
  }

  async #callOnce<T>(path: string, body: unknown): Promise<T> {
    let lastError: unknown;
    let transientRetries = 0;
    const backoff = this.#transientBackoff();
    for (let attempt = 0; attempt < this.#endpoints.length; attempt++) {
      const endpoint = this.#endpoints[this.#current];
      let status: number;
      let text: string;
      try {
        const response = await fetch(`${endpoint}${path}`, {
          method: "POST",
          headers: { ...await this.#authorizedHeaders(endpoint), ...REQUIRE_LEADER },
          body: JSON.stringify(body),
          signal: AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), this.#closed.signal]),
          client: this.#http,
        });
        status = response.status;
        text = await response.text();
      } catch (error) {
        if (error instanceof EtcdResponseError) throw error;
        lastError = error;
        this.#moveOn();
        continue;
      }
      const failure = gatewayError(text, status);
      if (!failure) {
        const parsed = JSON.parse(text);
        return (parsed.result ?? parsed) as T;
      }
      const error = this.#refusal(failure);
      const retry = error.transient && transientRetries++ < MAX_TRANSIENT_RETRIES;
      // A member that cannot serve was passed over: the next endpoint may do better.
      if (error.memberUnavailable) lastError = error;
      else if (!retry) throw error;
      if (retry) {
        // An election in progress: the same request will do in a moment.
        lastError = error;
        attempt--;
        await sleep(backoff.next(), this.#closed.signal);
      }
    }
    throw new EtcdUnavailableError(describeEtcdError(lastError, this.options), {
      cause: lastError,
    });
  }

  /** An expired (or missing) token on a client that can log in: forget it, try once more. */
  #mayLogInAgain(error: unknown): boolean {
    if (!(error instanceof EtcdResponseError) || !error.unauthenticated) return false;
    if (!this.options.username || this.#token === undefined) return false;
    log.debug("etcd token refused; logging in again", { reason: error.message });
    this.#token = undefined;
    return true;
  }

  /** etcd's refusal as an error; a member that cannot serve (no leader, going away) is passed over. */
  #refusal(failure: GatewayError): EtcdResponseError {
    const error = new EtcdResponseError(failure.message, failure.httpStatus, failure.code);
    if (error.memberUnavailable) this.#moveOn();
    return error;
  }

  #moveOn(): void {
    this.#current = (this.#current + 1) % this.#endpoints.length;
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
      const failure = gatewayError(text, response.status);
      if (failure) throw this.#refusal(failure);
      this.#token = JSON.parse(text).token;
    }
    return this.#token
      ? { "content-type": "application/json", authorization: this.#token }
      : { "content-type": "application/json" };
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
