/** `overlay docker-opts`: Docker daemon options from the subnet file (flannel's mk-docker-opts). */
import { OverlayError, UsageError } from "../errors.ts";
import { defineCommand, type FlagName, stringFlag } from "../flags.ts";
import { parseIp4Net } from "../ip.ts";
import { parseEnvFile } from "../subnet_file.ts";

const FLAGS: FlagName[] = ["subnet-file", "format"];

export const dockerOptsCommand = defineCommand({
  name: "overlay docker-opts",
  usage: "overlay docker-opts [--format opts|env|json] [--subnet-file F]",
  description:
    `Print Docker daemon options for this host's overlay subnet, read from the subnet file:
  --bip=10.10.16.1/24 --ip-masq=true --mtu=1472
--ip-masq is the opposite of FLANNEL_IPMASQ: when overlay masquerades, Docker must not.
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
    const subnetText = env.get("FLANNEL_SUBNET") ?? "";
    const mtuText = env.get("FLANNEL_MTU") ?? "";
    // What is printed here ends up on dockerd's command line: only well-formed values pass.
    const subnetNet = parseIp4Net(subnetText);
    const mtu = Number(mtuText);
    const masqText = env.get("FLANNEL_IPMASQ") ?? "false";
    if (
      !subnetNet || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(subnetText) || !/^\d+$/.test(mtuText) ||
      mtu < 68 || mtu > 65535 || !/^(true|false)$/.test(masqText)
    ) {
      throw new OverlayError(
        `Subnet file ${
          JSON.stringify(path)
        } does not hold a valid FLANNEL_SUBNET (an IPv4 CIDR), ` +
          `FLANNEL_MTU (68..65535) and FLANNEL_IPMASQ (true or false) (is it overlay's or flannel's?)`,
      );
    }
    const subnet = subnetText;
    const dockerMasq = masqText !== "true";
    const opts = { bip: `--bip=${subnet}`, ipMasq: `--ip-masq=${dockerMasq}`, mtu: `--mtu=${mtu}` };
    if (format === "json") {
      console.log(JSON.stringify({ bip: subnet, "ip-masq": dockerMasq, mtu }));
    } else if (format === "env") {
      console.log(`DOCKER_OPT_BIP="${opts.bip}"`);
      console.log(`DOCKER_OPT_IPMASQ="${opts.ipMasq}"`);
      console.log(`DOCKER_OPT_MTU="${opts.mtu}"`);
      console.log(`DOCKER_OPTS=" ${opts.bip} ${opts.ipMasq} ${opts.mtu}"`);
    } else {
      console.log(`${opts.bip} ${opts.ipMasq} ${opts.mtu}`);
    }
    return 0;
  },
});
