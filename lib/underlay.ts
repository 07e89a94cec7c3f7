/**
 * The underlay: which interface carries the encapsulated traffic, the public IP peers
 * reach us on, and its MTU. `--iface` takes a name or an IP; by default the interface
 * of the IPv4 default route, as flannel does.
 */
import { UsageError } from "./errors.ts";
import { formatIp4, formatIp4Net, type Ip4Net, netContains, parseIp4 } from "./ip.ts";

export interface Underlay {
  readonly name: string;
  readonly ip: number;
  /** Prefix length of the interface address: peers inside it share our L2 segment. */
  readonly prefixLen: number;
  /** Every IPv4 address on the interface (host-gw checks the public IP is one). */
  readonly addresses: number[];
  readonly publicIp: number;
  readonly mtu: number;
}

/** Finds the underlay interface. Throws UsageError naming the flag to fix. */
export function detectUnderlay(options: { iface?: string; publicIp?: number }): Underlay {
  const addresses = Deno.networkInterfaces().filter((i) => i.family === "IPv4");
  let name: string;
  let ip: number | undefined;
  if (options.iface) {
    const asIp = parseIp4(options.iface);
    const match = addresses.find((i) =>
      asIp !== undefined ? parseIp4(i.address) === asIp : i.name === options.iface
    );
    if (!match) {
      const known = [...new Set(addresses.map((i) => `${i.name} (${i.address})`))].join(", ");
      throw new UsageError(
        `--iface ${JSON.stringify(options.iface)}: no such IPv4 interface here (have: ${
          known || "none"
        })`,
      );
    }
    name = match.name;
    ip = parseIp4(match.address);
  } else {
    const fromRoute = defaultRouteInterface();
    if (!fromRoute) {
      throw new UsageError(
        `No default route to pick the underlay interface from (choose one with --iface)`,
      );
    }
    name = fromRoute;
    const match = addresses.find((i) => i.name === name);
    if (!match) {
      throw new UsageError(
        `Default-route interface ${
          JSON.stringify(name)
        } has no IPv4 address (choose one with --iface)`,
      );
    }
    ip = parseIp4(match.address);
  }
  const own = addresses.filter((i) => i.name === name);
  const primary = own.find((i) => parseIp4(i.address) === ip) ?? own[0];
  const prefixLen = Number(primary?.cidr?.split("/")[1] ?? 32);
  return {
    name,
    ip: ip!,
    prefixLen,
    addresses: own.map((i) => parseIp4(i.address)!).filter((a) => a !== undefined),
    publicIp: options.publicIp ?? ip!,
    mtu: interfaceMtu(name),
  };
}

/** The interface of the IPv4 default route, from /proc/net/route. */
export function defaultRouteInterface(): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/net/route");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n").slice(1)) {
    const [iface, destination, , , , , , mask] = line.trim().split(/\s+/);
    if (destination === "00000000" && mask === "00000000") return iface;
  }
  return undefined;
}

/** The gateway of the IPv4 default route, from /proc/net/route; undefined when none. */
export function defaultGateway(): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/net/route");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n").slice(1)) {
    const [, destination, gateway, , , , , mask] = line.trim().split(/\s+/);
    if (destination !== "00000000" || mask !== "00000000") continue;
    // Little-endian hex, as the kernel prints it.
    const le = parseInt(gateway, 16);
    const ip = ((le & 255) << 24 | ((le >>> 8) & 255) << 16 | ((le >>> 16) & 255) << 8 |
      (le >>> 24)) >>> 0;
    return ip === 0 ? undefined : ip;
  }
  return undefined;
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
