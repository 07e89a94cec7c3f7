/**
 * `overlay cloud-init`: #cloud-config user-data that installs the agent on a new host:
 * download the binary and check its SHA-256, install the unit and an environment file,
 * start the service, and wait until the overlay is ready.
 */
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { UsageError } from "../errors.ts";
import {
  defineCommand,
  deviceNameFlag,
  envName,
  ETCD_FLAGS,
  type FlagName,
  type FlagValues,
  ipFlag,
  regexListFlag,
  stringFlag,
} from "../flags.ts";
import { formatIp4, ip4AddressProblem } from "../ip.ts";
import { systemdUnit } from "../systemd.ts";

const PASSED_ON: FlagName[] = [
  ...ETCD_FLAGS,
  "iface",
  "iface-regex",
  "iface-can-reach",
  "public-ip",
  "bridge",
  "ip-masq",
  "iptables-forward-rules",
  "subnet-file",
  "device",
];
const FLAGS: FlagName[] = ["binary-url", "sha256", "binary", "env-file", ...PASSED_ON];

export const cloudInitCommand = defineCommand({
  name: "overlay cloud-init",
  usage:
    "overlay cloud-init --binary-url URL --sha256 HEX --etcd-endpoints URLS [--bridge NAME] [--ip-masq] [flags]",
  description:
    `Print #cloud-config user-data for a new host: it downloads the overlay binary, checks its
SHA-256, installs the systemd unit and an environment file with the given flags, starts
the service and waits until the overlay is ready.`,
  flags: FLAGS,
  run({ values, sources }) {
    // Only what is given here goes into the user-data (readable from the metadata service):
    // not the OVERLAY_*/FLANNELD_* variables of the shell it runs in, a password perhaps.
    const given: FlagValues = { ...values };
    const ignored: string[] = [];
    for (const name of PASSED_ON) {
      const source = sources[name];
      if (source && source !== "command line" && source !== "default") {
        delete given[name];
        ignored.push(source);
      }
    }
    if (ignored.length > 0) {
      console.error(
        `overlay cloud-init: not copied into the user-data from this shell's environment: ` +
          `${ignored.join(", ")} (give them as flags to pass them on)`,
      );
    }
    const endpointsGiven = sources["etcd-endpoints"] === "command line";
    console.log(cloudInitConfig(given, { endpointsGiven }));
    return Promise.resolve(0);
  },
});

/**
 * The user-data text. Every value is written as a YAML double-quoted scalar (JSON's
 * string syntax, which YAML reads the same), and the environment file's values in
 * systemd's quoting, so no URL, endpoint or flag value can change the document's shape.
 * Throws UsageError for a missing or malformed URL or checksum, or a value an environment
 * file cannot hold (a newline, a control character).
 */
export function cloudInitConfig(
  values: FlagValues,
  options: { endpointsGiven?: boolean } = {},
): string {
  const url = stringFlag(values, "binary-url");
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !/^https?:$/.test(parsed.protocol)) {
    throw new UsageError(`--binary-url ${JSON.stringify(url)} is not an http(s) URL`);
  }
  const sha256 = stringFlag(values, "sha256").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    throw new UsageError(`--sha256 must be 64 hex digits (the output of: sha256sum overlay)`);
  }
  if (options.endpointsGiven === false) {
    throw new UsageError(
      "--etcd-endpoints is required: the new host's etcd is not on its own loopback",
    );
  }
  // What `overlay run` would refuse is refused now, rather than on the host at every boot.
  etcdOptionsFrom(values);
  const publicIp = ipFlag(values, "public-ip");
  const problem = publicIp === undefined ? undefined : ip4AddressProblem(publicIp);
  if (problem) throw new UsageError(`--public-ip ${formatIp4(publicIp!)} ${problem}`);
  ipFlag(values, "iface-can-reach");
  regexListFlag(values, "iface-regex");
  for (const name of ["device", "bridge"] as const) deviceNameFlag(values, name);
  const binary = stringFlag(values, "binary");
  const envFile = stringFlag(values, "env-file");
  const env: string[] = [];
  for (const name of PASSED_ON) {
    const value = values[name];
    if (value === undefined || value === "") continue;
    // Booleans only when they differ from the default (--ip-masq on, forward rules off).
    if (value === (name === "iptables-forward-rules")) continue;
    if (name === "etcd-prefix" && value === "/coreos.com/network") continue;
    if (name === "subnet-file" && value === "/run/flannel/subnet.env") continue;
    if (name === "etcd-endpoints" && value === "http://127.0.0.1:4001,http://127.0.0.1:2379") {
      continue;
    }
    if (Array.isArray(value) && value.length > 1) {
      throw new UsageError(
        `--${name} is given ${value.length} times: the environment file holds one value ` +
          `(give the first choice, or use --iface-regex)`,
      );
    }
    const text = Array.isArray(value) ? value[0] : String(value);
    env.push(`${envName(name)}=${systemdQuote(name, text)}`);
  }
  const download = `${binary}.download`;
  const install = [
    `mkdir -p ${q(binary.slice(0, binary.lastIndexOf("/")) || "/")}`,
    `curl -fsSL --retry 5 --retry-delay 2 -o ${q(download)} ${q(url)}`,
    `echo ${q(`${sha256}  ${download}`)} | sha256sum -c -`,
    `chmod 0755 ${q(download)}`,
    `mv ${q(download)} ${q(binary)}`,
  ].join(" && ");
  const yaml = (text: string) => JSON.stringify(text);
  return [
    "#cloud-config",
    "# overlay: installs and starts the overlay network agent, then waits until it is ready.",
    "write_files:",
    "  - path: " + yaml("/etc/systemd/system/overlay.service"),
    '    permissions: "0644"',
    "    content: " + yaml(systemdUnit({ binary, environmentFile: envFile })),
    "  - path: " + yaml(envFile),
    '    permissions: "0600"',
    "    content: " + yaml(env.map((line) => line + "\n").join("")),
    "runcmd:",
    `  - ${JSON.stringify(["sh", "-c", install])}`,
    `  - ${JSON.stringify(["systemctl", "daemon-reload"])}`,
    // --no-block: the unit starts when etcd answers, which `wait` below bounds.
    `  - ${JSON.stringify(["systemctl", "enable", "--now", "--no-block", "overlay.service"])}`,
    `  - ${JSON.stringify([binary, "wait", "--timeout", "120s"])}`,
    "",
  ].join("\n");
}

/**
 * A value for a systemd EnvironmentFile: double-quoted, with backslash, quote, dollar
 * and backtick escaped. A newline or control character cannot be written: UsageError.
 */
function systemdQuote(flag: string, value: string): string {
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new UsageError(
      `--${flag} holds a newline or control character, which an environment file cannot carry`,
    );
  }
  return `"${value.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
}

/** Single-quotes for sh. */
function q(text: string): string {
  return `'${text.replaceAll("'", `'"'"'`)}'`;
}
