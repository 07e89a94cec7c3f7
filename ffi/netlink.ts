/**
 * rtnetlink operations over an AF_NETLINK socket: links, addresses, routes, neighbours
 * and FDB entries, without iproute2. Each reads like the `ip` command it replaces (named
 * in its doc comment); the bytes are built by ffi/netlink_codec.ts. Requests can be
 * batched: many messages go out in one send and their acknowledgements are read back
 * together.
 */
import {
  check,
  closeFd,
  EADDRNOTAVAIL,
  EINTR,
  ENODEV,
  errno,
  ESRCH,
  interfaceName,
  libc,
  SystemError,
} from "./libc.ts";
import { ip6FromBytes } from "../lib/ip6.ts";
import {
  type Address,
  addressAttr,
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  AF_NETLINK,
  align4,
  type Attr,
  describeRoute,
  encodeRequests,
  familyOf,
  formatAddress,
  IFA_ADDRESS,
  IFA_F_NODAD,
  IFA_LOCAL,
  ifaddrmsg,
  IFF_UP,
  ifinfomsg,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_TXQLEN,
  iptunData,
  type IptunOptions,
  type LinkInfo,
  macBytes,
  type Message,
  NDA_DST,
  NDA_LLADDR,
  NDA_PROTOCOL,
  ndmsg,
  type Neighbour,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NTF_SELF,
  NUD_PERMANENT,
  parseAttrs,
  parseLink,
  readAddress,
  type Request,
  type Route,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_TABLE,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  rtmsg,
  RTNH_F_ONLINK,
  SOCK_CLOEXEC,
  SOCK_RAW,
  stringAttr,
  u32Attr,
  u8Attr,
  vxlanData,
  type VxlanOptions,
} from "./netlink_codec.ts";

export type {
  Address,
  IptunOptions,
  LinkInfo,
  Neighbour,
  Request,
  Route,
  VxlanOptions,
} from "./netlink_codec.ts";
export {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  describeRoute,
  formatAddress,
  NUD_PERMANENT,
} from "./netlink_codec.ts";

/** What `ip link add` makes: a name, a kind ("vxlan", "wireguard", …) and its settings. */
export interface LinkCreateOptions {
  readonly name: string;
  readonly kind: string;
  readonly mtu?: number;
  readonly mac?: string;
  readonly link?: number;
  /** For kind "vxlan": `id VNI dev LINK local IP dstport PORT [no]learning`. */
  readonly vxlan?: VxlanOptions;
  /** For kind "ipip": `local IP dev LINK ttl TTL [no]pmtudisc`. */
  readonly iptun?: IptunOptions;
}

/** What `ip route get DST` answers: the device, the gateway and the preferred source. */
export interface RouteLookup<A extends Address = number> {
  readonly linkIndex: number;
  readonly gateway?: A;
  readonly source?: A;
}

/**
 * An rtnetlink socket. Not thread-safe; the agent keeps one on its main thread.
 * Every call is synchronous: the kernel answers rtnetlink requests immediately.
 * `protocol` picks another netlink family's socket (ffi/genetlink.ts opens NETLINK_GENERIC
 * with it); requests, acknowledgements and dumps work alike there.
 */
export class Netlink {
  readonly #fd: number;
  #seq = 1;
  readonly #receive = new Uint8Array(1 << 16);

  constructor(protocol: number = NETLINK_ROUTE) {
    this.#fd = check(
      libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol),
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

  /**
   * Sends one request that the kernel answers with one message (not a dump) and returns
   * that message; throws SystemError with `what` when it answers with an error.
   */
  query(request: Request, what: string): Message {
    const seq = this.#seq++;
    const bytes = encodeRequests([request], seq);
    check(libc().send(this.#fd, bytes, bytes.length, 0), "netlink send");
    let found: Message | undefined;
    while (!found) {
      const n = this.#recv();
      this.#forEachMessage(n, (type, view, offset, seqOf, length) => {
        if (seqOf !== seq || found) return;
        if (type === NLMSG_ERROR) {
          const code = -view.getInt32(offset + 16, true);
          // An acknowledgement (code 0) before the answer is not the answer.
          if (code !== 0) throw new SystemError("netlink", code, what);
          return;
        }
        const copy = this.#receive.slice(offset + 16, offset + length);
        found = { type, body: new DataView(copy.buffer) };
      });
    }
    return found;
  }

  /**
   * Sends a dump request and returns every reply message. An error the kernel reports in
   * the closing NLMSG_DONE (a generic netlink dump that failed half way) is thrown.
   */
  dump(type: number, header: Uint8Array, attrs: Attr[] = []): Message[] {
    const messages: Message[] = [];
    this.#dumpEach(type, header, attrs, (msgType, _view, start, end) => {
      const copy = this.#receive.slice(start, end);
      messages.push({ type: msgType, body: new DataView(copy.buffer) });
    });
    return messages;
  }

  /**
   * dump(), with each reply message handed to `visit` where it lies in the receive buffer
   * (its body from `start` to `end` of `view`, valid during the call only): a dump of
   * 15,000 routes and neighbours makes no copy and no view per message or attribute.
   */
  #dumpEach(
    type: number,
    header: Uint8Array,
    attrs: Attr[],
    visit: (type: number, view: DataView, start: number, end: number) => void,
  ): void {
    const seq = this.#seq++;
    const bytes = encodeRequests([{ type, flags: NLM_F_REQUEST | NLM_F_DUMP, header, attrs }], seq);
    check(libc().send(this.#fd, bytes, bytes.length, 0), "netlink send");
    let done = false;
    while (!done) {
      const n = this.#recv();
      this.#forEachMessage(n, (msgType, view, offset, seqOf, length) => {
        if (seqOf !== seq) return;
        if (msgType === NLMSG_DONE) {
          const code = length >= 20 ? -view.getInt32(offset + 16, true) : 0;
          if (code > 0) throw new SystemError("netlink dump", code);
          done = true;
        } else if (msgType === NLMSG_ERROR) {
          const code = -view.getInt32(offset + 16, true);
          if (code !== 0) throw new SystemError("netlink dump", code);
          done = true;
        } else visit(msgType, view, offset + 16, Math.min(offset + length, n));
      });
    }
  }

  #recv(): number {
    while (true) {
      const n = libc().recv(this.#fd, this.#receive, this.#receive.length, 0);
      if (n >= 0) return n;
      const code = errno();
      if (code !== EINTR) throw new SystemError("netlink recv", code);
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
    return this.dump(RTM_GETLINK, ifinfomsg()).filter((m) => m.type === RTM_NEWLINK).map(parseLink);
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
    }, `link ${linkName(index)} up`);
  }

  /** `ip link set dev INDEX mtu MTU` */
  linkSetMtu(index: number, mtu: number): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index }),
      attrs: [u32Attr(IFLA_MTU, mtu)],
    }, `link ${linkName(index)} mtu ${mtu}`);
  }

  /** `ip link set dev INDEX address MAC` */
  linkSetAddress(index: number, mac: string): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index }),
      attrs: [{ type: IFLA_ADDRESS, value: macBytes(mac) }],
    }, `link ${linkName(index)} address ${mac}`);
  }

  /** `ip link set dev INDEX txqueuelen LENGTH` */
  linkSetTxQueueLength(index: number, length: number): void {
    this.request({
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ifinfomsg({ index }),
      attrs: [u32Attr(IFLA_TXQLEN, length)],
    }, `link ${linkName(index)} txqueuelen ${length}`);
  }

  /**
   * `ip link add NAME [mtu MTU] [address MAC] type KIND [data…]`. Throws EEXIST when a
   * link of that name exists, EOPNOTSUPP when the kernel has no such kind (no module).
   */
  linkCreate(options: LinkCreateOptions): void {
    this.request(this.linkCreateRequest(options), `link add ${options.name} type ${options.kind}`);
  }

  /** The request of `ip link add NAME [mtu MTU] [address MAC] type KIND [data…]`. */
  linkCreateRequest(options: LinkCreateOptions): Request {
    const attrs: Attr[] = [stringAttr(IFLA_IFNAME, options.name)];
    if (options.mtu) attrs.push(u32Attr(IFLA_MTU, options.mtu));
    if (options.mac) attrs.push({ type: IFLA_ADDRESS, value: macBytes(options.mac) });
    if (options.link) attrs.push(u32Attr(IFLA_LINK, options.link));
    const info: Attr[] = [stringAttr(IFLA_INFO_KIND, options.kind)];
    if (options.vxlan) info.push({ type: IFLA_INFO_DATA, value: vxlanData(options.vxlan) });
    if (options.iptun) info.push({ type: IFLA_INFO_DATA, value: iptunData(options.iptun) });
    attrs.push({ type: IFLA_LINKINFO, value: info });
    return {
      type: RTM_NEWLINK,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
      header: ifinfomsg(),
      attrs,
    };
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
      [ENODEV],
    );
  }

  // ---- addresses -----------------------------------------------------------------

  /**
   * The request for `ip addr replace IP/LEN dev INDEX`; for an IPv6 address
   * `ip -6 addr replace IP/LEN dev INDEX nodad` (usable at once, no duplicate detection:
   * the agent's addresses come from its own lease).
   */
  addressReplaceRequest(index: number, ip: Address, prefixLen: number): Request {
    const family = familyOf(ip);
    return {
      type: RTM_NEWADDR,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: ifaddrmsg(index, prefixLen, {
        family,
        flags: family === AF_INET6 ? IFA_F_NODAD : 0,
      }),
      attrs: [addressAttr(IFA_LOCAL, ip), addressAttr(IFA_ADDRESS, ip)],
    };
  }

  /** `ip addr replace IP/LEN dev INDEX` (idempotent; `nodad` for IPv6). */
  addressReplace(index: number, ip: Address, prefixLen: number): void {
    this.request(
      this.addressReplaceRequest(index, ip, prefixLen),
      `addr replace ${formatAddress(ip)}/${prefixLen} dev ${linkName(index)}`,
    );
  }

  /** `ip addr del IP/LEN dev INDEX` (absent is fine); IPv4 or IPv6 by the address. */
  addressDelete(index: number, ip: Address, prefixLen: number): void {
    this.request(
      {
        type: RTM_DELADDR,
        flags: NLM_F_REQUEST | NLM_F_ACK,
        header: ifaddrmsg(index, prefixLen, { family: familyOf(ip) }),
        attrs: [addressAttr(IFA_LOCAL, ip)],
      },
      `addr del ${formatAddress(ip)}/${prefixLen} dev ${linkName(index)}`,
      [EADDRNOTAVAIL, ENODEV],
    );
  }

  /** `ip -4 addr show dev INDEX`: the IPv4 addresses with prefix lengths. */
  addresses(index: number): { ip: number; prefixLen: number }[] {
    return this.dump(RTM_GETADDR, ifaddrmsg(0, 0)).filter((m) =>
      m.body.getUint32(4, true) === index && m.body.getUint8(0) === AF_INET
    ).map((m) => {
      const local = parseAttrs(m.body, 8).get(IFA_LOCAL) ?? parseAttrs(m.body, 8).get(IFA_ADDRESS);
      return { ip: local ? local.getUint32(0, false) : 0, prefixLen: m.body.getUint8(1) };
    });
  }

  /** `ip -6 addr show dev INDEX`: the IPv6 addresses (link-local too) with prefix lengths. */
  addresses6(index: number): { ip: bigint; prefixLen: number }[] {
    return this.dump(RTM_GETADDR, ifaddrmsg(0, 0, { family: AF_INET6 })).filter((m) =>
      m.body.getUint32(4, true) === index && m.body.getUint8(0) === AF_INET6
    ).map((m) => {
      const attrs = parseAttrs(m.body, 8);
      const ip = readAddress(attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS));
      return { ip: typeof ip === "bigint" ? ip : 0n, prefixLen: m.body.getUint8(1) };
    });
  }

  // ---- routes --------------------------------------------------------------------

  /**
   * The request for `ip route replace DST/LEN [via GW] dev INDEX [onlink]` (`ip -6 route …`
   * for an IPv6 route).
   */
  routeReplaceRequest(route: Route<Address>): Request {
    const attrs = [
      addressAttr(RTA_DST, route.dst),
      u32Attr(RTA_OIF, route.linkIndex),
      u32Attr(RTA_TABLE, RT_TABLE_MAIN),
    ];
    if (route.gateway !== undefined) attrs.push(addressAttr(RTA_GATEWAY, route.gateway));
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
  routeAddRequest(route: Route<Address>): Request {
    const request = this.routeReplaceRequest(route);
    return { ...request, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL };
  }

  /** The request for `ip route del DST/LEN dev INDEX [proto P]`. */
  routeDeleteRequest(route: Route<Address>): Request {
    const attrs = [
      addressAttr(RTA_DST, route.dst),
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
  routeReplace(route: Route<Address>): void {
    this.request(this.routeReplaceRequest(route), `route replace ${describeRoute(route)}`);
  }

  /** `ip route add DST/LEN [via GW] dev INDEX [onlink]`; throws EEXIST when one is there. */
  routeAdd(route: Route<Address>): void {
    this.request(this.routeAddRequest(route), `route add ${describeRoute(route)}`);
  }

  /** `ip route del DST/LEN dev INDEX [proto P]` (absent is fine). */
  routeDelete(route: Route<Address>): void {
    this.request(this.routeDeleteRequest(route), `route del ${describeRoute(route)}`, [ESRCH]);
  }

  /**
   * `ip route get DST` (`ip -6 route get DST` for an IPv6 address): the route the kernel
   * would use for DST, with its device, gateway and preferred source address; undefined
   * when there is none (unreachable).
   */
  routeGet(dst: number): RouteLookup<number> | undefined;
  routeGet(dst: bigint): RouteLookup<bigint> | undefined;
  routeGet(dst: Address): RouteLookup<Address> | undefined {
    const seq = this.#seq++;
    const bytes = encodeRequests([routeGetRequest(dst)], seq);
    check(libc().send(this.#fd, bytes, bytes.length, 0), "netlink send");
    let found: RouteLookup<Address> | undefined;
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
          gateway: readAddress(attrs.get(RTA_GATEWAY)),
          source: readAddress(attrs.get(RTA_PREFSRC)),
        };
      });
    }
    return found;
  }

  /** `ip -4 route show table main`: destination, prefix, device, gateway, flags. */
  routes(): Route[] {
    return this.#routes(AF_INET) as Route[];
  }

  /** `ip -6 route show table main`: destination, prefix, device, gateway, flags. */
  routes6(): Route<bigint>[] {
    return this.#routes(AF_INET6) as Route<bigint>[];
  }

  #routes(family: number): Route<Address>[] {
    const header = new Uint8Array(12);
    header[0] = family;
    const zero = family === AF_INET6 ? 0n : 0;
    const routes: Route<Address>[] = [];
    this.#dumpEach(RTM_GETROUTE, header, [], (_, view, start, end) => {
      if (end - start < 12 || view.getUint8(start) !== family) return;
      let table = view.getUint8(start + 4);
      let dst: Address = zero;
      let gateway: Address | undefined;
      let linkIndex = 0;
      for (let at = start + 12; at + 4 <= end;) {
        const length = view.getUint16(at, true);
        if (length < 4 || at + length > end) break;
        const attr = view.getUint16(at + 2, true) & 0x3fff;
        if (attr === RTA_DST) dst = addressAt(view, at + 4, length - 4) ?? zero;
        else if (attr === RTA_GATEWAY) gateway = addressAt(view, at + 4, length - 4);
        else if (attr === RTA_OIF && length >= 8) linkIndex = view.getUint32(at + 4, true);
        else if (attr === RTA_TABLE && length >= 8) table = view.getUint32(at + 4, true);
        at += align4(length);
      }
      if (table !== RT_TABLE_MAIN) return;
      routes.push({
        dst,
        prefixLen: view.getUint8(start + 1),
        linkIndex,
        gateway,
        onlink: (view.getUint32(start + 8, true) & RTNH_F_ONLINK) !== 0,
        protocol: view.getUint8(start + 5),
      });
    });
    return routes;
  }

  // ---- neighbours and FDB --------------------------------------------------------

  /**
   * The request for `ip neigh replace IP lladdr MAC dev INDEX nud permanent [proto P]`
   * (`ip -6 neigh …`, an NDP entry, for an IPv6 address).
   */
  neighbourReplaceRequest(index: number, ip: Address, mac: string, protocol = 0): Request {
    const attrs = [addressAttr(NDA_DST, ip), { type: NDA_LLADDR, value: macBytes(mac) }];
    if (protocol !== 0) attrs.push(u8Attr(NDA_PROTOCOL, protocol));
    return {
      type: RTM_NEWNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: ndmsg(familyOf(ip), index, NUD_PERMANENT, 0),
      attrs,
    };
  }

  /** The request for `ip neigh del IP dev INDEX` (IPv4 or IPv6 by the address). */
  neighbourDeleteRequest(index: number, ip: Address): Request {
    return {
      type: RTM_DELNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ndmsg(familyOf(ip), index, 0, 0),
      attrs: [addressAttr(NDA_DST, ip)],
    };
  }

  /**
   * The request for `bridge fdb replace MAC dev INDEX dst IP self permanent`; the VTEP
   * address `dst` is IPv4 or IPv6 (a vxlan device over an IPv6 underlay).
   */
  fdbReplaceRequest(index: number, mac: string, dst: Address): Request {
    return {
      type: RTM_NEWNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
      header: ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF),
      attrs: [{ type: NDA_LLADDR, value: macBytes(mac) }, addressAttr(NDA_DST, dst)],
    };
  }

  /** The request for `bridge fdb del MAC dev INDEX dst IP self`. */
  fdbDeleteRequest(index: number, mac: string, dst: Address): Request {
    return {
      type: RTM_DELNEIGH,
      flags: NLM_F_REQUEST | NLM_F_ACK,
      header: ndmsg(AF_BRIDGE, index, 0, NTF_SELF),
      attrs: [{ type: NDA_LLADDR, value: macBytes(mac) }, addressAttr(NDA_DST, dst)],
    };
  }

  /**
   * `ip neigh show dev INDEX` (AF_INET), `ip -6 neigh show dev INDEX` (AF_INET6) or
   * `bridge fdb show dev INDEX` (AF_BRIDGE).
   */
  neighbours(family: number, index: number): Neighbour[] {
    const neighbours: Neighbour[] = [];
    this.#dumpEach(RTM_GETNEIGH, ndmsg(family, 0, 0, 0), [], (_, view, start, end) => {
      if (end - start < 12) return;
      if (view.getInt32(start + 4, true) !== index || view.getUint8(start) !== family) return;
      let dst: Address | undefined;
      let mac: string | undefined;
      let protocol = 0;
      for (let at = start + 12; at + 4 <= end;) {
        const length = view.getUint16(at, true);
        if (length < 4 || at + length > end) break;
        const attr = view.getUint16(at + 2, true) & 0x3fff;
        if (attr === NDA_DST) dst = addressAt(view, at + 4, length - 4);
        else if (attr === NDA_LLADDR && length === 10) mac = macAt(view, at + 4);
        else if (attr === NDA_PROTOCOL && length >= 5) protocol = view.getUint8(at + 4);
        at += align4(length);
      }
      neighbours.push({
        ip: typeof dst === "number" ? dst : undefined,
        ip6: typeof dst === "bigint" ? dst : undefined,
        mac,
        state: view.getUint16(start + 8, true),
        protocol,
      });
    });
    return neighbours;
  }
}

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address at `offset`; undefined for other lengths. */
function addressAt(view: DataView, offset: number, length: number): Address | undefined {
  if (length === 4) return view.getUint32(offset, false);
  if (length === 16) return ip6FromBytes(new Uint8Array(view.buffer, view.byteOffset + offset, 16));
  return undefined;
}

/** The six bytes at `offset` as "02:aa:00:00:00:01". */
function macAt(view: DataView, offset: number): string {
  let text = "";
  for (let i = 0; i < 6; i++) {
    const byte = view.getUint8(offset + i);
    text += (i > 0 ? ":" : "") + (byte < 16 ? "0" : "") + byte.toString(16);
  }
  return text;
}

/** `ip route get DST` (`ip -6 route get DST`) on a netlink socket of its own. */
export function routeToward(dst: number): RouteLookup<number> | undefined;
export function routeToward(dst: bigint): RouteLookup<bigint> | undefined;
export function routeToward(dst: Address): RouteLookup<Address> | undefined {
  const netlink = new Netlink();
  try {
    return typeof dst === "bigint" ? netlink.routeGet(dst) : netlink.routeGet(dst);
  } finally {
    netlink.close();
  }
}

/** The request of `ip route get DST` / `ip -6 route get DST`. */
export function routeGetRequest(dst: Address): Request {
  const header = new Uint8Array(12);
  header[0] = familyOf(dst);
  header[1] = typeof dst === "bigint" ? 128 : 32;
  return { type: RTM_GETROUTE, flags: NLM_F_REQUEST, header, attrs: [addressAttr(RTA_DST, dst)] };
}

/** An interface's name for messages, or its index when it has none now. */
function linkName(index: number): string {
  return interfaceName(index) ?? `#${index}`;
}
