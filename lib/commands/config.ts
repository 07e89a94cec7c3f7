/** `overlay config get|set`: read and write the network config. */
import { formatIp6Net } from "../ip6.ts";
import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../config.ts";
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { UsageError } from "../errors.ts";
import { defineCommand, ETCD_FLAGS, type FlagName, type FlagValues, helpText } from "../flags.ts";
import { formatIp4Net } from "../ip.ts";
import { withRegistry } from "./with_registry.ts";

const GET_FLAGS: FlagName[] = [...ETCD_FLAGS];
const SET_FLAGS: FlagName[] = [...ETCD_FLAGS, "file", "force"];

const CONFIG_DESCRIPTION =
  `Read or write the network config at <etcd-prefix>/config, in flannel's JSON:
  {"Network":"10.10.0.0/16","SubnetLen":24,"Backend":{"Type":"udp","Port":8285}}
"set" validates before it writes; changing Network or SubnetLen while leases exist is
refused unless --force (hosts would keep subnets the new config does not contain).`;

export async function configCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  if (action === "get") return await configGet(rest);
  if (action === "set") return await configSet(rest);
  if (action === undefined || action === "--help" || action === "-h") {
    console.log(helpText("overlay config get|set [JSON] [flags]", CONFIG_DESCRIPTION, SET_FLAGS));
    return action === undefined ? 2 : 0;
  }
  throw new UsageError(
    `overlay config: unknown action ${
      JSON.stringify(action)
    } (use get or set; see: overlay config --help)`,
  );
}

const configGet = defineCommand({
  name: "overlay config get",
  usage: "overlay config get [flags]",
  description: "Print the network config JSON.",
  flags: GET_FLAGS,
  async run({ values }) {
    const etcd = etcdOptionsFrom(values);
    const text = await withRegistry(etcd, async (registry) => {
      const stored = await registry.getConfigText();
      if (stored === undefined) await registry.getConfig(); // throws the "not found" UsageError
      return stored!;
    });
    console.log(text.trim());
    return 0;
  },
});

const configSet = defineCommand({
  name: "overlay config set",
  usage: "overlay config set JSON|- [--file F] [flags]",
  description: CONFIG_DESCRIPTION,
  flags: SET_FLAGS,
  maxPositionals: 1,
  run: ({ values, positionals }) => setConfig(values, positionals),
});

async function setConfig(values: FlagValues, positionals: string[]): Promise<number> {
  const etcd = etcdOptionsFrom(values);
  const text = await readConfigInput(positionals[0], values.file as string | undefined);
  let config: NetworkConfig;
  try {
    config = parseNetworkConfig(text);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new UsageError(`Network config: ${error.message}; nothing was written`);
  }
  await withRegistry(etcd, async (registry) => {
    const currentText = await registry.getConfigText();
    let current: NetworkConfig | undefined;
    try {
      current = currentText === undefined ? undefined : parseNetworkConfig(currentText);
    } catch {
      current = undefined; // replacing an invalid config is always allowed
    }
    if (current && !values.force) {
      const changes: string[] = [];
      if (formatIp4Net(current.network) !== formatIp4Net(config.network)) {
        changes.push(`Network ${formatIp4Net(current.network)} → ${formatIp4Net(config.network)}`);
      }
      if (current.subnetLen !== config.subnetLen) {
        changes.push(`SubnetLen ${current.subnetLen} → ${config.subnetLen}`);
      }
      const v6 = (c: NetworkConfig) =>
        c.ipv6 ? `${formatIp6Net(c.ipv6.network)} /${c.ipv6.subnetLen}` : "none";
      if (v6(current) !== v6(config)) changes.push(`IPv6Network ${v6(current)} → ${v6(config)}`);
      if (changes.length > 0) {
        const { leases } = await registry.listLeases();
        if (leases.length > 0) {
          throw new UsageError(
            `Refusing to change ${changes.join(" and ")} while ${leases.length} lease(s) exist: ` +
              `their hosts would keep subnets the new config does not describe ` +
              `(stop those hosts and let their leases go, or pass --force)`,
          );
        }
      }
    }
    await registry.putConfigText(JSON.stringify(config.raw));
    console.log(`wrote ${registry.configKey}: ${JSON.stringify(config.raw)}`);
  });
  return 0;
}

async function readConfigInput(
  positional: string | undefined,
  file: string | undefined,
): Promise<string> {
  if (positional !== undefined && file !== undefined) {
    throw new UsageError(`overlay config set: give the JSON or --file, not both`);
  }
  if (positional !== undefined && positional !== "-") return positional;
  const path = file ?? (positional === "-" ? "-" : undefined);
  if (path === undefined) {
    throw new UsageError(
      `overlay config set: no config given (use: overlay config set '{"Network":"10.10.0.0/16"}', or --file F)`,
    );
  }
  try {
    if (path === "-") return await new Response(Deno.stdin.readable).text();
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`--file ${JSON.stringify(path)}: ${(error as Error).message}`);
  }
}
