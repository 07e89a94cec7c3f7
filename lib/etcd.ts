/**
 * The etcd connection settings (built from the flags in lib/etcd_flags.ts), and etcd
 * failures turned into one line that names the endpoint and the fix.
 */
import { OverlayError, UsageError } from "./errors.ts";
import { GRPC } from "./etcd_gateway.ts";

export interface EtcdOptions {
  readonly endpoints: string[];
  readonly prefix: string;
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly username?: string;
  readonly password?: string;
}

/** An error etcd answered with (as opposed to not answering at all). */
export class EtcdResponseError extends Error {
  /** The HTTP status of the answer (a streamed error carries its own). */
  readonly status: number;
  /** The gRPC status code, when the answer named one. */
  readonly code: number | undefined;
  constructor(message: string, status: number, code?: number) {
    super(message);
    this.name = "EtcdResponseError";
    this.status = status;
    this.code = code;
  }

  /** An election or an overloaded member: the same request will do in a moment. */
  get transient(): boolean {
    return /leader changed|no leader|request timed out|too many requests/i.test(this.message);
  }

  /** This member cannot serve now (no leader, going away): another member may. */
  get memberUnavailable(): boolean {
    return this.status === 502 || this.status === 503 || this.code === GRPC.UNAVAILABLE;
  }

  /** The token expired or was never given: logging in again may cure it. */
  get unauthenticated(): boolean {
    return this.status === 401 || this.code === GRPC.UNAUTHENTICATED ||
      /invalid auth token|user name is empty/i.test(this.message);
  }
}

/** etcd could not be reached on any endpoint. */
export class EtcdUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EtcdUnavailableError";
  }
}

/** Turns an etcd client error into one line naming the endpoints and the likely fix. */
export function describeEtcdError(error: unknown, options: EtcdOptions): string {
  const where = `etcd at ${options.endpoints.join(",")}`;
  let text = "";
  // fetch says only "fetch failed"; the reason is in the cause chain.
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 5; depth++) {
    text += (text ? ": " : "") + (e instanceof Error ? e.message : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  if (/ECONNREFUSED|No connection established|connection refused/i.test(text)) {
    return `${where}: connection refused (is etcd running? see --etcd-endpoints)`;
  }
  const tls = options.endpoints.some((e) => e.startsWith("https:")) || Boolean(options.caFile);
  if (tls && /connection closed|connection reset|unexpected eof|broken pipe/i.test(text)) {
    return `${where}: TLS failed: the server closed the connection (it may require a client certificate) ` +
      `(check --etcd-cafile, --etcd-certfile, --etcd-keyfile)`;
  }
  if (/certificate|SSL|TLS|handshake|alert/i.test(text)) {
    return `${where}: TLS failed: ${
      firstLine(text)
    } (check --etcd-cafile, --etcd-certfile, --etcd-keyfile)`;
  }
  if (/^404 page not found/i.test(text)) {
    // 2380 is etcd's peer port by convention: it answers HTTP with 404 too.
    const fix = options.endpoints.some((endpoint) => /:2380\/?$/.test(endpoint))
      ? "2380 is etcd's peer port: give its client port, 2379, in --etcd-endpoints"
      : "start etcd with --enable-grpc-gateway=true, its default";
    return `${where}: 404 page not found: the agent talks to etcd through its JSON gateway, ` +
      `which does not answer there (${fix})`;
  }
  if (/CommonName of client sending a request against gateway/i.test(text)) {
    return `${where}: with auth on, etcd's JSON gateway refuses a client certificate that ` +
      `has a CommonName (give --etcd-certfile one without a CN, and the user with --etcd-username)`;
  }
  if (/user name is empty/i.test(text)) {
    return `${where}: etcd requires authentication (give --etcd-username and --etcd-password)`;
  }
  if (/permission denied/i.test(text)) {
    return `${where}: permission denied (the etcd user needs read and write on ${options.prefix}/)`;
  }
  if (/authentication|invalid auth|user name/i.test(text)) {
    return `${where}: authentication failed (check --etcd-username and --etcd-password)`;
  }
  if (/DEADLINE_EXCEEDED|timed out|timeout/i.test(text)) {
    return `${where}: timed out (is the endpoint reachable? see --etcd-endpoints)`;
  }
  // The client's own errors already name the endpoints.
  const line = firstLine(text);
  return line.startsWith("etcd at ") ? line : `${where}: ${line}`;
}

/** Wraps an etcd failure as an OverlayError with the one-line description. */
export function etcdFailure(error: unknown, options: EtcdOptions): OverlayError {
  if (error instanceof OverlayError || error instanceof UsageError) return error as OverlayError;
  if (error instanceof EtcdUnavailableError) {
    return new OverlayError(error.message, { cause: error });
  }
  return new OverlayError(describeEtcdError(error, options), { cause: error });
}

function firstLine(text: string): string {
  return text.split("\n")[0].replace(/^fetch failed: /, "");
}
