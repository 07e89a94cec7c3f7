/**
 * The etcd connection settings from flags (endpoints, prefix, TLS, auth), and etcd
 * failures turned into one line that names the endpoint and the fix.
 */
import { ETCD_FLAGS, type FlagName, type FlagValues, stringFlag } from "./flags.ts";
import { OverlayError, UsageError } from "./errors.ts";

export { ETCD_FLAGS };

export interface EtcdOptions {
  readonly endpoints: string[];
  readonly prefix: string;
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly username?: string;
  readonly password?: string;
}

/** Reads and checks the etcd flags. Throws UsageError. */
export function etcdOptionsFrom(values: FlagValues): EtcdOptions {
  const endpoints = stringFlag(values, "etcd-endpoints").split(",").map((e) => e.trim())
    .filter(Boolean);
  if (endpoints.length === 0) {
    throw new UsageError(`--etcd-endpoints is empty (use e.g. http://127.0.0.1:2379)`);
  }
  for (const endpoint of endpoints) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (!url || !/^https?:$/.test(url.protocol) || !url.hostname || url.pathname.length > 1) {
      throw new UsageError(
        `--etcd-endpoints ${
          JSON.stringify(endpoint)
        } is not an etcd URL (use e.g. http://127.0.0.1:2379)`,
      );
    }
  }
  let prefix = stringFlag(values, "etcd-prefix");
  if (!prefix.startsWith("/")) {
    throw new UsageError(`--etcd-prefix ${JSON.stringify(prefix)} must start with "/"`);
  }
  prefix = prefix.replace(/\/+$/, "");
  const optional = (name: FlagName) => (values[name] as string | undefined) || undefined;
  const options: EtcdOptions = {
    endpoints,
    prefix,
    caFile: optional("etcd-cafile"),
    certFile: optional("etcd-certfile"),
    keyFile: optional("etcd-keyfile"),
    username: optional("etcd-username"),
    password: optional("etcd-password") ?? readPasswordFile(optional("etcd-password-file")),
  };
  if (optional("etcd-password") && optional("etcd-password-file")) {
    throw new UsageError(`--etcd-password and --etcd-password-file: give one, not both`);
  }
  if (Boolean(options.certFile) !== Boolean(options.keyFile)) {
    throw new UsageError(`--etcd-certfile and --etcd-keyfile go together (give both or neither)`);
  }
  if (Boolean(options.username) !== Boolean(options.password)) {
    throw new UsageError(
      `--etcd-username and --etcd-password (or --etcd-password-file) go together (give both or neither)`,
    );
  }
  return options;
}

/** The password in a file (one line; a trailing newline is not part of it). */
function readPasswordFile(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return Deno.readTextFileSync(path).replace(/\r?\n$/, "");
  } catch (error) {
    throw new UsageError(
      `--etcd-password-file ${JSON.stringify(path)}: ${
        (error as Error).message
      } (give a readable file)`,
    );
  }
}

/** An error etcd answered with (as opposed to not answering at all). */
export class EtcdResponseError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = "EtcdResponseError";
    this.status = status;
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
  if (/authentication|permission denied|invalid auth|user name/i.test(text)) {
    return `${where}: authentication failed (check --etcd-username and --etcd-password)`;
  }
  if (/DEADLINE_EXCEEDED|timed out|timeout/i.test(text)) {
    return `${where}: timed out (is the endpoint reachable? see --etcd-endpoints)`;
  }
  return `${where}: ${firstLine(text)}`;
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
