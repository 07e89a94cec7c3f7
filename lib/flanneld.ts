/**
 * Taking over from flanneld on a live host. flanneld v0.20 leaves behind when it stops:
 * its lease and subnet file (reused as they are: same subnet, containers keep their
 * addresses), its vxlan device `flannel.<VNI>` with its neighbour, FDB and route entries
 * (adopted with its MAC, so peers need not change a thing, when overlay's device has its
 * name, the default), its host-gw routes via the peers' public IPs (adopted), and its
 * iptables chains FLANNEL-POSTRTG and FLANNEL-FWD with their jumps (removed: overlay
 * installs its own, and both would masquerade). Its udp TUN `flannel0` goes with it.
 * flanneld and overlay must not run at once on a host: the agent refuses to start while
 * a flanneld runs in its network namespace.
 */
import { OverlayError } from "./errors.ts";
import { log } from "./log.ts";

/** flanneld's chains: nat FLANNEL-POSTRTG (--ip-masq), filter FLANNEL-FWD (forward rules). */
const FLANNELD_CHAINS = [
  { table: "nat", from: "POSTROUTING", chain: "FLANNEL-POSTRTG", comment: "flanneld masq" },
  { table: "filter", from: "FORWARD", chain: "FLANNEL-FWD", comment: "flanneld forward" },
];

/** The pid of a flanneld running in this network namespace, or undefined. */
export function runningFlanneld(): number | undefined {
  const ownNet = netNamespace("self");
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const comm = Deno.readTextFileSync(`/proc/${entry.name}/comm`).trim();
      if (comm === "flanneld" && netNamespace(entry.name) === ownNet) return Number(entry.name);
    } catch { /* gone meanwhile, or not ours to read */ }
  }
  return undefined;
}

/** Refuses to start next to a running flanneld (both would program the same host). */
export function refuseBesideFlanneld(): void {
  const pid = runningFlanneld();
  if (pid !== undefined) {
    throw new OverlayError(
      `flanneld (pid ${pid}) runs on this host: stop it first (e.g. systemctl stop flanneld); ` +
        `overlay then takes over its lease, device, routes and rules`,
    );
  }
}

function netNamespace(pid: string): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** Which of flanneld's chains are on this host. */
export async function flanneldChains(): Promise<string[]> {
  const found: string[] = [];
  for (const { table, chain } of FLANNELD_CHAINS) {
    if ((await iptables(["-t", table, "-S", chain])).code === 0) found.push(chain);
  }
  return found;
}

/**
 * Removes flanneld's chains and the jumps into them (a stopped flanneld leaves them, and
 * its masquerade chain beside overlay's would masquerade twice). Returns what it removed.
 */
export async function removeFlanneldChains(): Promise<string[]> {
  const removed: string[] = [];
  for (const { table, from, chain, comment } of FLANNELD_CHAINS) {
    if ((await iptables(["-t", table, "-S", chain])).code !== 0) continue;
    const jump = ["-m", "comment", "--comment", comment, "-j", chain];
    while ((await iptables(["-t", table, "-D", from, ...jump])).code === 0) { /* all copies */ }
    while ((await iptables(["-t", table, "-D", from, "-j", chain])).code === 0) { /* by hand */ }
    await iptables(["-t", table, "-F", chain]);
    await iptables(["-t", table, "-X", chain]);
    removed.push(`${table} ${chain}`);
  }
  if (removed.length > 0) {
    log.info("removed flanneld's iptables chains and their jumps (overlay installs its own)", {
      chains: removed.join(", "),
    });
  }
  return removed;
}

async function iptables(args: string[]): Promise<{ code: number }> {
  try {
    const output = await new Deno.Command("iptables", {
      args: ["-w", "5", ...args],
      stdout: "null",
      stderr: "null",
    }).output();
    return { code: output.code };
  } catch {
    return { code: 127 }; // no iptables: nothing of flanneld's there either
  }
}
