/**
 * Command-line flags. Every flag has flannel's name where flannel has one and an
 * `OVERLAY_*` environment mirror (`--etcd-endpoints` ↔ `OVERLAY_ETCD_ENDPOINTS`);
 * a flag on the command line wins over the environment.
 */
import { parseArgs } from "node:util";
import { parseDuration } from "./duration.ts";
import { UsageError } from "./errors.ts";
import { parseIp4 } from "./ip.ts";

interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly default?: string;
  readonly help: string;
  /** Not mirrored from the environment (per-invocation switches such as --force). */
  readonly noEnv?: boolean;
}

const FLAG_SPECS = {
  "etcd-endpoints": {
    type: "string",
    default: "http://127.0.0.1:2379",
    help: "comma-separated etcd endpoints",
  },
  "etcd-prefix": { type: "string", default: "/coreos.com/network", help: "etcd key prefix" },
  "etcd-cafile": { type: "string", help: "CA certificate for etcd TLS" },
  "etcd-certfile": { type: "string", help: "client certificate for etcd TLS" },
  "etcd-keyfile": { type: "string", help: "client key for etcd TLS" },
  "etcd-username": { type: "string", help: "etcd user name" },
  "etcd-password": {
    type: "string",
    help: "etcd password (visible in the process list: prefer --etcd-password-file or the env)",
  },
  "etcd-password-file": { type: "string", help: "read the etcd password from this file" },
  "iface": {
    type: "string",
    help: "underlay interface, by name or IP (default: the default route's)",
  },
  "public-ip": { type: "string", help: "IP that peers reach this host on (default: the iface's)" },
  "subnet-file": {
    type: "string",
    default: "/run/flannel/subnet.env",
    help: "where to write the FLANNEL_* subnet file",
  },
  "state-dir": {
    type: "string",
    default: "/run/overlay",
    help: "where the daemon keeps its state for --health and wait",
  },
  "device": {
    type: "string",
    help: "name of the overlay device (default: overlay0 for udp)",
  },
  "bridge": {
    type: "string",
    help: "create or adopt this bridge with the subnet's first address (for LXC/Docker)",
  },
  "ip-masq": { type: "boolean", help: "masquerade traffic leaving the overlay" },
  "healthz-ip": { type: "string", default: "0.0.0.0", help: "address for /healthz and /readyz" },
  "healthz-port": { type: "string", default: "0", help: "port for /healthz and /readyz (0: off)" },
  "subnet-lease-ttl": { type: "string", default: "24h", help: "TTL of the subnet lease" },
  "subnet-lease-renew-margin": {
    type: "string",
    default: "60",
    help: "renew this long before expiry (minutes, or a duration like 30s)",
  },
  "log-level": { type: "string", default: "info", help: "debug, info, warn or error" },
  "log-format": { type: "string", default: "text", help: "text or json (one event per line)" },
  "timeout": { type: "string", default: "60s", help: "give up after this long", noEnv: true },
  "force": { type: "boolean", help: "allow a change that strands existing leases", noEnv: true },
  "file": { type: "string", help: "read the value from this file (- for stdin)", noEnv: true },
  "json": { type: "boolean", help: "print JSON", noEnv: true },
  "format": { type: "string", default: "opts", help: "opts, env or json", noEnv: true },
  "binary-url": { type: "string", help: "where hosts download the overlay binary", noEnv: true },
  "sha256": {
    type: "string",
    help: "SHA-256 of the binary, checked before it is installed",
    noEnv: true,
  },
  "binary": {
    type: "string",
    default: "/usr/local/bin/overlay",
    help: "path of the installed binary",
    noEnv: true,
  },
  "env-file": {
    type: "string",
    default: "/etc/overlay/overlay.env",
    help: "environment file the unit reads",
    noEnv: true,
  },
  "keep-lease": {
    type: "boolean",
    help: "cleanup: keep the lease in etcd (default: release it)",
    noEnv: true,
  },
  "help": { type: "boolean", help: "show this help", noEnv: true },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAG_SPECS;
export type FlagValues = Partial<Record<FlagName, string | boolean>>;

export const ETCD_FLAGS: FlagName[] = [
  "etcd-endpoints",
  "etcd-prefix",
  "etcd-cafile",
  "etcd-certfile",
  "etcd-keyfile",
  "etcd-username",
  "etcd-password",
  "etcd-password-file",
];
export const LOCATOR_FLAGS: FlagName[] = ["subnet-file", "state-dir"];

/** Every flag of `overlay run` (cleanup takes them all, as the README says). */
export const RUN_FLAGS: FlagName[] = [
  ...ETCD_FLAGS,
  "iface",
  "public-ip",
  "device",
  ...LOCATOR_FLAGS,
  "bridge",
  "ip-masq",
  "healthz-ip",
  "healthz-port",
  "subnet-lease-ttl",
  "subnet-lease-renew-margin",
  "log-level",
  "log-format",
];

/** The environment variable that mirrors a flag: `--ip-masq` → `OVERLAY_IP_MASQ`. */
export function envName(flag: FlagName): string {
  return "OVERLAY_" + flag.toUpperCase().replaceAll("-", "_");
}

/**
 * Parses `args` against the allowed flags of one command, filling values from
 * the environment and then from defaults. Throws UsageError for unknown flags,
 * missing values and surplus arguments.
 */
export function parseFlags(
  command: string,
  args: string[],
  allowed: FlagName[],
  options: { maxPositionals?: number } = {},
): { values: FlagValues; positionals: string[] } {
  const names = [...new Set<FlagName>([...allowed, "help"])];
  const parseOptions = Object.fromEntries(
    names.map((name) => [name, { type: FLAG_SPECS[name].type }]),
  );
  let parsed;
  try {
    parsed = parseArgs({ args, options: parseOptions, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message} (see: ${command} --help)`);
  }
  const values: FlagValues = {};
  for (const name of names) {
    const spec: FlagSpec = FLAG_SPECS[name];
    const given = (parsed.values as Record<string, string | boolean | undefined>)[name];
    const fromEnv = spec.noEnv ? undefined : Deno.env.get(envName(name));
    if (given !== undefined) values[name] = given;
    else if (fromEnv !== undefined && fromEnv !== "") {
      values[name] = spec.type === "boolean" ? parseEnvBoolean(name, fromEnv) : fromEnv;
    } else if (spec.default !== undefined) values[name] = spec.default;
  }
  const maxPositionals = options.maxPositionals ?? 0;
  if (!values.help && parsed.positionals.length > maxPositionals) {
    throw new UsageError(
      `${command}: unexpected argument ${JSON.stringify(parsed.positionals[maxPositionals])} ` +
        `(see: ${command} --help)`,
    );
  }
  return { values, positionals: parsed.positionals };
}

function parseEnvBoolean(name: FlagName, text: string): boolean {
  if (/^(1|true|yes|on)$/i.test(text)) return true;
  if (/^(0|false|no|off)$/i.test(text)) return false;
  throw new UsageError(
    `${envName(name)}=${JSON.stringify(text)} is not a boolean (use true or false)`,
  );
}

/** Help text for a command: a usage line, a description and its flags. */
export function helpText(usage: string, description: string, allowed: FlagName[]): string {
  const lines = [`Usage: ${usage}`, "", description, ""];
  const flags = [...new Set<FlagName>([...allowed, "help"])];
  if (flags.length > 0) lines.push("Flags:");
  for (const name of flags) {
    const spec: FlagSpec = FLAG_SPECS[name];
    const left = `  --${name}${spec.type === "string" ? " VALUE" : ""}`;
    const extra = [
      spec.default !== undefined ? `default ${spec.default}` : "",
      spec.noEnv ? "" : `env ${envName(name)}`,
    ].filter(Boolean).join(", ");
    lines.push(`${left.padEnd(36)} ${spec.help}${extra ? ` (${extra})` : ""}`);
  }
  return lines.join("\n");
}

/** A flag's string value, or a UsageError naming the flag when it is required and absent. */
export function stringFlag(values: FlagValues, name: FlagName): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") {
    throw new UsageError(`--${name} is required (or set ${envName(name)})`);
  }
  return value;
}

/** A duration flag in milliseconds; bare numbers in `bareUnit`. */
export function durationFlag(
  values: FlagValues,
  name: FlagName,
  bareUnit: "s" | "m" = "s",
): number {
  const text = stringFlag(values, name);
  const ms = parseDuration(text, bareUnit);
  if (ms === undefined || ms <= 0) {
    throw new UsageError(
      `--${name} ${JSON.stringify(text)} is not a duration (use e.g. 30s, 10m, 24h)`,
    );
  }
  return ms;
}

/** A TCP/UDP port flag; 0 allowed when `allowZero`. */
export function portFlag(values: FlagValues, name: FlagName, allowZero = false): number {
  const text = stringFlag(values, name);
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535 || (port === 0 && !allowZero)) {
    throw new UsageError(`--${name} ${JSON.stringify(text)} is not a port (use 1..65535)`);
  }
  return port;
}

/** An optional IPv4 address flag. */
export function ipFlag(values: FlagValues, name: FlagName): number | undefined {
  const text = values[name];
  if (typeof text !== "string" || text === "") return undefined;
  const ip = parseIp4(text);
  if (ip === undefined) {
    throw new UsageError(`--${name} ${JSON.stringify(text)} is not an IPv4 address`);
  }
  return ip;
}
