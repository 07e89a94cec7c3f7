/**
 * The underlay: which interface carries the encapsulated traffic, the public IP peers
 * reach us on, and its MTU. Chosen as flanneld v0.20 chooses it:
 * - `--iface` (name, IPv4 or IPv6 address), repeatable: the first that exists wins;
 * - then `--iface-regex`, repeatable: matched against each interface's IPv4 addresses,
 *   then against interface names;
 * - then `--iface-can-reach IP`: the interface `ip route get IP` would use;
 * - with none of those: the interface holding `--public-ip` if one does, else the
 *   interface of the IPv4 default route.
 * The public IP is `--public-ip`, else the chosen interface's address. The interface's
 * global IPv6 addresses (not link-local; flanneld takes the first) are listed too, for the
 * IPv6 side of a dual-stack or IPv6-only network.
 */
import { interfaceIndex, interfaceName } from "../ffi/libc.ts";
import { routeToward } from "../ffi/netlink.ts";
import { UsageError } from "./errors.ts";
import { formatIp4, formatIp4Net, ip4AddressProblem, netContains, parseIp4 } from "./ip.ts";
import { formatIp6, formatIp6Net, ip6AddressProblem, net6Contains, parseIp6 } from "./ip6.ts";
import type { NetworkConfig } from "./config.ts";
import { log } from "./log.ts";

export interface Underlay {
  readonly name: string;
  readonly ip: number;
  /** Prefix length of the interface address: peers inside it share our L2 segment. */
  readonly prefixLen: number;
  /** Every IPv4 address on the interface (host-gw checks the public IP is one). */
  readonly addresses: number[];
  readonly publicIp: number;
  /** The interface's first global IPv6 address, if it has one. */
  readonly ipv6?: bigint;
  /** Its prefix length: IPv6 peers inside it share our L2 segment. */
  readonly ipv6PrefixLen?: number;
  /** Every global IPv6 address on the interface. */
  readonly ipv6Addresses?: bigint[];
  /** The IPv6 address peers reach us on (--public-ipv6, else `ipv6`). */
  readonly publicIpv6?: bigint;
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
  readonly publicIpv6?: bigint;
}

interface Candidate {
  readonly name: string;
  readonly ip: number;
}

/**
 * Finds the underlay interface. Throws UsageError naming the flag to fix. In an IPv6-only
 * network (`ipv4: false`) the interface is found by its IPv6 addresses and the IPv6
 * default route instead; otherwise the IPv4 interface's global IPv6 address (or
 * --public-ipv6) is the host's PublicIPv6, as flanneld takes it.
 */
export function detectUnderlay(choice: UnderlayChoice, options: { ipv4?: boolean } = {}): Underlay {
  if (options.ipv4 === false) return detectUnderlay6(choice);
  return withIpv6(detectUnderlay4(choice), choice.publicIpv6);
}

function detectUnderlay4(choice: UnderlayChoice): Underlay {
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
    const what = ifaces.length === 0 && regexes.length === 0
      ? "no route toward it here"
      : "no such IPv4 interface here";
    throw new UsageError(`${asked}: ${what} (have: ${known || "none"})`);
  }
  if (!found && choice.publicIp !== undefined) {
    found = byNameOrIp(addresses, formatIp4(choice.publicIp));
  }
  found ??= byDefaultRoute(addresses);
  const own = addresses.filter((i) => i.name === found!.name);
  const primary = own.find((i) => parseIp4(i.address) === found!.ip) ?? own[0];
  const prefixLen = Number(primary?.cidr?.split("/")[1] ?? 32);
  const publicIp = choice.publicIp ?? found.ip;
  // Peers refuse such a lease (lib/peer_policy.ts): a host that published one would call
  // itself ready and be reached by nobody.
  const problem = ip4AddressProblem(publicIp);
  if (problem) {
    const what = choice.publicIp !== undefined ? "--public-ip" : `${found.name}'s address`;
    throw new UsageError(
      `${what} ${formatIp4(publicIp)} ${problem}: other hosts cannot reach this one there ` +
        `(pick the underlay interface with --iface, or give its address with --public-ip)`,
    );
  }
  return {
    name: found.name,
    ip: found.ip,
    prefixLen,
    addresses: own.map((i) => parseIp4(i.address)!).filter((a) => a !== undefined),
    publicIp,
    mtu: interfaceMtu(found.name),
  };
}

/** The interface's global IPv6 addresses (link-local ones need a zone, and peers cannot use them). */
function globalIpv6(name: string): { ip: bigint; prefixLen: number }[] {
  return Deno.networkInterfaces()
    .filter((i) => i.family === "IPv6" && i.name === name)
    .map((i) => ({
      ip: parseIp6(i.address.split("%")[0]),
      prefixLen: Number(i.cidr.split("/")[1]),
    }))
    .filter((a): a is { ip: bigint; prefixLen: number } =>
      a.ip !== undefined && ip6AddressProblem(a.ip) === undefined
    );
}

function withIpv6(underlay: Underlay, publicIpv6: bigint | undefined): Underlay {
  const addresses = globalIpv6(underlay.name);
  const primary = addresses.find((a) => a.ip === publicIpv6) ?? addresses[0];
  const chosen = publicIpv6 ?? primary?.ip;
  return {
    ...underlay,
    ...(primary ? { ipv6: primary.ip, ipv6PrefixLen: primary.prefixLen } : {}),
    ipv6Addresses: addresses.map((a) => a.ip),
    ...(chosen !== undefined ? { publicIpv6: chosen } : {}),
  };
}

/**
 * The IPv6-only underlay: --iface by name or IPv6 address, --iface-regex against IPv6
 * addresses then names, then the interface holding --public-ipv6, then the interface of
 * the IPv6 default route.
 */
function detectUnderlay6(choice: UnderlayChoice): Underlay {
  const names = [...new Set(Deno.networkInterfaces().map((i) => i.name))];
  const withAddress = names.filter((name) => globalIpv6(name).length > 0);
  const byIp = (ip: bigint) =>
    withAddress.find((name) => globalIpv6(name).some((a) => a.ip === ip));
  let name: string | undefined;
  for (const spec of choice.ifaces ?? []) {
    const ip = parseIp6(spec);
    name = ip !== undefined ? byIp(ip) : withAddress.find((n) => n === spec);
    if (name) break;
  }
  for (const pattern of name ? [] : choice.ifaceRegexes ?? []) {
    const regex = new RegExp(pattern);
    name = withAddress.find((n) => globalIpv6(n).some((a) => regex.test(formatIp6(a.ip)))) ??
      withAddress.find((n) => regex.test(n));
    if (name) break;
  }
  if (choice.ifaceCanReach !== undefined) {
    throw new UsageError(
      `--iface-can-reach takes an IPv4 address, and this network is IPv6-only (use --iface)`,
    );
  }
  const explicit = (choice.ifaces?.length ?? 0) + (choice.ifaceRegexes?.length ?? 0) > 0;
  if (!name && explicit) {
    throw new UsageError(
      `${
        [
          ...(choice.ifaces ?? []).map((i) => `--iface ${JSON.stringify(i)}`),
          ...(choice.ifaceRegexes ?? []).map((r) => `--iface-regex ${JSON.stringify(r)}`),
        ].join(", ")
      }: ` +
        `no interface with a global IPv6 address matches (have: ${
          withAddress.join(", ") || "none"
        })`,
    );
  }
  if (!name && choice.publicIpv6 !== undefined) name = byIp(choice.publicIpv6);
  name ??= defaultRoute6Interface();
  if (!name) {
    throw new UsageError(
      `No IPv6 default route to pick the underlay interface from (choose one with --iface)`,
    );
  }
  const underlay = withIpv6({
    name,
    ip: 0,
    prefixLen: 0,
    addresses: [],
    publicIp: 0,
    mtu: interfaceMtu(name),
  }, choice.publicIpv6);
  if (underlay.publicIpv6 === undefined) {
    throw new UsageError(
      `Interface ${JSON.stringify(name)} has no global IPv6 address for an IPv6-only network ` +
        `(give it one, choose another with --iface, or set --public-ipv6)`,
    );
  }
  return underlay;
}

/** The interface of the IPv6 default route, from /proc/net/ipv6_route. */
export function defaultRoute6Interface(): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/net/ipv6_route");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    // dst, dst len, src, src len, next hop, metric, refcount, use, flags, device
    if (fields.length < 10 || fields[0] !== "0".repeat(32) || fields[1] !== "00") continue;
    if (fields[9] === "lo") continue; // the unreachable default of a namespace without one
    return fields[9];
  }
  return undefined;
}

/** An interface by name (its first IPv4 address) or by one of its IPv4 addresses. */
function byNameOrIp(addresses: Deno.NetworkInterfaceInfo[], spec: string) {
  const asIp = parseIp4(spec);
  // An IPv6 address names the interface that holds it (its IPv4 address is the underlay's).
  const asIp6 = asIp === undefined ? parseIp6(spec) : undefined;
  const holder = asIp6 !== undefined
    ? Deno.networkInterfaces().find((i) => i.family === "IPv6" && parseIp6(i.address) === asIp6)
      ?.name
    : undefined;
  const match = addresses.find((i) =>
    asIp !== undefined ? parseIp4(i.address) === asIp : i.name === (holder ?? spec)
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
 * Why the config's networks cannot be the overlay on this host, or undefined: they must
 * not contain the host's underlay or public addresses, or its default gateway (the
 * overlay's routes would take the host's own traffic).
 */
export function networkProblemOnHost(
  config: NetworkConfig,
  underlay: Underlay,
): string | undefined {
  if (config.enableIPv4) {
    const network = config.network;
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
  }
  const pool = config.ipv6;
  if (pool) {
    const clashes: [string, bigint | undefined][] = [
      ["IPv6 underlay address", underlay.ipv6],
      ["public IPv6", underlay.publicIpv6],
    ];
    for (const [what, ip] of clashes) {
      if (ip !== undefined && net6Contains(pool.network, ip)) {
        return `"IPv6Network" ${formatIp6Net(pool.network)} contains this host's ${what} ${
          formatIp6(ip)
        } (choose an IPv6Network apart from the hosts' own addresses)`;
      }
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

/**
 * Whether this network namespace has a device `name`. Asked of the kernel (SIOCGIFINDEX),
 * not of /sys/class/net, which shows the namespace sysfs was mounted in: under
 * `nsenter --net=…` that is another one.
 */
export function interfaceExists(name: string): boolean {
  return interfaceIndex(name) !== 0;
}

export function describeUnderlay(underlay: Underlay): string {
  const addresses = [
    ...(underlay.ip !== 0 ? [formatIp4(underlay.ip)] : []),
    ...(underlay.ipv6 !== undefined ? [formatIp6(underlay.ipv6)] : []),
  ];
  return `${underlay.name} ${addresses.join(" ")} mtu ${underlay.mtu}`;
}
