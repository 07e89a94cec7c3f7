/**
 * `overlay cleanup` (also `overlay run --cleanup`): removes what the agent made on this
 * host for one network, and nothing else. What it made is in the inventory the agent
 * kept while it made it (lib/inventory.ts): its device, its bridge (deleted only if the
 * agent created it), its ip-masq chains, its files; the routes it made carry its mark.
 * Then the subnet file, the state and, unless --keep-lease, the lease in etcd.
 * IPv4 forwarding stays on: other software on the host may rely on it.
 *
 * It prints what became of each thing (removed, already gone, left alone, NOT removed) and
 * of the lease, and exits 1 when something it was to remove stays; what stays stays in
 * the inventory (and the subnet file, while the lease stays), so a later run finishes.
 */
import { FileLock } from "../../ffi/file_lock.ts";
import { Netlink } from "../../ffi/netlink.ts";
import { etcdFailure, type EtcdOptions, EtcdUnavailableError } from "../etcd.ts";
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { EtcdClient } from "../etcd_client.ts";
import { UsageError } from "../errors.ts";
import {
  defineCommand,
  type FlagName,
  type FlagValues,
  ipFlag,
  listFlag,
  RUN_FLAGS,
  stringFlag,
} from "../flags.ts";
import { processStartTime, statePath } from "../health.ts";
import { type Inventory, inventoryPath, readInventory, writeInventory } from "../inventory.ts";
import { netContains, parseIp4, parseIp4Net } from "../ip.ts";
import { type ChainRemoval, type MasqChains, removeMasq } from "../ip_masq.ts";
import { OVERLAY_PROTOCOL } from "../ownership.ts";
import { SubnetRegistry } from "../registry.ts";
import { lockHolder, stateLockPath } from "../state_file.ts";
import { type PreviousSubnets, readPreviousSubnets } from "../subnet_file.ts";
import { net6Contains, parseIp6, parseIp6Net } from "../ip6.ts";
import { describePublicIps, describeSubnets, leaseKey, type LeaseSubnets } from "../lease.ts";
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
here are accepted and ignored). It prints what it removed, what was already gone and
what it left alone, and exits 1 when something stays that it was to remove (with etcd
unreachable, the lease: the subnet file and the record stay, run it again later).`,
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
    // The agent's lock, held while one runs (its state file may not say so yet).
    const lockPath = stateLockPath(stateDir, subnetFile);
    const lock = await exists(lockPath) ? FileLock.tryAcquire(lockPath) : undefined;
    if (!lock && await exists(lockPath)) {
      const pid = await lockHolder(lockPath);
      throw new UsageError(
        `overlay run is still running${pid ? ` (pid ${pid})` : ""}; stop it before cleanup`,
      );
    }
    try {
      const made = inventoryPath(stateDir, subnetFile);
      return await cleanUp(values, { etcd, subnetFile, stateFile, made });
    } finally {
      if (lock) {
        await Deno.remove(lockPath).catch(() => {});
        lock.release();
      }
    }
  },
});

/** Removes what the record lists, the files and the lease; 1 when something stays. */
async function cleanUp(
  values: FlagValues,
  { etcd, subnetFile, stateFile, made }: {
    etcd: EtcdOptions;
    subnetFile: string;
    stateFile: string;
    made: string;
  },
): Promise<number> {
  const inventory = await readInventory(made);
  const report: Report = { removed: [], gone: [], leftAlone: [], failed: [] };
  let remaining: Inventory | undefined;
  if (inventory) {
    remaining = await removeMade(inventory, report);
  } else {
    console.error(
      `no record of what overlay made for ${subnetFile} (${made}): nothing on the host is removed`,
    );
  }
  const subnet = inventory
    ? inventorySubnets(inventory)
    : subnetsOf(await readPreviousSubnets(subnetFile));
  let release: LeaseRelease | undefined;
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
    release = await releaseLease(etcd, subnet, { publicIp, publicIpv6 });
  }
  // The subnet file names the lease: it stays while the lease does, with --keep-lease
  // (flanneld, started next, reads it to ask for the same subnet) or when the lease
  // could not be released (the next cleanup finds it there).
  const leaseStays = release?.outcome === "failed";
  if (!values["keep-lease"] && !leaseStays) {
    await removeFile(subnetFile, report, { quiet: true });
  }
  await removeFile(stateFile, report, { quiet: true });
  // What could not be removed stays recorded, so that cleanup can be run again.
  const kept: string[] = leaseStays && await exists(subnetFile) ? [subnetFile] : [];
  if (inventory && remaining && (leaseStays || report.failed.length > 0)) {
    await writeInventory(made, remaining);
    kept.push(made);
  } else if (inventory) {
    await removeFile(made, report, { quiet: true });
  }
  printReport(report);
  if (subnet) {
    const text = values["keep-lease"] ? "kept" : describeRelease(release!, etcd.prefix, subnet);
    console.log(`subnet ${describeSubnets(subnet)} ${text}`);
  }
  if (kept.length > 0) {
    console.log(`kept for the next cleanup: ${kept.join(", ")}`);
  }
  return report.failed.length > 0 || leaseStays ? 1 : 0;
}

/** What cleanup did, thing by thing; each list is one line of its output. */
interface Report {
  /** Removed now. */
  readonly removed: string[];
  /** Recorded as made, but no longer there. */
  readonly gone: string[];
  /** There, but not overlay's any more, with why. */
  readonly leftAlone: string[];
  /** Still there: could not be removed, with why. */
  readonly failed: string[];
}

function printReport(report: Report): void {
  const lines: [string, string[]][] = [
    ["removed", report.removed],
    ["already gone", report.gone],
    ["left alone", report.leftAlone],
    ["NOT removed", report.failed],
  ];
  for (const [label, items] of lines) {
    if (items.length > 0) console.log(`${label}: ${items.join(", ")}`);
  }
  if (lines.every(([, items]) => items.length === 0)) console.log("nothing left to remove");
}

/** Removes a file; one that is not there counts as already gone (or, `quiet`, not at all). */
async function removeFile(
  path: string,
  report: Report,
  options: { quiet?: boolean } = {},
): Promise<boolean> {
  try {
    await Deno.remove(path);
    report.removed.push(path);
    return true;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      report.failed.push(`${path} (${(error as Error).message})`);
    } else if (!options.quiet) report.gone.push(path);
    return false;
  }
}

/**
 * Removes what the inventory lists, as far as it is still there, and says what became of
 * each thing in `report`. Returns the inventory of what stays: the lease's record, the
 * iptables chains if they could not be removed, the files that could not be.
 */
async function removeMade(inventory: Inventory, report: Report): Promise<Inventory> {
  const masqStays = inventory.masq ? await removeChains(inventory.masq, report) : false;
  const netlink = new Netlink();
  try {
    for (const device of [inventory.device, ...(inventory.moreDevices ?? [])]) {
      if (!device) continue;
      const link = netlink.link(device.name);
      if (!link) {
        report.gone.push(`device ${device.name}`);
      } else if (link.kind !== device.kind) {
        const kind = link.kind ?? "plain";
        report.leftAlone.push(`device ${device.name} (a ${kind} device now, not overlay's)`);
      } else {
        netlink.linkDelete(link.index);
        report.removed.push(`device ${device.name}`);
      }
    }
    if (inventory.bridge) removeBridge(netlink, inventory.bridge, report);
    // An IPv6-only network records its IPv4 Network as 0.0.0.0/0, which holds every
    // other network's routes: it has none of its own.
    const network = parseIp4Net(inventory.network);
    if (network && network.prefixLen > 0) {
      // Only routes that carry the agent's mark: someone else's route in the Network stays.
      const ours = netlink.routes().filter((r) =>
        r.protocol === OVERLAY_PROTOCOL && netContains(network, r.dst)
      );
      const deleted = netlink.batch(ours.map((r) => netlink.routeDeleteRequest(r)))
        .filter((code) => code === 0).length;
      if (deleted > 0) report.removed.push(`${deleted} routes in ${inventory.network}`);
    }
    const network6 = inventory.ipv6Network ? parseIp6Net(inventory.ipv6Network) : undefined;
    if (network6 && network6.prefixLen > 0) {
      const ours = netlink.routes6().filter((r) =>
        r.protocol === OVERLAY_PROTOCOL && net6Contains(network6, r.dst)
      );
      const deleted = netlink.batch(ours.map((r) => netlink.routeDeleteRequest(r)))
        .filter((code) => code === 0).length;
      if (deleted > 0) report.removed.push(`${deleted} routes in ${inventory.ipv6Network}`);
    }
  } finally {
    netlink.close();
  }
  const filesStay: string[] = [];
  for (const path of inventory.files) {
    if (!await removeFile(path, report) && await exists(path)) filesStay.push(path);
  }
  const { network, subnet, publicIp, ipv6Subnet, publicIpv6, ipv6Network, masq } = inventory;
  return {
    network,
    subnet,
    publicIp,
    ...(ipv6Subnet !== undefined ? { ipv6Subnet } : {}),
    ...(publicIpv6 !== undefined ? { publicIpv6 } : {}),
    ...(ipv6Network !== undefined ? { ipv6Network } : {}),
    ...(masqStays && masq ? { masq } : {}),
    files: filesStay,
  };
}

/**
 * Deletes the --bridge if the agent created it; from an operator's bridge, only the
 * addresses the agent gave it.
 */
function removeBridge(
  netlink: Netlink,
  bridge: NonNullable<Inventory["bridge"]>,
  report: Report,
): void {
  const link = netlink.link(bridge.name);
  if (!link) {
    report.gone.push(`bridge ${bridge.name}`);
    return;
  }
  if (link.kind !== "bridge") {
    report.leftAlone.push(`${bridge.name} (a ${link.kind ?? "plain"} device now, not a bridge)`);
    return;
  }
  if (bridge.created) {
    netlink.linkDelete(link.index);
    report.removed.push(`bridge ${bridge.name}`);
    return;
  }
  const address = parseIp4Net(bridge.address);
  if (address) {
    const ip = netAddress(bridge.address);
    const there = netlink.addresses(link.index).some((a) =>
      a.ip === ip && a.prefixLen === address.prefixLen
    );
    if (there) {
      netlink.addressDelete(link.index, ip, address.prefixLen);
      report.removed.push(
        `address ${bridge.address} from ${bridge.name} (its bridge is not overlay's)`,
      );
    } else report.gone.push(`address ${bridge.address} on ${bridge.name}`);
  }
  const [text6, length6] = bridge.address6?.split("/") ?? [];
  const ip6 = text6 ? parseIp6(text6) : undefined;
  if (ip6 !== undefined) {
    const there = netlink.addresses6(link.index).some((a) =>
      a.ip === ip6 && a.prefixLen === Number(length6)
    );
    if (there) {
      netlink.addressDelete(link.index, ip6, Number(length6));
      report.removed.push(`address ${bridge.address6} from ${bridge.name}`);
    } else report.gone.push(`address ${bridge.address6} on ${bridge.name}`);
  }
  if (bridge.mtu !== undefined && link.mtu !== bridge.mtu) {
    netlink.linkSetMtu(link.index, bridge.mtu);
    report.removed.push(`MTU ${link.mtu} of ${bridge.name} (back to ${bridge.mtu})`);
  }
}

/**
 * Removes the iptables chains and their jumps; "removed" names only chains that were
 * there. Returns true when one stays.
 */
async function removeChains(chains: MasqChains, report: Report): Promise<boolean> {
  const names = `iptables chains ${chains.nat} and ${chains.filter}`;
  let results: ChainRemoval[];
  try {
    results = await removeMasq(chains);
  } catch (error) {
    report.failed.push(`${names} (${(error as Error).message})`);
    return true;
  }
  const removed = [...new Set(results.filter((r) => r.outcome === "removed").map((r) => r.chain))];
  const failed = results.filter((r) => r.outcome === "failed");
  if (removed.length > 0) {
    report.removed.push(
      removed.length === 1
        ? `iptables chain ${removed[0]}`
        : `iptables chains ${removed.join(" and ")}`,
    );
  }
  for (const r of failed) {
    report.failed.push(
      `iptables chain ${r.chain} (${r.tool} -t ${r.table} -X ${r.chain}: ${r.error})`,
    );
  }
  if (removed.length === 0 && failed.length === 0) report.gone.push(names);
  return failed.length > 0;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** The address part of "10.10.16.1/24". */
function netAddress(cidr: string): number {
  return parseIp4(cidr.split("/")[0]) ?? 0;
}

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

/** What became of this host's lease in etcd. */
type LeaseRelease =
  | { readonly outcome: "released" | "gone" | "reservation" }
  /** Another host's now: `holder` names its public IP. */
  | { readonly outcome: "another host"; readonly holder: string }
  /** The key holds something that is not a lease. */
  | { readonly outcome: "unreadable"; readonly reason: string }
  /** It may be this host's and stays: `reason` says why and what to do. */
  | { readonly outcome: "failed"; readonly reason: string };

/** How often a lease that changes under cleanup's delete is read again. */
const RELEASE_TRIES = 3;

/**
 * Deletes this host's lease when it still is this host's (same PublicIP, not a
 * reservation), and says what became of it. Without etcd the lease stays until its TTL
 * runs out.
 */
async function releaseLease(
  etcd: EtcdOptions,
  subnets: LeaseSubnets,
  host: { publicIp: number | undefined; publicIpv6: bigint | undefined },
): Promise<LeaseRelease> {
  const key = leaseKey(etcd.prefix, subnets);
  const ipv6Only = subnets.subnet.prefixLen === 0;
  if (ipv6Only ? host.publicIpv6 === undefined : host.publicIp === undefined) {
    return {
      outcome: "failed",
      reason: `cannot tell whether it is this host's: no record of this host's public ` +
        `${ipv6Only ? "IPv6 address" : "IP"} in --state-dir (if it is, delete it with: ` +
        `etcdctl del ${key})`,
    };
  }
  const client = new EtcdClient(etcd);
  try {
    const registry = new SubnetRegistry(client, etcd.prefix);
    for (let attempt = 0; attempt < RELEASE_TRIES; attempt++) {
      const lease = await registry.getLease(subnets);
      if (!lease) return { outcome: "gone" };
      if ("reason" in lease) return { outcome: "unreadable", reason: lease.reason };
      if (lease.etcdLeaseId === "0") return { outcome: "reservation" };
      const ours = ipv6Only
        ? lease.attrs.publicIpv6 === host.publicIpv6
        : lease.attrs.publicIp === host.publicIp;
      if (!ours) return { outcome: "another host", holder: describePublicIps(lease) };
      // The delete holds only if the lease is unchanged since it was read.
      if (await registry.delete(lease)) return { outcome: "released" };
    }
    return {
      outcome: "failed",
      reason: `${key} changed ${RELEASE_TRIES} times while cleanup deleted it (is an agent ` +
        `for this subnet still running? stop it and run cleanup again)`,
    };
  } catch (error) {
    const then = error instanceof EtcdUnavailableError
      ? "run cleanup again when etcd is back"
      : "run cleanup again once that is fixed";
    return {
      outcome: "failed",
      reason: `${etcdFailure(error, etcd).message} (the lease stays until its TTL runs out; ` +
        `${then})`,
    };
  } finally {
    client.close();
  }
}

/** The end of the line `subnet 10.10.16.0/24 …` for what became of the lease. */
function describeRelease(release: LeaseRelease, prefix: string, subnets: LeaseSubnets): string {
  const key = leaseKey(prefix, subnets);
  switch (release.outcome) {
    case "released":
      return "released";
    case "gone":
      return `already gone (no lease at ${key})`;
    case "reservation":
      return "left alone: it is a reservation";
    case "another host":
      return `left alone: now held by another host (${release.holder})`;
    case "unreadable":
      return `left alone: ${key} holds no lease overlay can read (${release.reason})`;
    case "failed":
      return `NOT released: ${release.reason}`;
  }
}
