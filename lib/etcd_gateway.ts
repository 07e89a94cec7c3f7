/**
 * etcd's JSON gateway on the wire: etcd's protobuf messages as JSON (bytes in base64,
 * 64-bit integers as decimal strings, fields with default values left out), and the
 * shapes its errors take. Pure functions; the transport is lib/etcd_client.ts.
 *
 * The error shapes, as etcd 3.4 answers them (seen on this machine):
 *   unary call:          {"error":"etcdserver: no leader","message":"…","code":14}  (HTTP 503)
 *   streamed call:       {"error":{"grpc_code":14,"http_code":503,"message":"…","http_status":"…"}}
 *                        (keepalive and watch; as the whole body, or as the last line of a stream)
 *   watch refused:       {"result":{…,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = …"}}
 *   gateway turned off:  404 page not found  (plain text)
 */

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
  /** "-1" for the answer to a progress request, which belongs to no single watcher. */
  readonly watchId: string;
  readonly events: WatchEvent[];
}

/** gRPC status codes that the agent tells apart. */
export const GRPC = {
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  OUT_OF_RANGE: 11,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** An error etcd (or its gateway) answered, in one shape whatever shape it came in. */
export interface GatewayError {
  readonly message: string;
  /** The gRPC code; undefined when the answer carried none (a plain-text page). */
  readonly code: number | undefined;
  readonly httpStatus: number;
}

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

export interface RawKv {
  key?: string;
  value?: string;
  lease?: string;
  mod_revision?: string;
  create_revision?: string;
  version?: string;
}

export function parseKv(raw: RawKv): KeyValue {
  return {
    key: decodeText(raw.key),
    value: decodeText(raw.value),
    lease: raw.lease ?? "0",
    modRevision: raw.mod_revision ?? "0",
    createRevision: raw.create_revision ?? "0",
    version: raw.version ?? "0",
  };
}

/**
 * The error in a gateway answer, whatever its shape; undefined when `body` is no error
 * (a `result`, or a unary answer without an `error` field).
 */
export function gatewayError(body: string, httpStatus: number): GatewayError | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    // Not JSON: a plain-text page (the gateway turned off answers "404 page not found").
    if (httpStatus < 400) return undefined;
    return { message: body.trim() || `HTTP ${httpStatus}`, code: undefined, httpStatus };
  }
  if (typeof parsed !== "object" || parsed === null) {
    return httpStatus < 400
      ? undefined
      : { message: `HTTP ${httpStatus}`, code: undefined, httpStatus };
  }
  const { error, message, code } = parsed as { error?: unknown; message?: unknown; code?: unknown };
  if (typeof error === "object" && error !== null) {
    // A streamed call's error: nested, with its own codes.
    const nested = error as {
      message?: unknown;
      grpc_code?: unknown;
      http_code?: unknown;
    };
    return {
      message: typeof nested.message === "string" ? nested.message : JSON.stringify(error),
      code: typeof nested.grpc_code === "number" ? nested.grpc_code : undefined,
      httpStatus: typeof nested.http_code === "number" ? nested.http_code : httpStatus,
    };
  }
  if (error !== undefined || httpStatus >= 400) {
    return {
      message: typeof message === "string"
        ? message
        : typeof error === "string"
        ? error
        : `HTTP ${httpStatus}`,
      code: typeof code === "number" ? code : undefined,
      httpStatus,
    };
  }
  return undefined;
}

/** A watch cancelled for the reason a gRPC error would give: the code named in the text. */
export function cancelCode(reason: string): number | undefined {
  const name = /code = (\w+)/.exec(reason)?.[1];
  switch (name) {
    case "Unauthenticated":
      return GRPC.UNAUTHENTICATED;
    case "PermissionDenied":
      return GRPC.PERMISSION_DENIED;
    case "Unavailable":
      return GRPC.UNAVAILABLE;
    default:
      return undefined;
  }
}

/** One line of a watch stream: a response, or the error that ended the stream. */
export function parseWatchLine(line: string): WatchResponse | GatewayError {
  const error = gatewayError(line, 200);
  if (error) return error;
  const result = JSON.parse(line).result ?? {};
  return {
    revision: result.header?.revision ?? "0",
    created: result.created === true,
    canceled: result.canceled === true,
    compactRevision: result.compact_revision ?? "0",
    cancelReason: result.cancel_reason ?? "",
    watchId: result.watch_id ?? "0",
    events: (result.events ?? []).map((event: { type?: string; kv?: RawKv }) => ({
      type: event.type === "DELETE" ? "DELETE" : "PUT",
      kv: parseKv(event.kv ?? {}),
    })),
  };
}
