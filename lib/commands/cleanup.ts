/**
 * `overlay cleanup` (also `overlay run --cleanup`): removes what the agent made on this
 * host for one network, and nothing else. What it made is in the inventory the agent
 * kept while it made it (lib/inventory.ts): its device, its bridge (deleted only if the
 * agent created it), its ip-masq chains, its files; the routes it made carry its mark.
 * Then the subnet file, the state and, unless --keep-lease, the lease in etcd.
 * IPv4 forwarding stays on: other software on the host may rely on it.
 */
import { Netlink } from "../../ffi/netlink.ts";
import { interfaceIndex } from "../../ffi/libc.ts";
import { etcdFailure } from "../etcd.ts";
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { EtcdClient } from "../etcd_client.ts";
import { UsageError } from "../errors.ts";
import { defineCommand, type FlagName, ipFlag, listFlag, RUN_FLAGS, stringFlag } from "../flags.ts";
import { processStartTime, statePath } from "../health.ts";
import { type Inventory, inventoryPath, readInventory } from "../inventory.ts";
import { netContains, parseIp4, parseIp4Net } from "../ip.ts";
import { removeMasq } from "../ip_masq.ts";
import { leaseKey } from "../lease.ts";
import { OVERLAY_PROTOCOL } from "../ownership.ts";
import { SubnetRegistry } from "../registry.ts";
import { type PreviousSubnets, readPreviousSubnets } from "../subnet_file.ts";
import { net6Contains, parseIp6, parseIp6Net } from "../ip6.ts";
import { describeSubnets, type LeaseSubnets } from "../lease.ts";
import { detectUnderlay } from "../underlay.ts";

const FLAGS: FlagName[] = [...RUN_FLAGS, "keep-lease"];

export const cleanupCommand = defineCommand({
  name: "overlay cleanup",
  usage: "overlay cleanup [flags]",
  description: `Remove what "overlay run" made on this host for one network, and nothing else: its
ip-masq chains, its vxlan or TUN device, the --bridge bridge if it created it (else only
its address there), the routes it made (they carry its mark), its files, the subnet file
and state, and its lease in etcd (kept with --keep-lease). IPv4 forwarding stays on.
Stop the agent first. Give the same flags as "overlay run" (those that do not matter
here are accepted and ignored).`,
  flags: FLAGS,
  async run({ values }) {
    const etcd = etcdOptionsFrom(values);
    const subnetFile = stringFlag(values, "subnet-file");
    const stateDir = stringFlag(values, "state-dir");
    const stateFile = statePath(stateDir, subnetFile);
    const running = await Deno.readTextFile(stateFile).then(JSON.parse, () => undefined);
    if (running && processStartTime(running.pid) === running.pidStart) {
      throw new UsageError(
        `overlay run is still running (pid ${running.pid}); stop it before cleanup`,
      );
    }
    const made = inventoryPath(stateDir, subnetFile);
    const inventory = await readInventory(made);
    const removed: string[] = [];
    if (inventory) {
      await removeMade(inventory, removed);
    } else {
      console.error(
        `no record of what overlay made for ${subnetFile} (${made}): nothing on the host is removed`,
      );
    }
    const subnet = inventory
      ? inventorySubnets(inventory)
      : subnetsOf(await readPreviousSubnets(subnetFile));
    if (!values["keep-lease"] && subnet) {
      // The lease is released only if it still names this host (a stale subnet file may
      // name a subnet another host holds now).
      const publicIp = inventory ? parseIp4(inventory.publicIp) : detectUnderlay({
        ifaces: listFlag(values, "iface"),
        ifaceRegexes: listFlag(values, "iface-regex"),
        ifaceCanReach: ipFlag(values, "iface-can-reach"),
        publicIp: ipFlag(values, "public-ip"),
      }).publicIp;
      const publicIpv6 = inventory?.publicIpv6 !== undefined
        ? parseIp6(inventory.publicIpv6)
        : undefined;
      if (publicIp !== undefined && await releaseLease(etcd, subnet, publicIp, publicIpv6)) {
        removed.push(`lease ${leaseKey(etcd.prefix, subnet)}`);
      }
    }
    // With --keep-lease the subnet file stays too: it names the lease that is kept
    // (flanneld, started next, reads it to ask for the same subnet).
    const files = values["keep-lease"] ? [stateFile, made] : [subnetFile, stateFile, made];
    for (const path of files) {
      if (await Deno.remove(path).then(() => true, () => false)) removed.push(path);
    }
    console.log(removed.length > 0 ? `removed: ${removed.join(", ")}` : "nothing to remove");
    if (subnet) {
      console.log(
        `subnet ${describeSubnets(subnet)} ${values["keep-lease"] ? "kept" : "released"}`,
      );
    }
    return 0;
  },
});

/** Removes what the inventory lists, as far as it is still there. */
async function removeMade(inventory: Inventory, removed: string[]): Promise<void> {
  if (inventory.masq) {
    try {
      await removeMasq(inventory.masq);
      removed.push(`ip-masq chains ${inventory.masq.nat} and ${inventory.masq.filter}`);
    } catch (error) {
      console.error(`warning: ip-masq rules: ${(error as Error).message}`);
    }
  }
  const netlink = new Netlink();
  try {
    for (const device of [inventory.device, ...(inventory.moreDevices ?? [])]) {
      const link = device ? netlink.link(device.name) : undefined;
      if (device && link && link.kind === device.kind) {
        netlink.linkDelete(link.index);
        removed.push(`device ${device.name}`);
      }
    }
    const bridge = inventory.bridge;
    const bridgeLink = bridge ? netlink.link(bridge.name) : undefined;
    if (bridge && bridgeLink?.kind === "bridge") {
      if (bridge.created) {
        netlink.linkDelete(bridgeLink.index);
        removed.push(`bridge ${bridge.name}`);
      } else {
        const address = parseIp4Net(bridge.address);
        if (address) {
          netlink.addressDelete(
            interfaceIndex(bridge.name),
            netAddress(bridge.address),
            address.prefixLen,
          );
          removed.push(
            `address ${bridge.address} from ${bridge.name} (its bridge is not overlay's)`,
          );
        }
        const [text6, length6] = bridge.address6?.split("/") ?? [];
        const ip6 = text6 ? parseIp6(text6) : undefined;
        if (ip6 !== undefined) {
          netlink.addressDelete(interfaceIndex(bridge.name), ip6, Number(length6));
          removed.push(`address ${bridge.address6} from ${bridge.name}`);
        }
      }
    }
    const network = parseIp4Net(inventory.network);
    if (network) {
      // Only routes that carry the agent's mark: someone else's route in the Network stays.
      const ours = netlink.routes().filter((r) =>
        r.protocol === OVERLAY_PROTOCOL && netContains(network, r.dst)
      );
      netlink.batch(ours.map((r) => netlink.routeDeleteRequest(r)));
      if (ours.length > 0) removed.push(`${ours.length} routes in ${inventory.network}`);
    }
    const network6 = inventory.ipv6Network ? parseIp6Net(inventory.ipv6Network) : undefined;
    if (network6) {
      const ours = netlink.routes6().filter((r) =>
        r.protocol === OVERLAY_PROTOCOL && net6Contains(network6, r.dst)
      );
      netlink.batch(ours.map((r) => netlink.routeDeleteRequest(r)));
      if (ours.length > 0) removed.push(`${ours.length} routes in ${inventory.ipv6Network}`);
    }
  } finally {
    netlink.close();
  }
  for (const path of inventory.files) {
    if (await Deno.remove(path).then(() => true, () => false)) removed.push(path);
  }
}

/** The address part of "10.10.16.1/24". */
function netAddress(cidr: string): number {
  return parseIp4(cidr.split("/")[0]) ?? 0;
}

/**
 * Deletes this host's lease when it still is this host's (same PublicIP, not a
 * reservation). Without etcd the lease stays until its TTL runs out.
 */
/** The lease key's subnets as the inventory records them. */
function inventorySubnets(inventory: Inventory): LeaseSubnets | undefined {
  const subnet = parseIp4Net(inventory.subnet);
  const ipv6Subnet = inventory.ipv6Subnet ? parseIp6Net(inventory.ipv6Subnet) : undefined;
  return subnet ? { subnet, ...(ipv6Subnet ? { ipv6Subnet } : {}) } : undefined;
}

/** The lease key's subnets as a subnet file names them (IPv6-only: 0.0.0.0/0 and IPv6). */
function subnetsOf(previous: PreviousSubnets): LeaseSubnets | undefined {
  if (!previous.subnet && !previous.ipv6Subnet) return undefined;
  return {
    subnet: previous.subnet ?? { ip: 0, prefixLen: 0 },
    ...(previous.ipv6Subnet ? { ipv6Subnet: previous.ipv6Subnet } : {}),
  };
}

async function releaseLease(
  etcd: ReturnType<typeof etcdOptionsFrom>,
  subnets: LeaseSubnets,
  publicIp: number,
  publicIpv6: bigint | undefined,
): Promise<boolean> {
  const client = new EtcdClient(etcd);
  try {
    const registry = new SubnetRegistry(client, etcd.prefix);
    const lease = await registry.getLease(subnets);
    if (!lease || "reason" in lease || lease.etcdLeaseId === "0") return false;
    const ours = subnets.subnet.prefixLen === 0
      ? publicIpv6 !== undefined && lease.attrs.publicIpv6 === publicIpv6
      : lease.attrs.publicIp === publicIp;
    if (!ours) return false;
    return await registry.delete(lease);
  } catch (error) {
    console.error(
      `warning: ${etcdFailure(error, etcd).message}; the lease stays until its TTL runs out`,
    );
    return false;
  } finally {
    client.close();
  }
}
