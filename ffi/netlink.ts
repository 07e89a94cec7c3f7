/**
 * rtnetlink over an AF_NETLINK socket: links, addresses, routes, neighbours and FDB
 * entries, without iproute2. Wire encoding stays in this module; the operations read
 * like the `ip` commands they replace. Requests can be batched: many messages go out
 * in one send and their acknowledgements are read back together.
 *
 * Layouts (all host byte order, x86_64):
 *   nlmsghdr   16 B: u32 len, u16 type, u16 flags, u32 seq, u32 pid
 *   ifinfomsg  16 B: u8 family, u8 pad, u16 type, i32 index, u32 flags, u32 change
 *   ifaddrmsg   8 B: u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index
 *   rtmsg      12 B: u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags
 *   ndmsg      12 B: u8 family, pad, u16 pad, i32 ifindex, u16 state, u8 flags, u8 type
 *   rtattr      4 B: u16 len, u16 type, then the value, padded to 4
 */
import { check, closeFd, errno, interfaceName, libc, SystemError } from "./libc.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_TXQLEN = 13;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_PROTOCOL = 12;

export const AF_INET = 2;
export const AF_BRIDGE = 7;
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

export function stringAttr(type: number, text: string): Attr {
  return { type, value: new TextEncoder().encode(text + "\0") };
}

function attrsLength(attrs: Attr[]): number {
  let total = 0;
  for (const attr of attrs) total += align4(4 + valueLength(attr.value));
  return total;
}

function valueLength(value: Uint8Array | Attr[]): number {
  return value instanceof Uint8Array ? value.length : attrsLength(value);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function writeAttrs(view: DataView, bytes: Uint8Array, offset: number, attrs: Attr[]): number {
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

function ifinfomsg(
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

function ifaddrmsg(index: number, prefixLen: number, scope = RT_SCOPE_UNIVERSE): Uint8Array {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, AF_INET);
  view.setUint8(1, prefixLen);
  view.setUint8(3, scope);
  view.setUint32(4, index, true);
  return bytes;
}

/** `protocol` for a write defaults to boot; for a delete, 0 matches any maker. */
function rtmsg(route: Route, defaultProtocol = RTPROT_BOOT): Uint8Array {
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, AF_INET);
  view.setUint8(1, route.prefixLen);
  view.setUint8(4, RT_TABLE_MAIN);
  view.setUint8(5, route.protocol ?? defaultProtocol);
  view.setUint8(6, route.gateway === undefined ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
  view.setUint8(7, RTN_UNICAST);
  view.setUint32(8, route.onlink ? RTNH_F_ONLINK : 0, true);
  return bytes;
}

function ndmsg(family: number, index: number, state: number, flags: number): Uint8Array {
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, family);
  view.setInt32(4, index, true);
  view.setUint16(8, state, true);
  view.setUint8(10, flags);
  return bytes;
}

/** An IPv4 route in the main table. */
export interface Route {
  readonly dst: number;
  readonly prefixLen: number;
  readonly linkIndex: number;
  readonly gateway?: number;
  readonly onlink?: boolean;
  /**
   * rtm_protocol: who made the route (`proto` in `ip route`). Writes default to boot (3),
   * as `ip route add` does; a delete that names one removes only a route made by it.
   */
  readonly protocol?: number;
}

/** A neighbour (IPv4) or FDB (AF_BRIDGE) entry as a dump reports it. */
export interface Neighbour {
  readonly ip?: number;
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
    readonly local: number;
    readonly link: number;
    readonly learning: boolean;
  };
}

function macBytes(mac: string): Uint8Array {
  return new Uint8Array(mac.split(":").map((part) => parseInt(part, 16)));
}

function formatMac(view: DataView): string {
  const parts: string[] = [];
  for (let i = 0; i < view.byteLength; i++) {
    parts.push(view.getUint8(i).toString(16).padStart(2, "0"));
  }
  return parts.join(":");
}

function cstringOf(view: DataView): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.subarray(0, end < 0 ? bytes.length : end));
}

/**
 * An rtnetlink socket. Not thread-safe; the agent keeps one on its main thread.
 * Every call is synchronous: the kernel answers rtnetlink requests immediately.
 */
export class Netlink {
  readonly #fd: number;
  #seq = 1;
  readonly #receive = new Uint8Array(1 << 16);

  constructor() {
    this.#fd = check(
      libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE),
      "socket(AF_NETLINK)",
    );
  }

  close(): void {
    closeFd(this.#fd);
  }

  /**
   * Sends requests in one write and reads every acknowledgement. Returns the errno of
   * each request (0 = success), in order; the caller decides which errors matter.
   */
  batch(requests: Request[]): number[] {
    const results: number[] = [];
    // Stay well under the socket's receive buffer with the acknowledgements.
    for (let start = 0; start < requests.length; start += 256) {
      const chunk = requests.slice(start, start + 256);
      const seq = this.#seq;
      this.#seq += chunk.length;
      const bytes = encodeRequests(chunk, seq);
      check(libc().send(this.#fd, bytes, bytes.length, 0), "netlink send");
      const codes = new Array<number>(chunk.length).fill(-1);
      let pending = chunk.length;
      while (pending > 0) {
        const n = this.#recv();
        this.#forEachMessage(n, (type, view, offset, seqOf) => {
          const index = seqOf - seq;
          if (type === NLMSG_ERROR && index >= 0 && index < chunk.length && codes[index] === -1) {
            codes[index] = -view.getInt32(offset + 16, true);
            pending--;
          }
        });
      }
      results.push(...codes);
    }
    return results;
  }

  /** Sends one request; throws SystemError with `what` on failure. */
  request(request: Request, what: string, ignore: number[] = []): void {
    const [code] = this.batch([request]);
    if (code !== 0 && !ignore.includes(code)) throw new SystemError("netlink", code, what);
  }

  /** Sends a dump request and returns every reply message. */
  dump(type: number, header: Uint8Array, attrs: Attr[] = []): Message[] {
    const seq = this.#seq++;
    const bytes = encodeRequests([{ type, flags: NLM_F_REQUEST | NLM_F_DUMP, header, attrs }], seq);
    check(libc().send(this.#fd, bytes, bytes.length, 0), "netlink send");
    const messages: Message[] = [];
    let done = false;
    while (!done) {
      const n = this.#recv();
      this.#forEachMessage(n, (msgType, view, offset, seqOf, length) => {
        if (seqOf !== seq) return;
        if (msgType === NLMSG_DONE) done = true;
        else if (msgType === NLMSG_ERROR) {
          const code = -view.getInt32(offset + 16, true);
          if (code !== 0) throw new SystemError("netlink dump", code);
          done = true;
        } else {
          const copy = this.#receive.slice(offset + 16, offset + length);
          messages.push({ type: msgType, body: new DataView(copy.buffer) });
        }
      });
    }
    return messages;
  }

  #recv(): number {
    while (true) {
      const n = libc().recv(this.#fd, this.#receive, this.#receive.length, 0);
      if (n >= 0) return n;
      const code = errno();
      if (code !== 4) throw new SystemError("netlink recv", code);
    }
  }

  #forEachMessage(
    n: number,
    visit: (type: number, view: DataView, offset: number, seq: number, length: number) => void,
  ): void {
    const view = new DataView(this.#receive.buffer, 0, n);
    let offset = 0;
    while (offset + 16 <= n) {
      const length = view.getUint32(offset, true);
      if (length < 16) break;
      visit(
        view.getUint16(offset + 4, true),
        view,
        offset,
        view.getUint32(offset + 8, true),
        length,
      );
      offset += align4(length);
    }
  }

  // ---- links ---------------------------------------------------------------------

  /** `ip link show`: every link with its index, name, flags, MTU, kind and MAC. */
  links(): LinkInfo[] {
    return this.dump(RTM_GETLINK, ifinfomsg()).filter((m) => m.type === RTM_NEWLINK).map((m) => {
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
          local: v.get(IFLA_VXLAN_LOCAL)?.getUint32(0, false) ?? 0,
          link: v.get(IFLA_VXLAN_LINK)?.getUint32(0, true) ?? 0,
          learning: (v.get(IFLA_VXLAN_LEARNING)?.getUint8(0) ?? 1) !== 0,
        };
      }
      return {
        vxlan,
        index: m.body.getInt32(4, true),
        flags: m.body.getUint32(8, true),
        name: cstringOf(attrs.get(IFLA_IFNAME)!),
        mtu: attrs.get(IFLA_MTU)?.getUint32(0, true) ?? 0,
        kind: kind ? cstringOf(kind) : undefined,
        mac: address && address.byteLength === 6 ? formatMac(address) : undefined,
      };
    });
  }

  /** `ip link show NAME`; undefined when there is no such link. */
  link(name: string): LinkInfo | undefined {
    return this.links().find((link) => link.name === name);
  }

  /** `ip link set dev INDEX up` */
  linkSetUp(index: number): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index, flags: IFF_UP, change: IFF_UP }),
      attrs: [],
    }, `link ${index} up`);
  }

  /** `ip link set dev INDEX mtu MTU` */
  linkSetMtu(index: number, mtu: number): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index }),
      attrs: [u32Attr(IFLA_MTU, mtu)],
    }, `link ${index} mtu ${mtu}`);
  }

  /** `ip link set dev INDEX address MAC` */
  linkSetAddress(index: number, mac: string): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index }),
      attrs: [{ type: IFLA_ADDRESS, value: macBytes(mac) }],
    }, `link ${index} address ${mac}`);
  }

  /** `ip link set dev INDEX txqueuelen LENGTH` */
  linkSetTxQueueLength(index: number, length: number): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index }),
      attrs: [u32Attr(IFLA_TXQLEN, length)],
    }, `link ${index} txqueuelen ${length}`);
  }

  /**
   * `ip link add NAME [mtu MTU] [address MAC] type KIND [data…]`. Throws EEXIST when a
   * link of that name exists.
   */
  linkCreate(
    options: {
      name: string;
      kind: string;
      mtu?: number;
      mac?: string;
      link?: number;
      data?: Attr[];
    },
  ): void {
    const attrs: Attr[] = [stringAttr(IFLA_IFNAME, options.name)];
    if (options.mtu) attrs.push(u32Attr(IFLA_MTU, options.mtu));
    if (options.mac) attrs.push({ type: IFLA_ADDRESS, value: macBytes(options.mac) });
    if (options.link) attrs.push(u32Attr(IFLA_LINK, options.link));
    const info: Attr[] = [stringAttr(IFLA_INFO_KIND, options.kind)];
    if (options.data) info.push({ type: IFLA_INFO_DATA, value: options.data });
    attrs.push({ type: IFLA_LINKINFO, value: info });
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
      header: ifinfomsg(),
      attrs,
    }, `link add ${options.name} type ${options.kind}`);
  }

  /** `ip link del INDEX` */
  linkDelete(index: number): void {
    this.request(
      {
        type: RTM_DELLINK,
        flags: NLM_F_REQUEST | NLM_F_ACK,
        header: ifinfomsg({ index }),
        attrs: [],
      },
      `link del ${index}`,
      [19],
    );
  }

  // ---- addresses -----------------------------------------------------------------

  /** `ip addr replace IP/LEN dev INDEX` (idempotent). */
  addressReplace(index: number, ip: number, prefixLen: number): void {
    this.request({
      type: RTM_NEWADDR,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: ifaddrmsg(index, prefixLen),
      attrs: [ip4Attr(IFA_LOCAL, ip), ip4Attr(IFA_ADDRESS, ip)],
    }, `addr replace on link ${index}`);
  }

  /** `ip addr del IP/LEN dev INDEX` (absent is fine). */
  addressDelete(index: number, ip: number, prefixLen: number): void {
    this.request(
      {
        type: RTM_DELADDR,
        flags: NLM_F_REQUEST | NLM_F_ACK,
        header: ifaddrmsg(index, prefixLen),
        attrs: [ip4Attr(IFA_LOCAL, ip)],
      },
      `addr del on link ${index}`,
      [99, 19],
    );
  }

  /** `ip -4 addr show dev INDEX`: the IPv4 addresses with prefix lengths. */
  addresses(index: number): { ip: number; prefixLen: number }[] {
    return this.dump(RTM_GETADDR, ifaddrmsg(0, 0)).filter((m) =>
      m.body.getUint32(4, true) === index
    ).map((m) => {
      const local = parseAttrs(m.body, 8).get(IFA_LOCAL) ?? parseAttrs(m.body, 8).get(IFA_ADDRESS);
      return { ip: local ? local.getUint32(0, false) : 0, prefixLen: m.body.getUint8(1) };
    });
  }

  // ---- routes --------------------------------------------------------------------

  /** The request for `ip route replace DST/LEN [via GW] dev INDEX [onlink]`. */
  routeReplaceRequest(route: Route): Request {
    const attrs = [
      ip4Attr(RTA_DST, route.dst),
      u32Attr(RTA_OIF, route.linkIndex),
      u32Attr(RTA_TABLE, RT_TABLE_MAIN),
    ];
    if (route.gateway !== undefined) attrs.push(ip4Attr(RTA_GATEWAY, route.gateway));
    return {
      type: RTM_NEWROUTE,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: rtmsg(route),
      attrs,
    };
  }

  /**
   * The request for `ip route add DST/LEN [via GW] dev INDEX [onlink]`: it fails with
   * EEXIST when a route to DST/LEN (same metric) exists, whoever made it.
   */
  routeAddRequest(route: Route): Request {
    const request = this.routeReplaceRequest(route);
    return { ...request, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL };
  }

  /** The request for `ip route del DST/LEN dev INDEX [proto P]`. */
  routeDeleteRequest(route: Route): Request {
    const attrs = [
      ip4Attr(RTA_DST, route.dst),
      u32Attr(RTA_OIF, route.linkIndex),
      u32Attr(RTA_TABLE, RT_TABLE_MAIN),
    ];
    return {
      type: RTM_DELROUTE,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: rtmsg(route, 0),
      attrs,
    };
  }

  /** `ip route replace DST/LEN [via GW] dev INDEX [onlink]` */
  routeReplace(route: Route): void {
    this.request(this.routeReplaceRequest(route), `route replace ${describeRoute(route)}`);
  }

  /** `ip route add DST/LEN [via GW] dev INDEX [onlink]`; throws EEXIST when one is there. */
  routeAdd(route: Route): void {
    this.request(this.routeAddRequest(route), `route add ${describeRoute(route)}`);
  }

  /** `ip route del DST/LEN dev INDEX [proto P]` (absent is fine). */
  routeDelete(route: Route): void {
    this.request(this.routeDeleteRequest(route), `route del ${describeRoute(route)}`, [3]);
  }

  /**
   * `ip route get DST`: the route the kernel would use for DST, with its device, gateway
   * and preferred source address; undefined when there is none (unreachable).
   */
  routeGet(dst: number): { linkIndex: number; gateway?: number; source?: number } | undefined {
    const header = new Uint8Array(12);
    header[0] = AF_INET;
    header[1] = 32;
    const seq = this.#seq++;
    const bytes = encodeRequests([{
      type: RTM_GETROUTE,
      flags: NLM_F_REQUEST,
      header,
      attrs: [ip4Attr(RTA_DST, dst)],
    }], seq);
    check(libc().send(this.#fd, bytes, bytes.length, 0), "netlink send");
    let found: { linkIndex: number; gateway?: number; source?: number } | undefined;
    let done = false;
    while (!done) {
      const n = this.#recv();
      this.#forEachMessage(n, (type, view, offset, seqOf, length) => {
        if (seqOf !== seq) return;
        done = true;
        if (type !== RTM_NEWROUTE) return; // NLMSG_ERROR: no route
        const body = new DataView(view.buffer, view.byteOffset + offset + 16, length - 16);
        const attrs = parseAttrs(body, 12);
        found = {
          linkIndex: attrs.get(RTA_OIF)?.getUint32(0, true) ?? 0,
          gateway: attrs.get(RTA_GATEWAY)?.getUint32(0, false),
          source: attrs.get(RTA_PREFSRC)?.getUint32(0, false),
        };
      });
    }
    return found;
  }

  /** `ip -4 route show table main`: destination, prefix, device, gateway, flags. */
  routes(): Route[] {
    const header = new Uint8Array(12);
    header[0] = AF_INET;
    return this.dump(RTM_GETROUTE, header).filter((m) => m.body.getUint8(4) === RT_TABLE_MAIN).map(
      (m) => {
        const attrs = parseAttrs(m.body, 12);
        return {
          dst: attrs.get(RTA_DST)?.getUint32(0, false) ?? 0,
          prefixLen: m.body.getUint8(1),
          linkIndex: attrs.get(RTA_OIF)?.getUint32(0, true) ?? 0,
          gateway: attrs.get(RTA_GATEWAY)?.getUint32(0, false),
          onlink: (m.body.getUint32(8, true) & RTNH_F_ONLINK) !== 0,
          protocol: m.body.getUint8(5),
        };
      },
    );
  }

  // ---- neighbours and FDB --------------------------------------------------------

  /** The request for `ip neigh replace IP lladdr MAC dev INDEX nud permanent [proto P]`. */
  neighbourReplaceRequest(index: number, ip: number, mac: string, protocol = 0): Request {
    const attrs = [ip4Attr(NDA_DST, ip), { type: NDA_LLADDR, value: macBytes(mac) }];
    if (protocol !== 0) attrs.push(u8Attr(NDA_PROTOCOL, protocol));
    return {
      type: RTM_NEWNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: ndmsg(AF_INET, index, NUD_PERMANENT, 0),
      attrs,
    };
  }

  /** The request for `ip neigh del IP dev INDEX`. */
  neighbourDeleteRequest(index: number, ip: number): Request {
    return {
      type: RTM_DELNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ndmsg(AF_INET, index, 0, 0),
      attrs: [ip4Attr(NDA_DST, ip)],
    };
  }

  /** The request for `bridge fdb replace MAC dev INDEX dst IP self permanent`. */
  fdbReplaceRequest(index: number, mac: string, dst: number): Request {
    return {
      type: RTM_NEWNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF),
      attrs: [{ type: NDA_LLADDR, value: macBytes(mac) }, ip4Attr(NDA_DST, dst)],
    };
  }

  /** The request for `bridge fdb del MAC dev INDEX dst IP self`. */
  fdbDeleteRequest(index: number, mac: string, dst: number): Request {
    return {
      type: RTM_DELNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ndmsg(AF_BRIDGE, index, 0, NTF_SELF),
      attrs: [{ type: NDA_LLADDR, value: macBytes(mac) }, ip4Attr(NDA_DST, dst)],
    };
  }

  /** `ip neigh show dev INDEX` (IPv4) or `bridge fdb show dev INDEX` (AF_BRIDGE). */
  neighbours(family: number, index: number): Neighbour[] {
    return this.dump(RTM_GETNEIGH, ndmsg(family, 0, 0, 0)).filter((m) =>
      m.body.getInt32(4, true) === index && m.body.getUint8(0) === family
    ).map((m) => {
      const attrs = parseAttrs(m.body, 12);
      const dst = attrs.get(NDA_DST);
      const lladdr = attrs.get(NDA_LLADDR);
      return {
        ip: dst && dst.byteLength === 4 ? dst.getUint32(0, false) : undefined,
        mac: lladdr && lladdr.byteLength === 6 ? formatMac(lladdr) : undefined,
        state: m.body.getUint16(8, true),
        protocol: attrs.get(NDA_PROTOCOL)?.getUint8(0) ?? 0,
      };
    });
  }
}

function formatDottedQuad(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** A route as `ip route` prints it: "10.10.5.0/24 via 172.31.254.12 dev #3 onlink proto 111". */
export function describeRoute(route: Route): string {
  let text = `${formatDottedQuad(route.dst)}/${route.prefixLen}`;
  if (route.gateway !== undefined) text += ` via ${formatDottedQuad(route.gateway)}`;
  text += ` dev ${interfaceName(route.linkIndex) ?? `#${route.linkIndex}`}`;
  if (route.onlink) text += " onlink";
  if (route.protocol !== undefined) text += ` proto ${route.protocol}`;
  return text;
}

/** `ip route get DST` on a netlink socket of its own. */
export function routeToward(
  dst: number,
): { linkIndex: number; gateway?: number; source?: number } | undefined {
  const netlink = new Netlink();
  try {
    return netlink.routeGet(dst);
  } finally {
    netlink.close();
  }
}
