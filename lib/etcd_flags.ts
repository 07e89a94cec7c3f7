/**
 * The etcd flags turned into connection settings, beside the flags themselves: the etcd
 * client below knows nothing of the command line.
 */
import type { EtcdOptions } from "./etcd.ts";
import { UsageError } from "./errors.ts";
import { type FlagName, type FlagValues, stringFlag } from "./flags.ts";

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
