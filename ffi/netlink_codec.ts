/**
 * The rtnetlink wire codec: message and attribute layouts, the constants, encoding of
 * requests and parsing of replies. No socket here: ffi/netlink.ts sends what this builds.
 *
 * Addresses are `number` for IPv4 and `bigint` for IPv6 (as lib/ip.ts and lib/ip6.ts hold
 * them): the type of an address picks the family (AF_INET, 4 bytes; AF_INET6, 16 bytes).
 *
 * Layouts (all host byte order, x86_64):
 *   nlmsghdr   16 B: u32 len, u16 type, u16 flags, u32 seq, u32 pid
 *   ifinfomsg  16 B: u8 family, u8 pad, u16 type, i32 index, u32 flags, u32 change
 *   ifaddrmsg   8 B: u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index
 *   rtmsg      12 B: u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags
 *   ndmsg      12 B: u8 family, pad, u16 pad, i32 ifindex, u16 state, u8 flags, u8 type
 *   rtattr      4 B: u16 len, u16 type, then the value, padded to 4
 */
import { formatIp6, ip6Bytes, ip6FromBytes } from "../lib/ip6.ts";
import { interfaceName } from "./libc.ts";

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0x80000;
export const NETLINK_ROUTE = 0;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_TXQLEN = 13;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
/** ifa_flags: no duplicate address detection (`ip addr add … nodad`). */
export const IFA_F_NODAD = 0x02;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PREFSRC = 7;
export const RTA_TABLE = 15;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_PROTOCOL = 12;

export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const IFF_UP = 0x1;
export const RT_TABLE_MAIN = 254;
export const RTPROT_BOOT = 3;
export const RTPROT_KERNEL = 2;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RTN_UNICAST = 1;
export const RTNH_F_ONLINK = 4;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;

// VXLAN link attributes (IFLA_VXLAN_*), for link create.
export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_LOCAL6 = 17;

/** An address: IPv4 as a number, IPv6 as a bigint (network order when encoded). */
export type Address = number | bigint;

/** AF_INET for an IPv4 address, AF_INET6 for an IPv6 one. */
export function familyOf(ip: Address): number {
  return typeof ip === "bigint" ? AF_INET6 : AF_INET;
}

// IP-in-IP tunnel link attributes (IFLA_IPTUN_*, linux/if_tunnel.h), for link create.
export const IFLA_IPTUN_LINK = 1;
export const IFLA_IPTUN_LOCAL = 2;
export const IFLA_IPTUN_REMOTE = 3;
export const IFLA_IPTUN_TTL = 4;
export const IFLA_IPTUN_TOS = 5;
export const IFLA_IPTUN_PROTO = 9;
export const IFLA_IPTUN_PMTUDISC = 10;

/** A netlink attribute to encode: a type and its value bytes, or nested attributes. */
export interface Attr {
  readonly type: number;
  readonly value: Uint8Array | Attr[];
}

export function u32Attr(type: number, value: number): Attr {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return { type, value: bytes };
}

export function u16BeAttr(type: number, value: number): Attr {
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setUint16(0, value, false);
  return { type, value: bytes };
}

export function u8Attr(type: number, value: number): Attr {
  return { type, value: new Uint8Array([value]) };
}

/** An IPv4 address attribute (network byte order). */
export function ip4Attr(type: number, ip: number): Attr {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, ip, false);
  return { type, value: bytes };
}

/** An IPv6 address attribute (16 bytes, network byte order). */
export function ip6Attr(type: number, ip: bigint): Attr {
  return { type, value: ip6Bytes(ip) };
}

/** An address attribute of the address's family: 4 bytes for IPv4, 16 for IPv6. */
export function addressAttr(type: number, ip: Address): Attr {
  return typeof ip === "bigint" ? ip6Attr(type, ip) : ip4Attr(type, ip);
}

/** An address attribute's value: a number for 4 bytes, a bigint for 16, else undefined. */
export function readAddress(view: DataView | undefined): Address | undefined {
  if (view?.byteLength === 4) return view.getUint32(0, false);
  if (view?.byteLength === 16) {
    return ip6FromBytes(new Uint8Array(view.buffer, view.byteOffset, 16));
  }
  return undefined;
}

export function stringAttr(type: number, text: string): Attr {
  return { type, value: new TextEncoder().encode(text + "\0") };
}

export function attrsLength(attrs: Attr[]): number {
  let total = 0;
  for (const attr of attrs) total += align4(4 + valueLength(attr.value));
  return total;
}

export function valueLength(value: Uint8Array | Attr[]): number {
  return value instanceof Uint8Array ? value.length : attrsLength(value);
}

export function align4(n: number): number {
  return (n + 3) & ~3;
}

export function writeAttrs(
  view: DataView,
  bytes: Uint8Array,
  offset: number,
  attrs: Attr[],
): number {
  for (const attr of attrs) {
    const length = 4 + valueLength(attr.value);
    view.setUint16(offset, length, true);
    view.setUint16(offset + 2, attr.type | (attr.value instanceof Uint8Array ? 0 : 0x8000), true);
    if (attr.value instanceof Uint8Array) bytes.set(attr.value, offset + 4);
    else writeAttrs(view, bytes, offset + 4, attr.value);
    offset += align4(length);
  }
  return offset;
}

/** One request: message type, flags, the fixed header bytes and attributes. */
export interface Request {
  readonly type: number;
  readonly flags: number;
  readonly header: Uint8Array;
  readonly attrs: Attr[];
}

/** Encodes requests back to back, numbering them from `seq`. */
export function encodeRequests(requests: Request[], seq: number): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const r of requests) total += align4(16 + r.header.length + attrsLength(r.attrs));
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  let offset = 0;
  requests.forEach((r, i) => {
    const length = 16 + r.header.length + attrsLength(r.attrs);
    view.setUint32(offset, length, true);
    view.setUint16(offset + 4, r.type, true);
    view.setUint16(offset + 6, r.flags, true);
    view.setUint32(offset + 8, seq + i, true);
    view.setUint32(offset + 12, 0, true);
    bytes.set(r.header, offset + 16);
    writeAttrs(view, bytes, offset + 16 + r.header.length, r.attrs);
    offset += align4(length);
  });
  return bytes;
}

/** A parsed message of a dump reply. */
export interface Message {
  readonly type: number;
  /** The fixed header and attributes (a copy of the bytes after the nlmsghdr). */
  readonly body: DataView;
}

/** Parses the attributes that follow a fixed header: type → value view. */
export function parseAttrs(body: DataView, start: number): Map<number, DataView> {
  const attrs = new Map<number, DataView>();
  let offset = start;
  while (offset + 4 <= body.byteLength) {
    const length = body.getUint16(offset, true);
    const type = body.getUint16(offset + 2, true) & 0x3fff;
    if (length < 4 || offset + length > body.byteLength) break;
    attrs.set(type, new DataView(body.buffer, body.byteOffset + offset + 4, length - 4));
    offset += align4(length);
  }
  return attrs;
}

export function ifinfomsg(
  options: { family?: number; index?: number; flags?: number; change?: number } = {},
): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, options.family ?? 0);
  view.setInt32(4, options.index ?? 0, true);
  view.setUint32(8, options.flags ?? 0, true);
  view.setUint32(12, options.change ?? 0, true);
  return bytes;
}

export function ifaddrmsg(
  index: number,
  prefixLen: number,
  options: { family?: number; flags?: number; scope?: number } = {},
): Uint8Array {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, options.family ?? AF_INET);
  view.setUint8(1, prefixLen);
  view.setUint8(2, options.flags ?? 0);
  view.setUint8(3, options.scope ?? RT_SCOPE_UNIVERSE);
  view.setUint32(4, index, true);
  return bytes;
}

/** `protocol` for a write defaults to boot; for a delete, 0 matches any maker. */
export function rtmsg(route: Route<Address>, defaultProtocol = RTPROT_BOOT): Uint8Array {
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, familyOf(route.dst));
  view.setUint8(1, route.prefixLen);
  view.setUint8(4, RT_TABLE_MAIN);
  view.setUint8(5, route.protocol ?? defaultProtocol);
  // IPv6 routes have no scopes: iproute2 sends UNIVERSE for a device route as for any.
  const link = route.gateway === undefined && typeof route.dst === "number";
  view.setUint8(6, link ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
  view.setUint8(7, RTN_UNICAST);
  view.setUint32(8, route.onlink ? RTNH_F_ONLINK : 0, true);
  return bytes;
}

export function ndmsg(family: number, index: number, state: number, flags: number): Uint8Array {
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, family);
  view.setInt32(4, index, true);
  view.setUint16(8, state, true);
  view.setUint8(10, flags);
  return bytes;
}

/** A route in the main table: IPv4 (`Route`) or IPv6 (`Route<bigint>`). */
export interface Route<A extends Address = number> {
  readonly dst: A;
  readonly prefixLen: number;
  readonly linkIndex: number;
  readonly gateway?: A;
  readonly onlink?: boolean;
  /**
   * rtm_protocol: who made the route (`proto` in `ip route`). Writes default to boot (3),
   * as `ip route add` does; a delete that names one removes only a route made by it.
   */
  readonly protocol?: number;
}

/** A neighbour (IPv4, IPv6) or FDB (AF_BRIDGE) entry as a dump reports it. */
export interface Neighbour {
  /** NDA_DST when it is an IPv4 address (an ARP entry, or an FDB entry's IPv4 VTEP). */
  readonly ip?: number;
  /** NDA_DST when it is an IPv6 address (an NDP entry, or an FDB entry's IPv6 VTEP). */
  readonly ip6?: bigint;
  readonly mac?: string;
  readonly state: number;
  /** NDA_PROTOCOL: who made the entry (0 when nobody said). */
  readonly protocol: number;
}

/** A link as a dump reports it. */
export interface LinkInfo {
  readonly index: number;
  readonly name: string;
  readonly flags: number;
  readonly mtu: number;
  readonly kind?: string;
  readonly mac?: string;
  /** For kind "vxlan": VNI, UDP port, local address and underlay link index. */
  readonly vxlan?: {
    readonly vni: number;
    readonly port: number;
    /** IFLA_VXLAN_LOCAL6 (a bigint) when the device has one, else IFLA_VXLAN_LOCAL (0: none). */
    readonly local: Address;
    readonly link: number;
    readonly learning: boolean;
  };
  /** For kind "ipip": local and remote addresses (0: any), underlay link, TTL, PMTU discovery. */
  readonly iptun?: IptunOptions & { readonly remote: number };
}

export function macBytes(mac: string): Uint8Array {
  return new Uint8Array(mac.split(":").map((part) => parseInt(part, 16)));
}

export function formatMac(view: DataView): string {
  const parts: string[] = [];
  for (let i = 0; i < view.byteLength; i++) {
    parts.push(view.getUint8(i).toString(16).padStart(2, "0"));
  }
  return parts.join(":");
}

export function cstringOf(view: DataView): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.subarray(0, end < 0 ? bytes.length : end));
}

export function formatDottedQuad(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** "10.10.5.0" or "fd10:0:0:5::". */
export function formatAddress(ip: Address): string {
  return typeof ip === "bigint" ? formatIp6(ip) : formatDottedQuad(ip);
}

/** A route as `ip route` prints it: "10.10.5.0/24 via 172.31.254.12 dev #3 onlink proto 111". */
export function describeRoute(route: Route<Address>): string {
  let text = `${formatAddress(route.dst)}/${route.prefixLen}`;
  if (route.gateway !== undefined) text += ` via ${formatAddress(route.gateway)}`;
  text += ` dev ${interfaceName(route.linkIndex) ?? `#${route.linkIndex}`}`;
  if (route.onlink) text += " onlink";
  if (route.protocol !== undefined) text += ` proto ${route.protocol}`;
  return text;
}

/** A vxlan device's settings, as `ip link add … type vxlan` takes them. */
export interface VxlanOptions {
  readonly vni: number;
  /** The underlay device's index (`dev`). */
  readonly link: number;
  /** The local address (`local`): IPv4, or IPv6 for a device over an IPv6 underlay. */
  readonly local: Address;
  readonly learning: boolean;
  /** The UDP destination port (`dstport`). */
  readonly port: number;
}

/** IFLA_INFO_DATA for a vxlan link. */
export function vxlanData(options: VxlanOptions): Attr[] {
  return [
    u32Attr(IFLA_VXLAN_ID, options.vni),
    u32Attr(IFLA_VXLAN_LINK, options.link),
    typeof options.local === "bigint"
      ? ip6Attr(IFLA_VXLAN_LOCAL6, options.local)
      : ip4Attr(IFLA_VXLAN_LOCAL, options.local),
    u8Attr(IFLA_VXLAN_LEARNING, options.learning ? 1 : 0),
    u16BeAttr(IFLA_VXLAN_PORT, options.port),
  ];
}

/**
 * An ipip device's settings, as `ip link add … type ipip local IP dev LINK ttl TTL
 * [no]pmtudisc` takes them. Remote is always any: one device reaches every peer, the
 * outer destination is each route's gateway.
 */
export interface IptunOptions {
  /** The local address (`local`): outer source, and what the kernel matches arrivals on. */
  readonly local: number;
  /** The underlay device's index (`dev`); 0 for none. */
  readonly link: number;
  /** Outer TTL; 0 copies the inner packet's (`ttl inherit`). */
  readonly ttl: number;
  /** Path MTU discovery: the outer header's DF bit (`pmtudisc`; off is `nopmtudisc`). */
  readonly pmtudisc: boolean;
}

/**
 * IFLA_INFO_DATA for an ipip link, in the order flannel's netlink library writes it:
 * LOCAL, LINK (only when set), PMTUDISC, TTL, TOS 0, PROTO 0 ("any", as flannel and
 * iproute2 send it). The ENCAP_* attributes that both also send as zeros are left out:
 * absent, the kernel sets up no encapsulation, as with zeros.
 */
export function iptunData(options: IptunOptions): Attr[] {
  return [
    ip4Attr(IFLA_IPTUN_LOCAL, options.local),
    ...(options.link ? [u32Attr(IFLA_IPTUN_LINK, options.link)] : []),
    u8Attr(IFLA_IPTUN_PMTUDISC, options.pmtudisc ? 1 : 0),
    u8Attr(IFLA_IPTUN_TTL, options.ttl),
    u8Attr(IFLA_IPTUN_TOS, 0),
    u8Attr(IFLA_IPTUN_PROTO, 0),
  ];
}

/** A link from an RTM_NEWLINK message: index, name, flags, MTU, kind, MAC, vxlan or ipip settings. */
export function parseLink(m: Message): LinkInfo {
  const attrs = parseAttrs(m.body, 16);
  const info = attrs.get(IFLA_LINKINFO);
  const infoAttrs = info ? parseAttrs(info, 0) : undefined;
  const kind = infoAttrs?.get(IFLA_INFO_KIND);
  const data = infoAttrs?.get(IFLA_INFO_DATA);
  const address = attrs.get(IFLA_ADDRESS);
  let vxlan: LinkInfo["vxlan"];
  if (kind && cstringOf(kind) === "vxlan" && data) {
    const v = parseAttrs(data, 0);
    vxlan = {
      vni: v.get(IFLA_VXLAN_ID)?.getUint32(0, true) ?? 0,
      port: v.get(IFLA_VXLAN_PORT)?.getUint16(0, false) ?? 0,
      local: readAddress(v.get(IFLA_VXLAN_LOCAL6)) ??
        v.get(IFLA_VXLAN_LOCAL)?.getUint32(0, false) ??
        0,
      link: v.get(IFLA_VXLAN_LINK)?.getUint32(0, true) ?? 0,
      learning: (v.get(IFLA_VXLAN_LEARNING)?.getUint8(0) ?? 1) !== 0,
    };
  }
  let iptun: LinkInfo["iptun"];
  if (kind && cstringOf(kind) === "ipip" && data) {
    const t = parseAttrs(data, 0);
    iptun = {
      local: t.get(IFLA_IPTUN_LOCAL)?.getUint32(0, false) ?? 0,
      remote: t.get(IFLA_IPTUN_REMOTE)?.getUint32(0, false) ?? 0,
      link: t.get(IFLA_IPTUN_LINK)?.getUint32(0, true) ?? 0,
      ttl: t.get(IFLA_IPTUN_TTL)?.getUint8(0) ?? 0,
      // The kernel reports PMTUDISC always; absent it would mean its default, on.
      pmtudisc: (t.get(IFLA_IPTUN_PMTUDISC)?.getUint8(0) ?? 1) !== 0,
    };
  }
  return {
    vxlan,
    ...(iptun ? { iptun } : {}),
    index: m.body.getInt32(4, true),
    flags: m.body.getUint32(8, true),
    name: cstringOf(attrs.get(IFLA_IFNAME)!),
    mtu: attrs.get(IFLA_MTU)?.getUint32(0, true) ?? 0,
    kind: kind ? cstringOf(kind) : undefined,
    mac: address && address.byteLength === 6 ? formatMac(address) : undefined,
  };
}
