/** `overlay run`: the daemon's flags turned into options. */
import { runDaemon } from "../daemon.ts";
import { etcdOptionsFrom } from "../etcd.ts";
import { UsageError } from "../errors.ts";
import {
  durationFlag,
  type FlagName,
  helpText,
  ipFlag,
  parseFlags,
  portFlag,
  RUN_FLAGS,
  stringFlag,
} from "../flags.ts";
import { setLogFormat, setLogLevel } from "../log.ts";

const FLAGS: FlagName[] = RUN_FLAGS;

export const RUN_HELP = helpText(
  "overlay run [flags]",
  `Run the agent: lease this host's subnet in etcd, keep it renewed, follow the peers,
write the subnet file and report health. Stops on SIGINT/SIGTERM (the lease is kept,
so a restart reuses the subnet); exits 1 if the lease is lost.
"overlay run --cleanup" removes what it made instead (see: overlay cleanup --help).`,
  FLAGS,
);

export async function runCommand(args: string[]): Promise<number> {
  if (args.includes("--cleanup")) {
    const { cleanupCommand } = await import("./cleanup.ts");
    return await cleanupCommand(args.filter((arg) => arg !== "--cleanup"));
  }
  const { values } = parseFlags("overlay run", args, FLAGS);
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  const level = stringFlag(values, "log-level");
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
  const leaseTtlMs = durationFlag(values, "subnet-lease-ttl");
  if (leaseTtlMs < 2000) {
    throw new UsageError(`--subnet-lease-ttl must be at least 2s`);
  }
  const healthzPort = portFlag(values, "healthz-port", true);
  for (const name of ["device", "bridge"] as const) {
    const device = values[name];
    if (typeof device === "string" && device !== "" && !/^[A-Za-z0-9_.-]{1,15}$/.test(device)) {
      throw new UsageError(
        `--${name} ${
          JSON.stringify(device)
        } is not a device name (1..15 letters, digits, "_", "-" or ".")`,
      );
    }
  }
  return await runDaemon({
    etcd: etcdOptionsFrom(values),
    iface: (values.iface as string | undefined) || undefined,
    publicIp: ipFlag(values, "public-ip"),
    device: (values.device as string | undefined) || undefined,
    subnetFile: stringFlag(values, "subnet-file"),
    stateDir: stringFlag(values, "state-dir"),
    ipMasq: values["ip-masq"] === true,
    bridge: (values.bridge as string | undefined) || undefined,
    healthz: healthzPort > 0
      ? { hostname: stringFlag(values, "healthz-ip"), port: healthzPort }
      : undefined,
    leaseTtlMs,
    renewMarginMs: durationFlag(values, "subnet-lease-renew-margin", "m"),
  });
}
