/** `overlay docker-opts`: Docker daemon options from the subnet file (flannel's mk-docker-opts). */
import { OverlayError, UsageError } from "../errors.ts";
import { defineCommand, type FlagName, stringFlag } from "../flags.ts";
import { parseIp4Net } from "../ip.ts";
import { parseIp6Net } from "../ip6.ts";
import { parseEnvFile } from "../subnet_file.ts";

const FLAGS: FlagName[] = ["subnet-file", "format"];

export const dockerOptsCommand = defineCommand({
  name: "overlay docker-opts",
  usage: "overlay docker-opts [--format opts|env|json] [--subnet-file F]",
  description:
    `Print Docker daemon options for this host's overlay subnet, read from the subnet file:
  --bip=10.10.16.1/24 --ip-masq=true --mtu=1472
--ip-masq is the opposite of FLANNEL_IPMASQ: when overlay masquerades, Docker must not.
In a network with IPv6 (FLANNEL_IPV6_SUBNET) Docker also gets --ipv6 --fixed-cidr-v6=<it>;
in an IPv6-only network --bip is left out (Docker keeps its own IPv4 bridge address).
"env" prints DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU and DOCKER_OPTS, as
flannel's mk-docker-opts.sh writes them, for an EnvironmentFile of docker.service.`,
  flags: FLAGS,
  async run({ values }) {
    const format = stringFlag(values, "format");
    if (!["opts", "env", "json"].includes(format)) {
      throw new UsageError(
        `--format ${JSON.stringify(format)} is not a format (use opts, env or json)`,
      );
    }
    const path = stringFlag(values, "subnet-file");
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
    if (format === "json") {
      console.log(JSON.stringify({
        ...(subnet ? { bip: subnet } : {}),
        "ip-masq": dockerMasq,
        mtu,
        ...(subnet6 ? { ipv6: true, "fixed-cidr-v6": subnet6 } : {}),
      }));
    } else if (format === "env") {
      for (const [name, value] of opts) console.log(`DOCKER_OPT_${name}="${value}"`);
      console.log(`DOCKER_OPTS=" ${opts.map(([, value]) => value).join(" ")}"`);
    } else {
      console.log(opts.map(([, value]) => value).join(" "));
    }
    return 0;
  },
});
