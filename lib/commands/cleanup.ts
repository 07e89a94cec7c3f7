/**
 * `overlay cleanup` (also `overlay run --cleanup`): removes what the agent made on this
 * host, and nothing else: its ip-masq chains, its vxlan or TUN device, the bridge named
 * by --bridge, the peer routes it programmed inside the Network, its subnet file and
 * state, and (unless --keep-lease) its lease in etcd.
 */
import { Netlink } from "../../ffi/netlink.ts";
import type { NetworkConfig } from "../config.ts";
import { ETCD_FLAGS, etcdFailure, etcdOptionsFrom } from "../etcd.ts";
import { EtcdClient } from "../etcd_client.ts";
import { UsageError } from "../errors.ts";
import {
  type FlagName,
  helpText,
  ipFlag,
  LOCATOR_FLAGS,
  parseFlags,
  stringFlag,
} from "../flags.ts";
import { processStartTime, statePath } from "../health.ts";
import { formatIp4, formatIp4Net, netContains, parseIp4Net } from "../ip.ts";
import { masqChains, removeMasq } from "../ip_masq.ts";
import { leaseKey } from "../lease.ts";
import { SubnetRegistry } from "../registry.ts";
import { parseEnvFile } from "../subnet_file.ts";
import { detectUnderlay } from "../underlay.ts";
import { DEFAULT_UDP_DEVICE } from "../backends/udp.ts";
import { OVERLAY_PROTOCOL } from "../ownership.ts";

const FLAGS: FlagName[] = [
  ...ETCD_FLAGS,
  ...LOCATOR_FLAGS,
  "iface",
  "public-ip",
  "device",
  "bridge",
  "keep-lease",
];

export const CLEANUP_HELP = helpText(
  "overlay cleanup [flags]",
  `Remove what "overlay run" made on this host, and nothing else: its ip-masq chains, its
vxlan or TUN device, the bridge named by --bridge, the peer routes it programmed, its
subnet file and state, and its lease in etcd (kept with --keep-lease). Stop the agent
first. Give the same flags as "overlay run".`,
  FLAGS,
);

export async function cleanupCommand(args: string[]): Promise<number> {
  const { values } = parseFlags("overlay cleanup", args, FLAGS);
  if (values.help) {
    console.log(CLEANUP_HELP);
    return 0;
  }
  const etcd = etcdOptionsFrom(values);
  const subnetFile = stringFlag(values, "subnet-file");
  const stateFile = statePath(stringFlag(values, "state-dir"), subnetFile);
  const running = await Deno.readTextFile(stateFile).then(JSON.parse, () => undefined);
  if (running && processStartTime(running.pid) === running.pidStart) {
    throw new UsageError(
      `overlay run is still running (pid ${running.pid}); stop it before cleanup`,
    );
  }
  const removed: string[] = [];

  // What the subnet file says this host had.
  const env = await Deno.readTextFile(subnetFile).then(
    parseEnvFile,
    () => new Map<string, string>(),
  );
  const network = parseIp4Net(env.get("FLANNEL_NETWORK") ?? "");
  const subnet = parseIp4Net(env.get("FLANNEL_SUBNET") ?? "");

  // The config and the lease, if etcd answers; local cleanup goes on without it.
  const client = new EtcdClient(etcd);
  let config: NetworkConfig | undefined;
  try {
    const registry = new SubnetRegistry(client, etcd.prefix);
    config = await registry.getConfig().catch(() => undefined);
    if (!values["keep-lease"] && subnet) {
      const lease = await registry.getLease(subnet);
      const underlay = detectUnderlay({
        iface: (values.iface as string) || undefined,
        publicIp: ipFlag(values, "public-ip"),
      });
      if (
        lease && !("reason" in lease) && lease.attrs.publicIp === underlay.publicIp &&
        lease.etcdLeaseId !== "0"
      ) {
        await registry.delete(lease);
        removed.push(`lease ${leaseKey(etcd.prefix, subnet)}`);
      }
    }
  } catch (error) {
    console.error(
      `warning: ${etcdFailure(error, etcd).message}; the lease stays until its TTL runs out`,
    );
  } finally {
    client.close();
  }

  try {
    await removeMasq(await masqChains(etcd.prefix));
    removed.push("ip-masq chains (if any)");
  } catch (error) {
    console.error(`warning: ip-masq rules: ${(error as Error).message}`);
  }

  const netlink = new Netlink();
  try {
    const type = config?.backend.type;
    const device = (values.device as string) ||
      (type === "vxlan"
        ? `overlay.${config!.backend.vni}`
        : type === "udp"
        ? DEFAULT_UDP_DEVICE
        : undefined);
    if (device) {
      const link = netlink.link(device);
      if (link && (link.kind === "vxlan" || link.kind === "tun")) {
        netlink.linkDelete(link.index);
        removed.push(`device ${device}`);
      }
    }
    const bridge = values.bridge as string | undefined;
    if (bridge) {
      const link = netlink.link(bridge);
      if (link?.kind === "bridge") {
        netlink.linkDelete(link.index);
        removed.push(`bridge ${bridge}`);
      }
    }
    const net = config?.network ?? network;
    if (net) {
      // Only routes that carry the agent's mark: someone else's route in the Network stays.
      const ours = netlink.routes().filter((r) =>
        r.protocol === OVERLAY_PROTOCOL && netContains(net, r.dst)
      );
      netlink.batch(ours.map((r) => netlink.routeDeleteRequest(r)));
      if (ours.length > 0) removed.push(`${ours.length} routes in ${formatIp4Net(net)}`);
    }
  } finally {
    netlink.close();
  }

  for (const path of [subnetFile, stateFile]) {
    if (await Deno.remove(path).then(() => true, () => false)) removed.push(path);
  }
  const stateDir = stringFlag(values, "state-dir");
  try {
    for (const entry of Deno.readDirSync(stateDir)) {
      if (!entry.name.endsWith(".vtep-mac")) continue;
      Deno.removeSync(`${stateDir}/${entry.name}`);
      removed.push(`${stateDir}/${entry.name}`);
    }
  } catch {
    // no state folder: nothing kept there
  }
  console.log(removed.length > 0 ? `removed: ${removed.join(", ")}` : "nothing to remove");
  if (subnet) {
    console.log(
      `subnet ${formatIp4(subnet.ip)}/${subnet.prefixLen} ${
        values["keep-lease"] ? "kept" : "released"
      }`,
    );
  }
  return 0;
}
