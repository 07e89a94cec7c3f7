/**
 * `overlay cloud-init`: #cloud-config user-data that installs the agent on a new host:
 * download the binary and check its SHA-256, install the unit and an environment file,
 * start the service, and wait until the overlay is ready.
 */
import { etcdOptionsFrom } from "../etcd.ts";
import { UsageError } from "../errors.ts";
import {
  defineCommand,
  envName,
  ETCD_FLAGS,
  type FlagName,
  type FlagValues,
  stringFlag,
} from "../flags.ts";
import { systemdUnit } from "../systemd.ts";

const PASSED_ON: FlagName[] = [
  ...ETCD_FLAGS,
  "iface",
  "public-ip",
  "bridge",
  "ip-masq",
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
  run({ values }) {
    console.log(cloudInitConfig(values));
    return Promise.resolve(0);
  },
});

/** The user-data text. Throws UsageError for a missing or malformed URL or checksum. */
export function cloudInitConfig(values: FlagValues): string {
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
  etcdOptionsFrom(values); // checks the endpoints now rather than on the host at boot
  const binary = stringFlag(values, "binary");
  const envFile = stringFlag(values, "env-file");
  const env: string[] = [];
  for (const name of PASSED_ON) {
    const value = values[name];
    if (value === undefined || value === false || value === "") continue;
    if (name === "etcd-prefix" && value === "/coreos.com/network") continue;
    if (name === "subnet-file" && value === "/run/flannel/subnet.env") continue;
    env.push(`${envName(name)}=${value === true ? "true" : value}`);
  }
  const download = `${binary}.download`;
  const install = [
    `curl -fsSL --retry 5 --retry-delay 2 -o ${q(download)} ${q(url)}`,
    `echo ${q(`${sha256}  ${download}`)} | sha256sum -c -`,
    `chmod 0755 ${q(download)}`,
    `mv ${q(download)} ${q(binary)}`,
  ].join(" && ");
  const indent = (text: string) =>
    text.trimEnd().split("\n").map((line) => `      ${line}`).join("\n");
  return [
    "#cloud-config",
    "# overlay: installs and starts the overlay network agent, then waits until it is ready.",
    "write_files:",
    "  - path: /etc/systemd/system/overlay.service",
    '    permissions: "0644"',
    "    content: |",
    indent(systemdUnit({ binary, environmentFile: envFile })),
    `  - path: ${envFile}`,
    '    permissions: "0600"',
    "    content: |",
    indent(env.join("\n")),
    "runcmd:",
    `  - ${JSON.stringify(["sh", "-c", install])}`,
    `  - ${JSON.stringify(["systemctl", "daemon-reload"])}`,
    `  - ${JSON.stringify(["systemctl", "enable", "--now", "overlay.service"])}`,
    `  - ${JSON.stringify([binary, "wait", "--timeout", "120s"])}`,
    "",
  ].join("\n");
}

/** Single-quotes for sh. */
function q(text: string): string {
  return `'${text.replaceAll("'", `'"'"'`)}'`;
}
