/** `overlay run`: the daemon's flags turned into options. */
import { ip6AddressProblem, parseIp6 } from "../ip6.ts";
import { type DaemonOptions, runDaemon } from "../daemon.ts";
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { UsageError } from "../errors.ts";
import {
  defineCommand,
  describeSources,
  deviceNameFlag,
  durationFlag,
  type FlagName,
  type FlagValues,
  ipFlag,
  listFlag,
  optionalFlag,
  type ParsedFlags,
  portFlag,
  regexListFlag,
  RUN_FLAGS,
  stringFlag,
} from "../flags.ts";
import { setLogFormat, setLogLevel } from "../log.ts";
import { VERSION } from "../version.ts";

const FLAGS: FlagName[] = RUN_FLAGS;

const RUN_DESCRIPTION =
  `Run the agent: lease this host's subnet in etcd, keep it renewed, follow the peers,
write the subnet file and report health. Stops on SIGINT/SIGTERM (the lease is kept,
so a restart reuses the subnet); exits 1 if the lease is lost. It takes flanneld's
flags and FLANNELD_* variables, so flanneld's unit and environment files work as they are.
"overlay run --cleanup" removes what it made instead (see: overlay cleanup --help).`;

const run = defineCommand({
  name: "overlay run",
  usage: "overlay run [flags]",
  description: RUN_DESCRIPTION,
  flags: FLAGS,
  run: (parsed) => {
    if (parsed.values.version) {
      console.log(`overlay ${VERSION}`);
      return Promise.resolve(0);
    }
    return runDaemon(daemonOptions(parsed));
  },
});

export async function runCommand(args: string[]): Promise<number> {
  if (args.includes("--cleanup") || args.includes("-cleanup")) {
    const { cleanupCommand } = await import("./cleanup.ts");
    return await cleanupCommand(args.filter((arg) => arg !== "--cleanup" && arg !== "-cleanup"));
  }
  return await run(args);
}

/** The daemon's options from its flags; every bad value is a UsageError (exit 2). */
function daemonOptions(parsed: ParsedFlags): DaemonOptions {
  const { values } = parsed;
  setLogging(values);
  const leaseTtlMs = durationFlag(values, "subnet-lease-ttl");
  if (leaseTtlMs < 2000) {
    throw new UsageError(`--subnet-lease-ttl must be at least 2s`);
  }
  const renewMarginMs = durationFlag(values, "subnet-lease-renew-margin", "m");
  if (renewMarginMs >= 24 * 3_600_000) {
    throw new UsageError(
      `--subnet-lease-renew-margin ${JSON.stringify(values["subnet-lease-renew-margin"])} ` +
        `is out of range (use 1..1439 minutes, as flanneld)`,
    );
  }
  const resync = stringFlag(values, "iptables-resync");
  if (!/^\d+$/.test(resync) || Number(resync) < 1) {
    throw new UsageError(`--iptables-resync ${JSON.stringify(resync)} is not a number of seconds`);
  }
  const healthzPort = portFlag(values, "healthz-port", true);
  for (const name of ["device", "bridge"] as const) deviceNameFlag(values, name);
  const ifaceRegexes = regexListFlag(values, "iface-regex");
  const publicIpv6Text = optionalFlag(values, "public-ipv6");
  const publicIpv6 = publicIpv6Text === undefined ? undefined : parseIp6(publicIpv6Text.trim());
  if (publicIpv6Text !== undefined) {
    const problem = publicIpv6 === undefined
      ? "is not an IPv6 address"
      : ip6AddressProblem(publicIpv6);
    if (problem) {
      throw new UsageError(`--public-ipv6 ${JSON.stringify(publicIpv6Text)} ${problem}`);
    }
  }
  const subnetFile = stringFlag(values, "subnet-file");
  const isFolder = (() => {
    try {
      return Deno.statSync(subnetFile).isDirectory;
    } catch {
      return false; // not there yet: run writes it
    }
  })();
  if (isFolder) {
    throw new UsageError(
      `--subnet-file ${JSON.stringify(subnetFile)} is a folder: give the path of the file ` +
        `(flannel's is /run/flannel/subnet.env)`,
    );
  }
  return {
    etcd: etcdOptionsFrom(values),
    underlay: {
      ifaces: listFlag(values, "iface"),
      ifaceRegexes,
      ifaceCanReach: ipFlag(values, "iface-can-reach"),
      publicIp: ipFlag(values, "public-ip"),
      ...(publicIpv6 !== undefined ? { publicIpv6 } : {}),
    },
    device: optionalFlag(values, "device"),
    subnetFile,
    stateDir: stringFlag(values, "state-dir"),
    ipMasq: values["ip-masq"] === true,
    forwardRules: values["iptables-forward-rules"] !== false,
    iptablesResyncMs: Number(resync) * 1000,
    bridge: optionalFlag(values, "bridge"),
    healthz: healthzPort > 0
      ? { hostname: stringFlag(values, "healthz-ip"), port: healthzPort }
      : undefined,
    leaseTtlMs,
    renewMarginMs,
    flagSources: describeSources(parsed),
  };
}

/** --log-level, or flanneld's -v (1 or more: debug), and --log-format. */
function setLogging(values: FlagValues): void {
  const verbosity = stringFlag(values, "v");
  if (!/^\d+$/.test(verbosity)) {
    throw new UsageError(`-v ${JSON.stringify(verbosity)} is not a verbosity (use 0, 1, 2, …)`);
  }
  const level = optionalFlag(values, "log-level") ?? (Number(verbosity) >= 1 ? "debug" : "info");
  if (!setLogLevel(level)) {
    throw new UsageError(
      `--log-level ${JSON.stringify(level)} is not a level (use debug, info, warn or error)`,
    );
  }
  const format = stringFlag(values, "log-format");
  if (!setLogFormat(format)) {
    throw new UsageError(
      `--log-format ${JSON.stringify(format)} is not a format (use text or json)`,
    );
  }
}
