/**
 * The etcd connection: endpoints, TLS and auth from flags, reconnect policy, and
 * errors turned into one line that names the endpoint and the fix.
 */
import { Etcd3, isRecoverableError } from "etcd3";
import { circuitBreaker, ConsecutiveBreaker, handleWhen, retry } from "cockatiel";
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
    password: optional("etcd-password"),
  };
  if (Boolean(options.certFile) !== Boolean(options.keyFile)) {
    throw new UsageError(`--etcd-certfile and --etcd-keyfile go together (give both or neither)`);
  }
  if (Boolean(options.username) !== Boolean(options.password)) {
    throw new UsageError(`--etcd-username and --etcd-password go together (give both or neither)`);
  }
  return options;
}

/** Re-establish a broken watch stream every 500 ms (the default backs off to 30 s). */
const WATCH_RETRY = { duration: 500, next: () => WATCH_RETRY };

/** Opens a client. Nothing is sent until the first call. Throws UsageError for unreadable TLS files. */
export function connectEtcd(options: EtcdOptions): Etcd3 {
  const tls = options.caFile || options.certFile ||
    options.endpoints.some((e) => e.startsWith("https:"));
  const hosts = options.endpoints.map((e) => tls ? e.replace(/^http:/, "https:") : e);
  return new Etcd3({
    hosts,
    dialTimeout: 3000,
    credentials: tls
      ? {
        rootCertificate: readTlsFile("etcd-cafile", options.caFile) ?? new Uint8Array(),
        privateKey: readTlsFile("etcd-keyfile", options.keyFile),
        certChain: readTlsFile("etcd-certfile", options.certFile),
      } as never
      : undefined,
    auth: options.username
      ? { username: options.username, password: options.password! }
      : undefined,
    grpcOptions: {
      // A 60,000-lease listing is ~5 MB; grpc's default cap is 4 MB.
      "grpc.max_receive_message_length": 256 * 1024 * 1024,
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 1000,
    },
    faultHandling: {
      // Fail over to the next endpoint quickly; the caller decides how long to keep trying.
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: 1000,
          breaker: new ConsecutiveBreaker(2),
        }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: options.endpoints.length }),
      watchBackoff: WATCH_RETRY,
    },
  });
}

function readTlsFile(flag: FlagName, path: string | undefined): Uint8Array | undefined {
  if (!path) return undefined;
  try {
    return Deno.readFileSync(path);
  } catch (error) {
    throw new UsageError(
      `--${flag} ${JSON.stringify(path)}: ${(error as Error).message} (give a readable PEM file)`,
    );
  }
}

/** Turns an etcd client error into one line naming the endpoints and the likely fix. */
export function describeEtcdError(error: unknown, options: EtcdOptions): string {
  const where = `etcd at ${options.endpoints.join(",")}`;
  const text = error instanceof Error ? error.message : String(error);
  if (/ECONNREFUSED|No connection established|connection refused/i.test(text)) {
    return `${where}: connection refused (is etcd running? see --etcd-endpoints)`;
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
  return new OverlayError(describeEtcdError(error, options), { cause: error });
}

function firstLine(text: string): string {
  return text.split("\n")[0].replace(/^\d+ [A-Z_]+: /, "");
}
