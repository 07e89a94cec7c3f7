/**
 * IPv4 arithmetic. Addresses are unsigned 32-bit integers held in a JS number
 * (always `>>> 0` after bit operations, so they never turn negative).
 */

/** An IPv4 network: base address (host bits zero) and prefix length. */
export interface Ip4Net {
  readonly ip: number;
  readonly prefixLen: number;
}

/** Octets without leading zeros, as Go's net.ParseIP (and so flannel) reads them. */
const OCTET = "(0|[1-9]\\d{0,2})";
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/**
 * Parses "10.10.16.1"; undefined when it is not a dotted-quad IPv4 address. Only one
 * spelling per address is accepted ("010.10.16.1" and " 10.10.16.1" are not), so no
 * two lease keys or values name the same subnet or host differently.
 */
export function parseIp4(text: string): number | undefined {
  const match = DOTTED_QUAD.exec(text);
  if (!match) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(match[i]);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

/** Formats a 32-bit address as dotted quad. */
export function formatIp4(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** The netmask of a prefix length, e.g. 24 → 0xffffff00. */
export function prefixMask(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Number of addresses in a prefix (2^(32-len)). */
export function prefixSize(prefixLen: number): number {
  return 2 ** (32 - prefixLen);
}

/**
 * Parses "10.10.0.0/16". With `strict`, host bits must be zero; otherwise they are
 * masked off (as `10.10.16.1/24` in a subnet file names the subnet 10.10.16.0/24).
 */
export function parseIp4Net(
  text: string,
  options: { strict?: boolean } = {},
): Ip4Net | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIp4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === undefined || !/^(0|[1-9]\d?)$/.test(lenText)) return undefined;
  const prefixLen = Number(lenText);
  if (prefixLen > 32) return undefined;
  const base = (ip & prefixMask(prefixLen)) >>> 0;
  if (options.strict && base !== ip) return undefined;
  return { ip: base, prefixLen };
}

/** Formats a network as "10.10.16.0/24". */
export function formatIp4Net(net: Ip4Net): string {
  return `${formatIp4(net.ip)}/${net.prefixLen}`;
}

/** True when `ip` lies inside `net`. */
export function netContains(net: Ip4Net, ip: number): boolean {
  return ((ip & prefixMask(net.prefixLen)) >>> 0) === net.ip;
}

/** True when the two networks share any address. */
export function netsOverlap(a: Ip4Net, b: Ip4Net): boolean {
  const shorter = a.prefixLen <= b.prefixLen ? a : b;
  const longer = shorter === a ? b : a;
  return netContains(shorter, longer.ip);
}

/** The last address of a network (its broadcast address). */
export function netLast(net: Ip4Net): number {
  return net.ip + prefixSize(net.prefixLen) - 1;
}

/** The first usable address (network + 1), as flannel writes in FLANNEL_SUBNET. */
export function netGateway(net: Ip4Net): number {
  return net.ip + 1;
}

/** True when both networks are the same. */
export function netEqual(a: Ip4Net, b: Ip4Net): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/**
 * Why `ip` cannot be a host's address on the underlay, or undefined when it can: not in
 * 0.0.0.0/8 ("this network"), not loopback, not multicast, not reserved or broadcast.
 */
export function ip4AddressProblem(ip: number): string | undefined {
  const first = ip >>> 24;
  if (first === 0) return "is not a host address (0.0.0.0/8)";
  if (first === 127) return "is a loopback address";
  if (first >= 224 && first < 240) return "is a multicast address";
  if (first >= 240) return "is a reserved or broadcast address";
  return undefined;
}
