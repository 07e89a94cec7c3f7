/**
 * IPv6 arithmetic. Addresses are unsigned 128-bit integers held in a bigint; formatting
 * follows RFC 5952 as Go's net.IP.String() does (lower case, no leading zeros, the
 * longest run of two or more zero groups as "::", the first of equal runs), because
 * flannel writes lease keys with it and a key must have one spelling.
 */

/** An IPv6 network: base address (host bits zero) and prefix length. */
export interface Ip6Net {
  readonly ip: bigint;
  readonly prefixLen: number;
}

const ALL_ONES = (1n << 128n) - 1n;
const GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Parses any RFC 4291 text form ("fd10::1", "fd10:0:0:0:0:0:0:1", "::ffff:10.0.0.1");
 * undefined when it is not an IPv6 address. No zone ("%eth0"), no brackets.
 */
export function parseIp6(text: string): bigint | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  let groups: string[];
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  // A trailing dotted quad stands for the last two groups.
  const last = halves.length === 2 ? tail : head;
  if (last.length > 0 && last[last.length - 1].includes(".")) {
    const quad = last.pop()!;
    const parts = quad.split(".");
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && +p < 256)) {
      return undefined;
    }
    const [a, b, c, d] = parts.map(Number);
    last.push(((a << 8) | b).toString(16), ((c << 8) | d).toString(16));
  }
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...Array(missing).fill("0"), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8 || !groups.every((g) => GROUP.test(g))) return undefined;
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(parseInt(group, 16));
  return value;
}

/** Formats as Go does (RFC 5952): "fd10:0:0:1::", "::1". */
export function formatIp6(ip: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((ip >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** The netmask of a prefix length as a 128-bit value. */
export function prefixMask6(prefixLen: number): bigint {
  return prefixLen === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixLen)) & ALL_ONES;
}

/** Number of addresses in a prefix (2^(128-len)). */
export function prefixSize6(prefixLen: number): bigint {
  return 1n << BigInt(128 - prefixLen);
}

/**
 * Parses "fd10::/48". With `strict`, host bits must be zero; otherwise they are masked
 * off (as `fd10:0:0:1::1/64` in a subnet file names the subnet fd10:0:0:1::/64).
 */
export function parseIp6Net(
  text: string,
  options: { strict?: boolean } = {},
): Ip6Net | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIp6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === undefined || !/^(0|[1-9]\d{0,2})$/.test(lenText)) return undefined;
  const prefixLen = Number(lenText);
  if (prefixLen > 128) return undefined;
  const base = ip & prefixMask6(prefixLen);
  if (options.strict && base !== ip) return undefined;
  return { ip: base, prefixLen };
}

/** Formats a network as "fd10:0:0:1::/64". */
export function formatIp6Net(net: Ip6Net): string {
  return `${formatIp6(net.ip)}/${net.prefixLen}`;
}

/** True when `ip` lies inside `net`. */
export function net6Contains(net: Ip6Net, ip: bigint): boolean {
  return (ip & prefixMask6(net.prefixLen)) === net.ip;
}

/** True when the two networks share any address. */
export function nets6Overlap(a: Ip6Net, b: Ip6Net): boolean {
  const shorter = a.prefixLen <= b.prefixLen ? a : b;
  const longer = shorter === a ? b : a;
  return net6Contains(shorter, longer.ip);
}

/** True when both networks are the same. */
export function net6Equal(a: Ip6Net, b: Ip6Net): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** The first usable address (network + 1), as flannel writes in FLANNEL_IPV6_SUBNET. */
export function net6Gateway(net: Ip6Net): bigint {
  return net.ip + 1n;
}

/** The 16 bytes of an address, network order. */
export function ip6Bytes(ip: bigint, into = new Uint8Array(16), offset = 0): Uint8Array {
  for (let i = 15; i >= 0; i--) {
    into[offset + i] = Number(ip & 0xffn);
    ip >>= 8n;
  }
  return into;
}

/** The address in 16 bytes at `offset`, network order. */
export function ip6FromBytes(bytes: Uint8Array, offset = 0): bigint {
  let value = 0n;
  for (let i = 0; i < 16; i++) value = (value << 8n) | BigInt(bytes[offset + i]);
  return value;
}

/** Ranges no overlay IPv6 network and no host's public IPv6 address may be in. */
export const RESERVED_RANGES6: readonly { net: Ip6Net; what: string }[] = [
  { net: { ip: 0n, prefixLen: 127 }, what: "unspecified and loopback" },
  { net: { ip: 0xffffn << 32n, prefixLen: 96 }, what: "IPv4-mapped" },
  { net: { ip: 0xfe80n << 112n, prefixLen: 10 }, what: "link-local" },
  { net: { ip: 0xffn << 120n, prefixLen: 8 }, what: "multicast" },
];

/** Why `ip` cannot be a host's IPv6 address on the underlay, or undefined when it can. */
export function ip6AddressProblem(ip: bigint): string | undefined {
  const range = RESERVED_RANGES6.find((r) => net6Contains(r.net, ip));
  return range ? `is a ${range.what} address` : undefined;
}
