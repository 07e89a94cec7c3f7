/**
 * Command-line flags, as flanneld takes them so that its unit files and environment
 * files work unchanged:
 * - flanneld's names, meanings and defaults (v0.20, outside Kubernetes mode), written
 *   `--name value`, `--name=value`, `-name value` or `-name=value` (Go's flag syntax);
 *   booleans as `--ip-masq` or `--ip-masq=false`; `--iface` and `--iface-regex` repeat;
 * - every flag is also read from the environment: `OVERLAY_<NAME>`, then flanneld's
 *   `FLANNELD_<NAME>` (`--etcd-endpoints` ↔ `OVERLAY_ETCD_ENDPOINTS`,
 *   `FLANNELD_ETCD_ENDPOINTS`); the command line wins, then OVERLAY_*, then FLANNELD_*;
 * - flanneld's Kubernetes-mode flags are refused with one line: overlay leases in etcd only.
 * Errors are one line in the project's voice, naming the flag, the nearest known flag and
 * the command's help.
 */
import { parseDuration } from "./duration.ts";
import { UsageError } from "./errors.ts";
import { parseIp4 } from "./ip.ts";

interface FlagSpec {
  /** "strings": may be given more than once, each adding a value (flanneld's --iface). */
  readonly type: "string" | "boolean" | "strings";
  readonly default?: string | boolean;
  readonly help: string;
  /** Not mirrored from the environment (per-invocation switches such as --force). */
  readonly noEnv?: boolean;
}

const FLAG_SPECS = {
  "etcd-endpoints": {
    type: "string",
    default: "http://127.0.0.1:4001,http://127.0.0.1:2379",
    help: "comma-separated etcd endpoints",
  },
  "etcd-prefix": { type: "string", default: "/coreos.com/network", help: "etcd key prefix" },
  "etcd-cafile": { type: "string", help: "CA certificate for etcd TLS (only it is trusted)" },
  "etcd-certfile": { type: "string", help: "client certificate for etcd TLS" },
  "etcd-keyfile": { type: "string", help: "client key for etcd TLS" },
  "etcd-username": { type: "string", help: "etcd user name" },
  "etcd-password": {
    type: "string",
    help: "etcd password (visible in the process list: prefer --etcd-password-file or the env)",
  },
  "etcd-password-file": { type: "string", help: "read the etcd password from this file" },
  "iface": {
    type: "strings",
    help: "underlay interface by name or IP; repeat to try several in order",
  },
  "iface-regex": {
    type: "strings",
    help: "regex matched against interface IPs, then names; repeatable (after --iface)",
  },
  "iface-can-reach": {
    type: "string",
    help: "use the interface that routes to this IP (as `ip route get IP` says)",
  },
  "public-ip": { type: "string", help: "IP that peers reach this host on (default: the iface's)" },
  "public-ipv6": { type: "string", help: "IPv6 address that peers reach this host on" },
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
    help: "overlay device (default flanneld's: flannel0 for udp, flannel.<VNI> for vxlan)",
  },
  "bridge": {
    type: "string",
    help: "create or adopt this bridge with the subnet's first address (for LXC/Docker)",
  },
  "ip-masq": { type: "boolean", default: false, help: "masquerade traffic leaving the overlay" },
  "iptables-resync": {
    type: "string",
    default: "5",
    help: "re-check the iptables rules this often (seconds)",
  },
  "iptables-forward-rules": {
    type: "boolean",
    default: true,
    help:
      "accept forwarded traffic to and from the Network in FORWARD (--iptables-forward-rules=false: not)",
  },
  "healthz-ip": { type: "string", default: "0.0.0.0", help: "address for /healthz and /readyz" },
  "healthz-port": { type: "string", default: "0", help: "port for /healthz and /readyz (0: off)" },
  "subnet-lease-ttl": { type: "string", default: "24h", help: "TTL of the subnet lease" },
  "subnet-lease-renew-margin": {
    type: "string",
    default: "60",
    help: "renew this long before expiry (minutes, 1..1439, or a duration like 30s)",
  },
  "log-level": { type: "string", help: "debug, info, warn or error (default info)" },
  "log-format": { type: "string", default: "text", help: "text or json (one event per line)" },
  "v": { type: "string", default: "0", help: "flanneld's log verbosity: 1 or more logs debug" },
  "version": { type: "boolean", help: "print the version and exit", noEnv: true },
  "timeout": { type: "string", default: "60s", help: "give up after this long", noEnv: true },
  "force": { type: "boolean", help: "allow a change that strands existing leases", noEnv: true },
  "file": { type: "string", help: "read the value from this file (- for stdin)", noEnv: true },
  "json": { type: "boolean", help: "print JSON", noEnv: true },
  "format": { type: "string", default: "opts", help: "opts, env or json", noEnv: true },
  // mk-docker-opts.sh's options, for units that call it (docker-opts only).
  "f": { type: "string", help: "mk-docker-opts.sh -f: the subnet file to read", noEnv: true },
  "d": {
    type: "string",
    help: "mk-docker-opts.sh -d: write the options to this file (default /run/docker_opts.env)",
    noEnv: true,
  },
  "i": { type: "boolean", help: "mk-docker-opts.sh -i: each option as DOCKER_OPT_*", noEnv: true },
  "c": { type: "boolean", help: "mk-docker-opts.sh -c: the options combined in one", noEnv: true },
  "k": {
    type: "string",
    help: "mk-docker-opts.sh -k: the combined options' name (default DOCKER_OPTS)",
    noEnv: true,
  },
  "m": { type: "boolean", help: "mk-docker-opts.sh -m: leave --ip-masq out", noEnv: true },
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
    help: "cleanup: keep the lease in etcd and the subnet file (default: release them)",
    noEnv: true,
  },
  "help": { type: "boolean", help: "show this help", noEnv: true },
} as const satisfies Record<string, FlagSpec>;

/** flanneld's Kubernetes-mode flags: overlay leases in etcd only. */
const KUBERNETES_FLAGS = [
  "kube-subnet-mgr",
  "kube-api-url",
  "kube-annotation-prefix",
  "kubeconfig-file",
  "net-config-path",
  "set-node-network-unavailable",
];

/** klog flags flanneld copies besides -v: accepted and ignored (the log is overlay's own). */
const IGNORED_KLOG_FLAGS = ["vmodule", "log_backtrace_at"];

export type FlagName = keyof typeof FLAG_SPECS;
export type FlagValue = string | boolean | string[];
export type FlagValues = Partial<Record<FlagName, FlagValue>>;

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
  "iface-regex",
  "iface-can-reach",
  "public-ip",
  "public-ipv6",
  "device",
  ...LOCATOR_FLAGS,
  "bridge",
  "ip-masq",
  "iptables-resync",
  "iptables-forward-rules",
  "healthz-ip",
  "healthz-port",
  "subnet-lease-ttl",
  "subnet-lease-renew-margin",
  "log-level",
  "log-format",
  "v",
  "version",
];

/** The environment variable that mirrors a flag: `--ip-masq` → `OVERLAY_IP_MASQ`. */
export function envName(flag: FlagName, prefix = "OVERLAY"): string {
  return `${prefix}_${flag.toUpperCase().replaceAll("-", "_")}`;
}

export interface ParsedFlags {
  readonly values: FlagValues;
  readonly positionals: string[];
  /** Where each value came from: "command line", an environment variable, or "default". */
  readonly sources: Partial<Record<FlagName, string>>;
}

/**
 * Parses `args` against the flags one command allows, then fills values from the
 * environment (OVERLAY_*, then FLANNELD_*) and defaults. Throws UsageError for unknown
 * flags, missing or malformed values and surplus arguments.
 */
export function parseFlags(
  command: string,
  args: string[],
  allowed: FlagName[],
  options: { maxPositionals?: number } = {},
): ParsedFlags {
  const names = new Set<FlagName>([...allowed, "help"]);
  const fail = (message: string) => {
    throw new UsageError(`${command}: ${message} (see: ${command} --help)`);
  };
  const given: FlagValues = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const equals = body.indexOf("=");
    const name = equals < 0 ? body : body.slice(0, equals);
    const inline = equals < 0 ? undefined : body.slice(equals + 1);
    if (KUBERNETES_FLAGS.includes(name)) {
      fail(
        `--${name} is flanneld's Kubernetes mode, which overlay does not implement ` +
          `(it leases subnets in etcd; see --etcd-endpoints)`,
      );
    }
    if (IGNORED_KLOG_FLAGS.includes(name)) {
      if (inline === undefined) i++;
      continue;
    }
    if (name === "h" && names.has("help")) {
      given.help = true;
      continue;
    }
    if (!(name in FLAG_SPECS) || !names.has(name as FlagName)) {
      const nearest = nearestFlag(name, [...names]);
      fail(
        `${
          name in FLAG_SPECS
            ? "--" + name + " is not a flag of this command"
            : `unknown flag ${arg.split("=")[0]}`
        }` +
          (nearest ? ` (did you mean --${nearest}?)` : ""),
      );
    }
    const flag = name as FlagName;
    const spec: FlagSpec = FLAG_SPECS[flag];
    if (spec.type === "boolean") {
      given[flag] = inline === undefined ? true : parseBoolean(inline, `--${flag}`, fail);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("-") && next !== "-")) {
        fail(`--${flag} needs a value`);
      }
      value = next;
      i++;
    }
    if (spec.type === "strings") {
      given[flag] = [...((given[flag] as string[] | undefined) ?? []), value!];
    } else given[flag] = value!;
  }

  // flanneld's environment file may turn Kubernetes mode on as well as its flag can.
  if (names.has("etcd-endpoints")) {
    for (const variable of ["FLANNELD_KUBE_SUBNET_MGR", "OVERLAY_KUBE_SUBNET_MGR"]) {
      const value = Deno.env.get(variable);
      if (value && /^(1|t|true|yes|on)$/i.test(value)) {
        fail(
          `${variable}=${value} is flanneld's Kubernetes mode, which overlay does not implement ` +
            `(it leases subnets in etcd; see --etcd-endpoints)`,
        );
      }
    }
  }
  const values: FlagValues = {};
  const sources: Partial<Record<FlagName, string>> = {};
  for (const name of names) {
    const spec: FlagSpec = FLAG_SPECS[name];
    if (given[name] !== undefined) {
      values[name] = given[name];
      sources[name] = "command line";
      continue;
    }
    const fromEnv = spec.noEnv ? undefined : environmentValue(name);
    if (fromEnv) {
      values[name] = spec.type === "boolean"
        ? parseBoolean(fromEnv.value, fromEnv.variable, (message) => {
          throw new UsageError(message);
        })
        : spec.type === "strings"
        ? [fromEnv.value]
        : fromEnv.value;
      sources[name] = fromEnv.variable;
    } else if (spec.default !== undefined) {
      values[name] = spec.default;
      sources[name] = "default";
    }
  }
  const maxPositionals = options.maxPositionals ?? 0;
  if (!values.help && positionals.length > maxPositionals) {
    fail(`unexpected argument ${JSON.stringify(positionals[maxPositionals])}`);
  }
  return { values, positionals, sources };
}

/** OVERLAY_<NAME>, else FLANNELD_<NAME>, when set and not empty. */
function environmentValue(name: FlagName): { value: string; variable: string } | undefined {
  for (const prefix of ["OVERLAY", "FLANNELD"]) {
    const variable = envName(name, prefix);
    const value = Deno.env.get(variable);
    if (value !== undefined && value !== "") return { value, variable };
  }
  return undefined;
}

function parseBoolean(text: string, what: string, fail: (message: string) => never): boolean {
  if (/^(1|t|true|yes|on)$/i.test(text)) return true;
  if (/^(0|f|false|no|off)$/i.test(text)) return false;
  fail(`${what}=${JSON.stringify(text)} is not a boolean (use true or false)`);
}

/** The known flag closest to `name` (a typo, a missing dash), or undefined. */
function nearestFlag(name: string, candidates: string[]): string | undefined {
  let best: { flag: string; distance: number } | undefined;
  const plain = name.replaceAll("-", "").replaceAll("_", "");
  for (const flag of candidates) {
    const distance = flag.replaceAll("-", "") === plain ? 0 : editDistance(name, flag);
    if (!best || distance < best.distance) best = { flag, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.flag : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length];
}

/** Help text for a command: a usage line, a description and its flags. */
export function helpText(usage: string, description: string, allowed: FlagName[]): string {
  const lines = [`Usage: ${usage}`, "", description, ""];
  const flags = [...new Set<FlagName>([...allowed, "help"])];
  if (flags.length > 0) lines.push("Flags:");
  for (const name of flags) {
    const spec: FlagSpec = FLAG_SPECS[name];
    const dashes = name.length === 1 ? "-" : "--";
    const left = `  ${dashes}${name}${spec.type === "boolean" ? "" : " VALUE"}`;
    const extra = [
      spec.default !== undefined && spec.default !== false ? `default ${spec.default}` : "",
      spec.type === "strings" ? "repeatable" : "",
      spec.noEnv ? "" : `env ${envName(name)} or ${envName(name, "FLANNELD")}`,
    ].filter(Boolean).join(", ");
    lines.push(`${left.padEnd(34)} ${spec.help}${extra ? ` (${extra})` : ""}`);
  }
  return lines.join("\n");
}

/** A command: its flags, its help, and what it does once they parse. */
export interface CommandSpec {
  /** "overlay run" */
  readonly name: string;
  readonly usage: string;
  readonly description: string;
  readonly flags: FlagName[];
  readonly maxPositionals?: number;
  run(parsed: ParsedFlags): Promise<number>;
}

/** The opening every command shares: parse the flags, answer --help, then run. */
export function defineCommand(spec: CommandSpec): (args: string[]) => Promise<number> {
  return async (args) => {
    const parsed = parseFlags(spec.name, args, spec.flags, {
      maxPositionals: spec.maxPositionals,
    });
    if (parsed.values.help) {
      console.log(helpText(spec.usage, spec.description, spec.flags));
      return 0;
    }
    try {
      return await spec.run(parsed);
    } catch (error) {
      throw namingTheVariable(error, parsed);
    }
  };
}

/**
 * A UsageError about a flag whose value came from an environment variable says so: the
 * operator looks for OVERLAY_HEALTHZ_PORT in the unit's environment file, not for a flag.
 */
function namingTheVariable(error: unknown, parsed: ParsedFlags): unknown {
  if (!(error instanceof UsageError)) return error;
  const flag = /^--([a-z0-9-]+)/.exec(error.message)?.[1];
  const source = flag ? parsed.sources[flag as FlagName] : undefined;
  if (!source || source === "command line" || source === "default") return error;
  return new UsageError(`${error.message} (from ${source})`);
}

/** A flag's string value, or a UsageError naming the flag when it is required and absent. */
export function stringFlag(values: FlagValues, name: FlagName): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") {
    throw new UsageError(`--${name} is required (or set ${envName(name)})`);
  }
  return value;
}

/** An optional string flag's value; undefined when absent or empty. */
export function optionalFlag(values: FlagValues, name: FlagName): string | undefined {
  const value = values[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** A repeatable flag's values (empty when absent). */
export function listFlag(values: FlagValues, name: FlagName): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v) => v !== "") : [];
}

/** A duration flag in milliseconds; bare numbers in `bareUnit`. */
export function durationFlag(
  values: FlagValues,
  name: FlagName,
  bareUnit: "s" | "m" = "s",
): number {
  const text = stringFlag(values, name);
  const ms = parseDuration(text, bareUnit);
  if (ms === undefined) {
    throw new UsageError(
      `--${name} ${JSON.stringify(text)} is not a duration (use e.g. 30s, 10m, 24h)`,
    );
  }
  if (ms <= 0) throw new UsageError(`--${name} ${JSON.stringify(text)} must be more than 0`);
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
  const text = optionalFlag(values, name);
  if (text === undefined) return undefined;
  const ip = parseIp4(text.trim());
  if (ip === undefined) {
    throw new UsageError(`--${name} ${JSON.stringify(text)} is not an IPv4 address`);
  }
  return ip;
}

/** A device name flag (--device, --bridge): what the kernel takes, or a UsageError. */
export function deviceNameFlag(values: FlagValues, name: FlagName): string | undefined {
  const device = optionalFlag(values, name);
  if (device !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(device)) {
    throw new UsageError(
      `--${name} ${
        JSON.stringify(device)
      } is not a device name (1..15 letters, digits, "_", "-" or ".")`,
    );
  }
  return device;
}

/** A repeatable regular-expression flag (--iface-regex), each one checked. */
export function regexListFlag(values: FlagValues, name: FlagName): string[] {
  const patterns = listFlag(values, name);
  for (const pattern of patterns) {
    try {
      new RegExp(pattern);
    } catch (error) {
      throw new UsageError(
        `--${name} ${JSON.stringify(pattern)} is not a regular expression (${
          (error as Error).message
        })`,
      );
    }
  }
  return patterns;
}

/** The flags that differ from their defaults, with where each came from (secrets hidden). */
export function describeSources(parsed: ParsedFlags): Record<string, string> {
  const described: Record<string, string> = {};
  for (const [name, source] of Object.entries(parsed.sources)) {
    if (source === "default" || name === "help") continue;
    const value = parsed.values[name as FlagName];
    const text = name.includes("password")
      ? "(hidden)"
      : Array.isArray(value)
      ? value.join(",")
      : String(value);
    described[name] = `${text} (from ${source})`;
  }
  return described;
}
