/**
 * The underlay: which interface carries the encapsulated traffic, the public IP peers
 * reach us on, and its MTU. Chosen as flanneld v0.20 chooses it:
 * - `--iface` (name or IP), repeatable: the first that exists wins;
 * - then `--iface-regex`, repeatable: matched against each interface's IPv4 addresses,
 *   then against interface names;
 * - then `--iface-can-reach IP`: the interface `ip route get IP` would use;
 * - with none of those: the interface holding `--public-ip` if one does, else the
 *   interface of the IPv4 default route.
 * The public IP is `--public-ip`, else the chosen interface's address. The interface's
 * global IPv6 addresses (not link-local; flanneld takes the first) are listed too, for the
 * IPv6 side of a dual-stack or IPv6-only network.
 */
import { interfaceName } from "../ffi/libc.ts";
import { routeToward } from "../ffi/netlink.ts";
import { UsageError } from "./errors.ts";
import { formatIp4, formatIp4Net, type Ip4Net, netContains, parseIp4 } from "./ip.ts";
import { ip6AddressProblem, parseIp6 } from "./ip6.ts";
import { log } from "./log.ts";

export interface Underlay {
  readonly name: string;
  readonly ip: number;
  /** Prefix length of the interface address: peers inside it share our L2 segment. */
  readonly prefixLen: number;
  /** Every IPv4 address on the interface (host-gw checks the public IP is one). */
  readonly addresses: number[];
  readonly publicIp: number;
  /** The IPv6 address peers reach us on (--public-ipv6, else the interface's global one). */
  readonly publicIpv6?: bigint;
  /**
   * The interface's global IPv6 addresses (no link-local), in the kernel's order: the
   * first is the interface's own IPv6 address (flanneld's IfaceV6Addr). Empty when none.
   */
  readonly ipv6Addresses?: bigint[];
  /** Prefix length of the first of ipv6Addresses: peers inside it share our IPv6 segment. */
  readonly ipv6PrefixLen?: number;
  readonly mtu: number;
}

export interface UnderlayChoice {
  /** --iface: names or IPs, tried in order. */
  readonly ifaces?: string[];
  /** --iface-regex: tried in order, after --iface. */
  readonly ifaceRegexes?: string[];
  /** --iface-can-reach: the interface that routes to this address. */
  readonly ifaceCanReach?: number;
  readonly publicIp?: number;
}

interface Candidate {
  readonly name: string;
  readonly ip: number;
}

/** Finds the underlay interface. Throws UsageError naming the flag to fix. */
export function detectUnderlay(choice: UnderlayChoice): Underlay {
  const addresses = Deno.networkInterfaces().filter((i) => i.family === "IPv4");
  const ifaces = choice.ifaces ?? [];
  const regexes = choice.ifaceRegexes ?? [];
  const explicit = ifaces.length > 0 || regexes.length > 0 || choice.ifaceCanReach !== undefined;
  let found: Candidate | undefined;
  const skipped: string[] = [];
  for (const spec of ifaces) {
    found = byNameOrIp(addresses, spec);
    if (found) break;
    skipped.push(`--iface ${spec}`);
  }
  for (const pattern of found ? [] : regexes) {
    found = byRegex(addresses, new RegExp(pattern));
    if (found) break;
    skipped.push(`--iface-regex ${pattern}`);
  }
  if (!found && choice.ifaceCanReach !== undefined) found = byRoute(choice.ifaceCanReach);
  if (found && skipped.length > 0) {
    log.info("no interface matched the first choices; took the next", {
      skipped: skipped.join(", "),
      iface: found.name,
    });
  }
  if (!found && explicit) {
    const known = [...new Set(addresses.map((i) => `${i.name} (${i.address})`))].join(", ");
    const asked = [
      ...ifaces.map((i) => `--iface ${JSON.stringify(i)}`),
      ...regexes.map((r) => `--iface-regex ${JSON.stringify(r)}`),
      ...(choice.ifaceCanReach !== undefined
        ? [`--iface-can-reach ${formatIp4(choice.ifaceCanReach)}`]
        : []),
    ].join(", ");
    throw new UsageError(
      `${asked}: no such IPv4 interface here (have: ${known || "none"})`,
    );
  }
  if (!found && choice.publicIp !== undefined) {
    found = byNameOrIp(addresses, formatIp4(choice.publicIp));
  }
  found ??= byDefaultRoute(addresses);
  const own = addresses.filter((i) => i.name === found!.name);
  const primary = own.find((i) => parseIp4(i.address) === found!.ip) ?? own[0];
  const prefixLen = Number(primary?.cidr?.split("/")[1] ?? 32);
  return {
    name: found.name,
    ip: found.ip,
    prefixLen,
    addresses: own.map((i) => parseIp4(i.address)!).filter((a) => a !== undefined),
    publicIp: choice.publicIp ?? found.ip,
    ...interfaceIpv6(found.name),
    mtu: interfaceMtu(found.name),
  };
}

/**
 * An interface's global IPv6 addresses and the first one's prefix length; the first is
 * also the default public IPv6 (as flanneld defaults its PublicIPv6 to the interface's).
 */
export function interfaceIpv6(
  name: string,
): { ipv6Addresses: bigint[]; ipv6PrefixLen?: number; publicIpv6?: bigint } {
  const global = Deno.networkInterfaces().filter((i) => i.family === "IPv6" && i.name === name)
    .map((i) => ({ ip: parseIp6(i.address), prefixLen: Number(i.cidr?.split("/")[1] ?? 128) }))
    .filter((a): a is { ip: bigint; prefixLen: number } =>
      a.ip !== undefined && ip6AddressProblem(a.ip) === undefined
    );
  return {
    ipv6Addresses: global.map((a) => a.ip),
    ipv6PrefixLen: global[0]?.prefixLen,
    publicIpv6: global[0]?.ip,
  };
}

/** An interface by name (its first IPv4 address) or by one of its IPv4 addresses. */
function byNameOrIp(addresses: Deno.NetworkInterfaceInfo[], spec: string) {
  const asIp = parseIp4(spec);
  const match = addresses.find((i) =>
    asIp !== undefined ? parseIp4(i.address) === asIp : i.name === spec
  );
  return match ? { name: match.name, ip: parseIp4(match.address)! } : undefined;
}

/** As flanneld: an interface whose IPv4 address matches, else one whose name matches. */
function byRegex(addresses: Deno.NetworkInterfaceInfo[], regex: RegExp) {
  const byIp = addresses.find((i) => regex.test(i.address));
  if (byIp) return { name: byIp.name, ip: parseIp4(byIp.address)! };
  const byName = addresses.find((i) => regex.test(i.name));
  return byName ? { name: byName.name, ip: parseIp4(byName.address)! } : undefined;
}

/** The interface and source address `ip route get <ip>` reports. */
function byRoute(destination: number): Candidate | undefined {
  const route = routeToward(destination);
  if (!route || route.linkIndex === 0) return undefined;
  const addresses = Deno.networkInterfaces().filter((i) => i.family === "IPv4");
  const name = interfaceName(route.linkIndex);
  const ip = route.source ?? parseIp4(addresses.find((i) => i.name === name)?.address ?? "");
  return name && ip !== undefined ? { name, ip } : undefined;
}

function byDefaultRoute(addresses: Deno.NetworkInterfaceInfo[]): Candidate {
  const name = defaultRouteInterface();
  if (!name) {
    throw new UsageError(
      `No default route to pick the underlay interface from (choose one with --iface)`,
    );
  }
  const match = addresses.find((i) => i.name === name);
  if (!match) {
    throw new UsageError(
      `Default-route interface ${
        JSON.stringify(name)
      } has no IPv4 address (choose one with --iface)`,
    );
  }
  return { name, ip: parseIp4(match.address)! };
}

/** The IPv4 default route from /proc/net/route: its interface and gateway (0 when none). */
function defaultRoute(): { iface: string; gateway: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/net/route");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n").slice(1)) {
    const [iface, destination, gateway, , , , , mask] = line.trim().split(/\s+/);
    if (destination !== "00000000" || mask !== "00000000") continue;
    // Little-endian hex, as the kernel prints it.
    const le = parseInt(gateway, 16);
    const ip = ((le & 255) << 24 | ((le >>> 8) & 255) << 16 | ((le >>> 16) & 255) << 8 |
      (le >>> 24)) >>> 0;
    return { iface, gateway: ip };
  }
  return undefined;
}

/** The interface of the IPv4 default route. */
export function defaultRouteInterface(): string | undefined {
  return defaultRoute()?.iface;
}

/** The gateway of the IPv4 default route; undefined when none. */
export function defaultGateway(): number | undefined {
  return defaultRoute()?.gateway || undefined;
}

/**
 * Why `network` cannot be the overlay on this host, or undefined: it must not contain the
 * host's underlay or public address, or its default gateway (the overlay's routes would
 * take the host's own traffic).
 */
export function networkProblemOnHost(network: Ip4Net, underlay: Underlay): string | undefined {
  const clashes: [string, number | undefined][] = [
    ["underlay address", underlay.ip],
    ["public IP", underlay.publicIp],
    ["default gateway", defaultGateway()],
  ];
  for (const [what, ip] of clashes) {
    if (ip !== undefined && netContains(network, ip)) {
      return `"Network" ${formatIp4Net(network)} contains this host's ${what} ${formatIp4(ip)} ` +
        `(choose a Network apart from the hosts' own addresses)`;
    }
  }
  return undefined;
}

/** An interface's MTU from sysfs. */
export function interfaceMtu(name: string): number {
  try {
    return Number(Deno.readTextFileSync(`/sys/class/net/${name}/mtu`).trim());
  } catch {
    throw new UsageError(
      `Interface ${JSON.stringify(name)}: cannot read its MTU (is it up? see --iface)`,
    );
  }
}

/** True when a network device exists. */
export function interfaceExists(name: string): boolean {
  try {
    Deno.statSync(`/sys/class/net/${name}`);
    return true;
  } catch {
    return false;
  }
}

export function describeUnderlay(underlay: Underlay): string {
  return `${underlay.name} ${formatIp4(underlay.ip)} mtu ${underlay.mtu}`;
}
