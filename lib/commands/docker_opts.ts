/** `overlay docker-opts`: Docker daemon options from the subnet file (flannel's mk-docker-opts). */
import { writeFileAtomic } from "../atomic_file.ts";
import { OverlayError, UsageError } from "../errors.ts";
import { defineCommand, type FlagName, optionalFlag, stringFlag } from "../flags.ts";
import { parseIp4Net } from "../ip.ts";
import { parseIp6Net } from "../ip6.ts";
import { parseEnvFile } from "../subnet_file.ts";

const FLAGS: FlagName[] = ["subnet-file", "format", "f", "d", "i", "c", "k", "m"];
/** What mk-docker-opts.sh writes to when not told (-d). */
const MK_DOCKER_OPTS_FILE = "/run/docker_opts.env";

export const dockerOptsCommand = defineCommand({
  name: "overlay docker-opts",
  usage:
    "overlay docker-opts [--format opts|env|json] [--subnet-file F]\n       overlay docker-opts [-f F] [-d FILE] [-i] [-c] [-m] [-k KEY]   (mk-docker-opts.sh's)",
  description:
    `Print Docker daemon options for this host's overlay subnet, read from the subnet file:
  --bip=10.10.16.1/24 --ip-masq=true --mtu=1472
--ip-masq is the opposite of FLANNEL_IPMASQ: when overlay masquerades, Docker must not.
In a network with IPv6 (FLANNEL_IPV6_SUBNET) Docker also gets --ipv6 --fixed-cidr-v6=<it>;
in an IPv6-only network --bip is left out (Docker keeps its own IPv4 bridge address).
"env" prints what flannel's mk-docker-opts.sh writes, for an EnvironmentFile of
docker.service: DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ (only when overlay masquerades),
DOCKER_OPT_MTU, and DOCKER_OPTS with them all. With any of mk-docker-opts.sh's own
options (-f, -d, -i, -c, -m, -k) it does what the script does and writes the file
(-d, default /run/docker_opts.env), so a unit's "mk-docker-opts.sh -k DOCKER_NETWORK_OPTIONS
-d /run/flannel/docker" becomes "overlay docker-opts -k DOCKER_NETWORK_OPTIONS -d
/run/flannel/docker". Unlike the script it folds in no DOCKER_OPT_* or DOCKER_OPTS
variable of its own environment.`,
  flags: FLAGS,
  async run({ values }) {
    const format = stringFlag(values, "format");
    if (!["opts", "env", "json"].includes(format)) {
      throw new UsageError(
        `--format ${JSON.stringify(format)} is not a format (use opts, env or json)`,
      );
    }
    const mkDockerOpts = ["f", "d", "i", "c", "k", "m"].some((name) =>
      values[name as FlagName] !== undefined && values[name as FlagName] !== false
    );
    const path = optionalFlag(values, "f") ?? stringFlag(values, "subnet-file");
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      throw new OverlayError(
        `Subnet file ${
          JSON.stringify(path)
        } not found (is overlay run up? try: overlay wait; see --subnet-file)`,
      );
    }
    const env = parseEnvFile(text);
    const invalid = () =>
      new OverlayError(
        `Subnet file ${JSON.stringify(path)} does not hold a valid FLANNEL_SUBNET (an IPv4 ` +
          `CIDR) or FLANNEL_IPV6_SUBNET (an IPv6 CIDR), FLANNEL_MTU (68..65535) and ` +
          `FLANNEL_IPMASQ (true or false) (is it overlay's or flannel's?)`,
      );
    // What is printed here ends up on dockerd's command line: only well-formed values pass.
    const subnet = env.get("FLANNEL_SUBNET");
    const subnet6 = env.get("FLANNEL_IPV6_SUBNET");
    const mtuText = env.get("FLANNEL_MTU") ?? "";
    const mtu = Number(mtuText);
    const masqText = env.get("FLANNEL_IPMASQ") ?? "false";
    const subnetOk = subnet === undefined ||
      (parseIp4Net(subnet) !== undefined && /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(subnet));
    const subnet6Ok = subnet6 === undefined ||
      (parseIp6Net(subnet6) !== undefined && /^[0-9a-f:]+\/\d+$/.test(subnet6));
    if (
      (subnet === undefined && subnet6 === undefined) || !subnetOk || !subnet6Ok ||
      !/^\d+$/.test(mtuText) || mtu < 68 || mtu > 65535 || !/^(true|false)$/.test(masqText)
    ) throw invalid();
    const dockerMasq = masqText !== "true";
    const opts = [
      ...(subnet ? [["BIP", `--bip=${subnet}`]] : []),
      ["IPMASQ", `--ip-masq=${dockerMasq}`],
      ["MTU", `--mtu=${mtu}`],
      ...(subnet6 ? [["IPV6", `--ipv6 --fixed-cidr-v6=${subnet6}`]] : []),
    ];
    if (mkDockerOpts || format === "env") {
      // mk-docker-opts.sh: the DOCKER_OPT_* variables in name order, --ip-masq=false only
      // when flannel masquerades (and not -m), the combined value with a space after each.
      const individual = values.i === true || values.c !== true;
      const combined = values.c === true || values.i !== true;
      const key = optionalFlag(values, "k") ?? "DOCKER_OPTS";
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
        throw new UsageError(`-k ${JSON.stringify(key)} is not a variable name`);
      }
      const vars = opts
        .filter(([name]) => name !== "IPMASQ" || (!dockerMasq && values.m !== true))
        .sort(([a], [b]) => (a < b ? -1 : 1));
      const lines = [
        ...(individual ? vars.map(([name, value]) => `DOCKER_OPT_${name}="${value}"`) : []),
        ...(combined ? [`${key}=" ${vars.map(([, value]) => `${value} `).join("")}"`] : []),
      ];
      const text = lines.map((line) => line + "\n").join("");
      if (mkDockerOpts) {
        await writeFileAtomic(optionalFlag(values, "d") ?? MK_DOCKER_OPTS_FILE, text);
      } else console.log(text.trimEnd());
    } else if (format === "json") {
      console.log(JSON.stringify({
        ...(subnet ? { bip: subnet } : {}),
        "ip-masq": dockerMasq,
        mtu,
        ...(subnet6 ? { ipv6: true, "fixed-cidr-v6": subnet6 } : {}),
      }));
    } else {
      console.log(opts.map(([, value]) => value).join(" "));
    }
    return 0;
  },
});
