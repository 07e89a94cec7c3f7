/** `overlay docker-opts`: Docker daemon options from the subnet file (flannel's mk-docker-opts). */
import { OverlayError, UsageError } from "../errors.ts";
import { type FlagName, helpText, parseFlags, stringFlag } from "../flags.ts";
import { parseEnvFile } from "../subnet_file.ts";

const FLAGS: FlagName[] = ["subnet-file", "format"];

export const DOCKER_OPTS_HELP = helpText(
  "overlay docker-opts [--format opts|env|json] [--subnet-file F]",
  `Print Docker daemon options for this host's overlay subnet, read from the subnet file:
  --bip=10.10.16.1/24 --ip-masq=true --mtu=1472
--ip-masq is the opposite of FLANNEL_IPMASQ: when overlay masquerades, Docker must not.
"env" prints DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU and DOCKER_OPTS, as
flannel's mk-docker-opts.sh writes them, for an EnvironmentFile of docker.service.`,
  FLAGS,
);

export async function dockerOptsCommand(args: string[]): Promise<number> {
  const { values } = parseFlags("overlay docker-opts", args, FLAGS);
  if (values.help) {
    console.log(DOCKER_OPTS_HELP);
    return 0;
  }
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
  const subnet = env.get("FLANNEL_SUBNET");
  const mtu = Number(env.get("FLANNEL_MTU"));
  if (!subnet || !Number.isInteger(mtu) || mtu <= 0) {
    throw new OverlayError(
      `Subnet file ${
        JSON.stringify(path)
      } lacks FLANNEL_SUBNET or FLANNEL_MTU (is it overlay's or flannel's?)`,
    );
  }
  const dockerMasq = env.get("FLANNEL_IPMASQ") !== "true";
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
}
