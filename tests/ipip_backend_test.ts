/**
 * The ipip backend against a recording netlink socket: every rtnetlink message it sends,
 * byte for byte and in order, for each path (a fresh host, adopting flanneld's device,
 * recreating a stale one, peers through the tunnel and with DirectRouting, a kernel
 * without ipip, the probe), and how it reads the kernel's ipip link dump.
 *
 * How the expected bytes were checked: this machine's kernel has no ipip, so no ipip
 * message can be checked against what the kernel accepts here. Each one was derived by
 * hand, field by field as the comments say, from the struct layouts (nlmsghdr 16 B,
 * ifinfomsg 16 B, ifaddrmsg 8 B, rtmsg 12 B, rtattr 4 B + value padded to 4; all little
 * endian except addresses, which are in network order) and the attribute numbers of
 * linux/if_tunnel.h (IFLA_IPTUN_LINK 1, LOCAL 2, REMOTE 3, TTL 4, TOS 5, PROTO 9,
 * PMTUDISC 10, FWMARK 20, ENCAP_TYPE 15, ENCAP_FLAGS 16, ENCAP_SPORT 17, ENCAP_DPORT 18;
 * read in /usr/include/linux/if_tunnel.h and the kernel's uapi header). The link create
 * was then compared with what iproute2 sends for `ip link add flannel.ipip mtu 1480 type
 * ipip local 172.31.254.11 dev <#> ttl inherit nopmtudisc`, captured with `strace -e
 * trace=sendmsg -X raw` (iproute2 sends it; this kernel then answers EOPNOTSUPP, "Unknown
 * device type"): the same IFNAME, MTU, KIND, LOCAL, LINK, PMTUDISC 0, TTL 0, TOS 0 and
 * PROTO 0; iproute2 also sends FWMARK 0 and ENCAP_TYPE/FLAGS/SPORT/DPORT 0, which are the
 * kernel's defaults when absent, writes KIND without its NUL, and orders the attributes
 * differently. flanneld's library (vishvananda/netlink v1.2.1-beta.2, addIptunAttrs)
 * sends LOCAL, PMTUDISC 0, TTL 0, TOS 0, the ENCAP zeros and PROTO 0, and no LINK.
 * Route, address and link-set messages have the layouts iproute2's were checked against in
 * tests/netlink_codec_test.ts.
 *
 * The setting: underlay eth0 at index 3 with 172.31.254.11/24 and MTU 1500; flannel.ipip
 * gets index 4 when made; this host leases 10.10.5.0/24; peer A 10.10.6.0/24 is at
 * 172.31.254.12 (same segment), peer B 10.10.7.0/24 at 192.0.2.7 (elsewhere). Sequence
 * numbers are 1: each message is encoded alone.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/netlink.ts";
import {
  AF_INET,
  encodeRequests,
  ifinfomsg,
  IFLA_IFNAME,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  type Message,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  parseLink,
  type Request,
  type Route,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWLINK,
  stringAttr,
  u32Attr,
} from "../ffi/netlink_codec.ts";
import { EEXIST, EOPNOTSUPP } from "../ffi/libc.ts";
import { IPIP_MISSING, IpipBackend, ipipUnavailable } from "../lib/backends/ipip.ts";
import { BACKENDS, createBackend } from "../lib/backends/registry.ts";
import { parseNetworkConfig } from "../lib/config.ts";
import { parseIp4 } from "../lib/ip.ts";
import { encodeLeaseValue, type Lease } from "../lib/lease.ts";
import { OverlayError } from "../lib/errors.ts";

const ip = (text: string) => parseIp4(text)!;
const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
/** Hex written a field per group, with `// comments`, as one string of hex digits. */
function wire(text: string): string {
  return text.split("\n").map((line) => line.split("//")[0].replace(/\s+/g, "")).join("");
}
const bytes = (text: string) =>
  new Uint8Array(wire(text).match(/../g)!.map((h) => parseInt(h, 16)));

// ---- the expected messages ------------------------------------------------------------

/** `ip link show` (a dump): what the backend asks first, for a device of its name. */
const GETLINK = wire(`
  20000000 1200 0103 01000000 00000000  // nlmsghdr: len 32, RTM_GETLINK 18, REQUEST|DUMP 0x301, seq 1, pid 0
  00 00 0000 00000000 00000000 00000000 // ifinfomsg: family 0, pad, type 0, index 0, flags 0, change 0
`);

/** `ip link add flannel.ipip mtu 1480 type ipip local 172.31.254.11 dev #3 ttl inherit nopmtudisc` */
const CREATE = wire(`
  80000000 1000 0506 01000000 00000000  // nlmsghdr: len 128, RTM_NEWLINK 16, REQUEST|ACK|EXCL|CREATE 0x605
  00 00 0000 00000000 00000000 00000000 // ifinfomsg: all 0 (the kernel picks the index)
  1100 0300 666c616e6e656c2e69706970 00 000000 // IFLA_IFNAME 3, len 17: "flannel.ipip" NUL, 3 pad
  0800 0400 c8050000                    // IFLA_MTU 4: 1480 = 0x5c8
  4400 1280                             // IFLA_LINKINFO 18 | NLA_F_NESTED 0x8000, len 68
  0900 0100 69706970 00 000000          //   IFLA_INFO_KIND 1, len 9: "ipip" NUL, 3 pad
  3400 0280                             //   IFLA_INFO_DATA 2 | NESTED, len 52
  0800 0200 ac1ffe0b                    //     IFLA_IPTUN_LOCAL 2: 172.31.254.11
  0800 0100 03000000                    //     IFLA_IPTUN_LINK 1: u32 3 (eth0)
  0500 0a00 00 000000                   //     IFLA_IPTUN_PMTUDISC 10: 0 (no DF on the outer header)
  0500 0400 00 000000                   //     IFLA_IPTUN_TTL 4: 0 (inherit the inner TTL)
  0500 0500 00 000000                   //     IFLA_IPTUN_TOS 5: 0
  0500 0900 00 000000                   //     IFLA_IPTUN_PROTO 9: 0 (any, as flannel and iproute2)
`);

/** `ip link set dev #INDEX mtu 1480` */
const setMtu = (index: string) =>
  wire(`
  28000000 1000 0500 01000000 00000000  // nlmsghdr: len 40, RTM_NEWLINK, REQUEST|ACK 0x5
  00 00 0000 ${index} 00000000 00000000 // ifinfomsg: index, flags 0, change 0
  0800 0400 c8050000                    // IFLA_MTU 4: 1480
`);

/** `ip addr replace 10.10.5.0/32 dev #INDEX` (flannel's <subnet.ip>/32: no broadcast route) */
const setAddress = (index: string) =>
  wire(`
  28000000 1400 0505 01000000 00000000  // nlmsghdr: len 40, RTM_NEWADDR 20, REQUEST|ACK|REPLACE|CREATE 0x505
  02 20 00 00 ${index}                  // ifaddrmsg: AF_INET, prefixlen 32, flags 0, scope universe, index
  0800 0200 0a0a0500                    // IFA_LOCAL 2: 10.10.5.0
  0800 0100 0a0a0500                    // IFA_ADDRESS 1: 10.10.5.0
`);

/** `ip link set dev #INDEX up` */
const setUp = (index: string) =>
  wire(`
  20000000 1000 0500 01000000 00000000  // nlmsghdr: len 32, RTM_NEWLINK, REQUEST|ACK
  00 00 0000 ${index} 01000000 01000000 // ifinfomsg: index, flags IFF_UP, change IFF_UP
`);

/** `ip link del #INDEX` */
const deleteLink = (index: string) =>
  wire(`
  20000000 1100 0500 01000000 00000000  // nlmsghdr: len 32, RTM_DELLINK 17, REQUEST|ACK
  00 00 0000 ${index} 00000000 00000000 // ifinfomsg: index
`);

/** `ip route add|replace 10.10.6.0/24 via 172.31.254.12 dev flannel.ipip onlink proto 111` */
const tunnelRoute = (flags: "0506" | "0505") =>
  wire(`
  3c000000 1800 ${flags} 01000000 00000000 // nlmsghdr: len 60, RTM_NEWROUTE 24, add: |EXCL|CREATE 0x605, replace: |REPLACE|CREATE 0x505
  02 18 00 00 fe 6f 00 01               // rtmsg: AF_INET, dst_len 24, src_len 0, tos 0, table main 254, proto 111, scope universe, unicast
  04000000                              //   rtm_flags: RTNH_F_ONLINK 4 (the gateway is not on flannel.ipip)
  0800 0100 0a0a0600                    // RTA_DST 1: 10.10.6.0
  0800 0400 04000000                    // RTA_OIF 4: 4 (flannel.ipip)
  0800 0f00 fe000000                    // RTA_TABLE 15: 254
  0800 0500 ac1ffe0c                    // RTA_GATEWAY 5: 172.31.254.12, the outer destination
`);

/** `ip route del 10.10.6.0/24 dev flannel.ipip proto 111` (only a route with our mark goes) */
const TUNNEL_ROUTE_DELETE = wire(`
  34000000 1900 0500 01000000 00000000  // nlmsghdr: len 52, RTM_DELROUTE 25, REQUEST|ACK
  02 18 00 00 fe 6f 00 01 04000000      // rtmsg as above (flags onlink), proto 111
  0800 0100 0a0a0600                    // RTA_DST: 10.10.6.0
  0800 0400 04000000                    // RTA_OIF: 4
  0800 0f00 fe000000                    // RTA_TABLE: 254
`);

/** DirectRouting, peer A on our segment: `ip route add 10.10.6.0/24 via 172.31.254.12 dev eth0 proto 111` */
const DIRECT_ROUTE_ADD = wire(`
  3c000000 1800 0506 01000000 00000000  // nlmsghdr: len 60, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
  02 18 00 00 fe 6f 00 01 00000000      // rtmsg: as above, rtm_flags 0 (the gateway is on eth0)
  0800 0100 0a0a0600                    // RTA_DST: 10.10.6.0
  0800 0400 03000000                    // RTA_OIF: 3 (eth0)
  0800 0f00 fe000000                    // RTA_TABLE: 254
  0800 0500 ac1ffe0c                    // RTA_GATEWAY: 172.31.254.12
`);

/** `ip route del 10.10.6.0/24 dev eth0 proto 111` */
const DIRECT_ROUTE_DELETE = wire(`
  34000000 1900 0500 01000000 00000000  // nlmsghdr: len 52, RTM_DELROUTE, REQUEST|ACK
  02 18 00 00 fe 6f 00 01 00000000      // rtmsg: proto 111, no flags
  0800 0100 0a0a0600                    // RTA_DST: 10.10.6.0
  0800 0400 03000000                    // RTA_OIF: 3
  0800 0f00 fe000000                    // RTA_TABLE: 254
`);

/** DirectRouting, peer B elsewhere: `ip route add 10.10.7.0/24 via 192.0.2.7 dev flannel.ipip onlink proto 111` */
const OFF_SEGMENT_ROUTE_ADD = wire(`
  3c000000 1800 0506 01000000 00000000  // nlmsghdr: len 60, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
  02 18 00 00 fe 6f 00 01 04000000      // rtmsg: onlink
  0800 0100 0a0a0700                    // RTA_DST: 10.10.7.0
  0800 0400 04000000                    // RTA_OIF: 4 (flannel.ipip)
  0800 0f00 fe000000                    // RTA_TABLE: 254
  0800 0500 c0000207                    // RTA_GATEWAY: 192.0.2.7
`);

/** `ip -4 route show table main` (a dump): the reconciler's look at the kernel. */
const GETROUTE = wire(`
  1c000000 1a00 0103 01000000 00000000  // nlmsghdr: len 28, RTM_GETROUTE 26, REQUEST|DUMP 0x301
  02 00 00 00 00 00 00 00 00000000      // rtmsg: AF_INET, the rest 0
`);

/** The probe: `ip link add ovlprobe1a2b type ipip` (no settings: it is deleted at once). */
const PROBE_CREATE = wire(`
  44000000 1000 0506 01000000 00000000  // nlmsghdr: len 68, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE
  00 00 0000 00000000 00000000 00000000 // ifinfomsg: all 0
  1100 0300 6f766c70726f626531613262 00 000000 // IFLA_IFNAME, len 17: "ovlprobe1a2b" NUL, 3 pad
  1000 1280                             // IFLA_LINKINFO | NESTED, len 16
  0900 0100 69706970 00 000000          //   IFLA_INFO_KIND, len 9: "ipip" NUL
`);

/**
 * The body (after nlmsghdr) of the kernel's RTM_NEWLINK for a flannel.ipip as flanneld
 * makes it, at index 9, in the order the kernel's ipip_fill_info writes the data.
 */
const FLANNELD_DEVICE = bytes(`
  00 00 0003 09000000 80000000 00000000 // ifinfomsg: type ARPHRD_TUNNEL 768, index 9, flags NOARP, change 0
  1100 0300 666c616e6e656c2e69706970 00 000000 // IFLA_IFNAME: "flannel.ipip"
  0800 0400 c8050000                    // IFLA_MTU: 1480
  7400 1200                             // IFLA_LINKINFO (the kernel sets no NESTED flag here), len 116
  0900 0100 69706970 00 000000          //   IFLA_INFO_KIND: "ipip"
  6400 0200                             //   IFLA_INFO_DATA, len 100
  0800 0100 00000000                    //     IFLA_IPTUN_LINK: 0 (flanneld binds no device)
  0800 0200 ac1ffe0b                    //     IFLA_IPTUN_LOCAL: 172.31.254.11
  0800 0300 00000000                    //     IFLA_IPTUN_REMOTE: 0.0.0.0 (any)
  0500 0400 00 000000                   //     IFLA_IPTUN_TTL: 0
  0500 0500 00 000000                   //     IFLA_IPTUN_TOS: 0
  0500 0900 00 000000                   //     IFLA_IPTUN_PROTO: 0
  0500 0a00 00 000000                   //     IFLA_IPTUN_PMTUDISC: 0
  0800 1400 00000000                    //     IFLA_IPTUN_FWMARK 20: 0
  0600 0f00 0000 0000                   //     IFLA_IPTUN_ENCAP_TYPE 15: none
  0600 1100 0000 0000                   //     IFLA_IPTUN_ENCAP_SPORT 17: 0
  0600 1200 0000 0000                   //     IFLA_IPTUN_ENCAP_DPORT 18: 0
  0600 1000 0000 0000                   //     IFLA_IPTUN_ENCAP_FLAGS 16: 0
`);

// ---- the recording socket and the setting ----------------------------------------------

/**
 * A netlink socket that sends nothing: it records every request and dump request, answers
 * requests with `answer`, and dumps with the links and routes it is given.
 */
class RecordingNetlink extends Netlink {
  sent: Request[] = [];
  answer: (request: Request) => number = () => 0;
  linkReplies: Message[] = [];
  routeList: Route[] = [];

  override batch(requests: Request[]): number[] {
    this.sent.push(...requests);
    return requests.map((request) => this.answer(request));
  }

  override dump(type: number, header: Uint8Array, attrs: Request["attrs"] = []): Message[] {
    this.sent.push({ type, flags: NLM_F_REQUEST | NLM_F_DUMP, header, attrs });
    return type === RTM_GETLINK ? this.linkReplies : [];
  }

  /** The route dump reads the kernel's replies in place: here it records the request alone. */
  override routes(): Route[] {
    const header = new Uint8Array(12);
    header[0] = AF_INET;
    this.sent.push({ type: RTM_GETROUTE, flags: NLM_F_REQUEST | NLM_F_DUMP, header, attrs: [] });
    return this.routeList;
  }

  /** What was sent since the last call, each message encoded alone (sequence number 1). */
  take(): string[] {
    const sent = this.sent.map((request) => hex(encodeRequests([request], 1)));
    this.sent = [];
    return sent;
  }
}

/** A link as a dump reply carries it: index, name, MTU, and a kind when given. */
function linkReply(index: number, name: string, kind?: string): Message {
  const attrs = [stringAttr(IFLA_IFNAME, name), u32Attr(IFLA_MTU, 1500)];
  if (kind) attrs.push({ type: IFLA_LINKINFO, value: [stringAttr(IFLA_INFO_KIND, kind)] });
  const encoded = encodeRequests([{
    type: RTM_NEWLINK,
    flags: 0,
    header: ifinfomsg({ index }),
    attrs,
  }], 1);
  return { type: RTM_NEWLINK, body: new DataView(encoded.slice(16).buffer) };
}

const ETH0 = linkReply(3, "eth0");
const indexes: Record<string, number> = { "eth0": 3, "flannel.ipip": 4, "ovlprobe1a2b": 7 };

function setting(options: { directRouting?: boolean } = {}) {
  const netlink = new RecordingNetlink();
  netlink.linkReplies = [ETH0];
  const system = { netlink: () => netlink, interfaceIndex: (name: string) => indexes[name] ?? 0 };
  const config = parseNetworkConfig(JSON.stringify({
    Network: "10.10.0.0/16",
    Backend: { Type: "ipip", DirectRouting: options.directRouting ?? false },
  }));
  const underlay = {
    name: "eth0",
    ip: ip("172.31.254.11"),
    prefixLen: 24,
    addresses: [ip("172.31.254.11")],
    publicIp: ip("172.31.254.11"),
    mtu: 1500,
  };
  const backend = new IpipBackend(
    { config, underlay, device: "flannel.ipip", stateDir: "/nonexistent" },
    system,
  );
  return { netlink, backend };
}

function lease(subnet: string, publicIp: string): Lease {
  return {
    subnet: { ip: ip(subnet), prefixLen: 24 },
    attrs: { publicIp: ip(publicIp), backendType: "ipip" },
    etcdLeaseId: "1",
    modRevision: "1",
    createRevision: "1",
  };
}

const OWN = lease("10.10.5.0", "172.31.254.11");
const PEER_A = lease("10.10.6.0", "172.31.254.12");
const PEER_B = lease("10.10.7.0", "192.0.2.7");

// ---- the tests -------------------------------------------------------------------------

Deno.test("a fresh host: flannel.ipip is made as flanneld's, gets its MTU, <subnet>.0/32 and up", async () => {
  const { netlink, backend } = setting();
  await backend.start(OWN);
  assert.deepEqual(netlink.take(), [
    GETLINK,
    CREATE,
    setMtu("04000000"),
    setAddress("04000000"),
    setUp("04000000"),
  ]);
  await backend.stop();
});

Deno.test("a peer is routed through flannel.ipip onlink via its public IP; rewritten, then removed", async () => {
  const { netlink, backend } = setting();
  await backend.start(OWN);
  netlink.take();
  backend.addPeer(PEER_A);
  assert.deepEqual(netlink.take(), [tunnelRoute("0506")]);
  backend.addPeer(PEER_A); // the lease changed: our own route is replaced, not added
  assert.deepEqual(netlink.take(), [tunnelRoute("0505")]);
  backend.removePeer(PEER_A);
  assert.deepEqual(netlink.take(), [TUNNEL_ROUTE_DELETE]);
  await backend.stop();
});

Deno.test("a route already there sends the reconciler to dump the routes, and someone else's is left alone", async () => {
  const { netlink, backend } = setting();
  await backend.start(OWN);
  netlink.take();
  // Someone's route to peer A's subnet via another gateway (proto boot), as a dump has it.
  netlink.routeList = [{
    dst: ip("10.10.6.0"),
    prefixLen: 24,
    linkIndex: 3,
    gateway: ip("172.31.254.99"),
    onlink: false,
    protocol: 3,
  }];
  netlink.answer = () => EEXIST;
  backend.addPeer(PEER_A);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(netlink.take(), [tunnelRoute("0506"), GETROUTE]);
  assert.equal(backend.observe().conflicts.length, 1);
  assert.match(
    backend.observe().conflicts[0],
    /^route 10\.10\.6\.0\/24 \(held by: 10\.10\.6\.0\/24 via 172\.31\.254\.99 /,
  );
  await backend.stop();
});

Deno.test("DirectRouting: a peer on this segment is routed via eth0, one elsewhere through the tunnel", async () => {
  const { netlink, backend } = setting({ directRouting: true });
  await backend.start(OWN);
  netlink.take();
  backend.addPeer(PEER_A);
  backend.addPeer(PEER_B);
  assert.deepEqual(netlink.take(), [DIRECT_ROUTE_ADD, OFF_SEGMENT_ROUTE_ADD]);
  backend.removePeer(PEER_A);
  assert.deepEqual(netlink.take(), [DIRECT_ROUTE_DELETE]);
  await backend.stop();
});

Deno.test("the kernel's dump of flanneld's flannel.ipip reads as local 172.31.254.11, remote any, no dev, ttl inherit, nopmtudisc", () => {
  const link = parseLink({ type: RTM_NEWLINK, body: new DataView(FLANNELD_DEVICE.buffer) });
  assert.equal(link.name, "flannel.ipip");
  assert.equal(link.index, 9);
  assert.equal(link.mtu, 1480);
  assert.equal(link.kind, "ipip");
  assert.deepEqual(link.iptun, {
    local: ip("172.31.254.11"),
    remote: 0,
    link: 0,
    ttl: 0,
    pmtudisc: false,
  });
});

Deno.test("flanneld's flannel.ipip is adopted as it is: no create, only MTU, address and up", async () => {
  const { netlink, backend } = setting();
  netlink.linkReplies = [ETH0, { type: RTM_NEWLINK, body: new DataView(FLANNELD_DEVICE.buffer) }];
  await backend.start(OWN);
  assert.deepEqual(netlink.take(), [
    GETLINK,
    setMtu("09000000"),
    setAddress("09000000"),
    setUp("09000000"),
  ]);
  await backend.stop();
});

Deno.test("a flannel.ipip with another local address is deleted and made anew", async () => {
  const { netlink, backend } = setting();
  const stale = FLANNELD_DEVICE.slice();
  stale.set([172, 31, 254, 99], 16 + 20 + 8 + 4 + 12 + 4 + 8 + 4); // IFLA_IPTUN_LOCAL's value
  netlink.linkReplies = [ETH0, { type: RTM_NEWLINK, body: new DataView(stale.buffer) }];
  assert.equal(parseLink(netlink.linkReplies[1]).iptun?.local, ip("172.31.254.99"));
  await backend.start(OWN);
  assert.deepEqual(netlink.take(), [
    GETLINK,
    deleteLink("09000000"),
    CREATE,
    setMtu("04000000"),
    setAddress("04000000"),
    setUp("04000000"),
  ]);
  await backend.stop();
});

Deno.test("a flannel.ipip that is not an ipip device is left alone, and the start fails naming it", async () => {
  const { netlink, backend } = setting();
  netlink.linkReplies = [ETH0, linkReply(9, "flannel.ipip", "vxlan")];
  await assert.rejects(
    () => backend.start(OWN),
    /^OverlayError: ipip backend: device flannel\.ipip exists and is not an ipip device \(remove it, or choose another name with --device\)$/,
  );
  assert.deepEqual(netlink.take(), [GETLINK]);
  await backend.stop();
});

Deno.test("a kernel without ipip: the create answers EOPNOTSUPP, the start fails with one line naming the fix, nothing more is sent", async () => {
  const { netlink, backend } = setting();
  netlink.answer = (request) =>
    request.type === RTM_NEWLINK && (request.flags & NLM_F_CREATE) ? EOPNOTSUPP : 0;
  const error = await backend.start(OWN).then(() => undefined, (error) => error);
  assert.ok(error instanceof OverlayError);
  assert.equal(
    error.message,
    "ipip: this kernel has no ipip device type (modprobe ipip; or use vxlan)",
  );
  assert.equal(error.message, IPIP_MISSING);
  assert.deepEqual(netlink.take(), [GETLINK, CREATE]);
  await backend.stop();
});

Deno.test("another ipip device already on our address and underlay (EEXIST) is named, not touched", async () => {
  const { netlink, backend } = setting();
  // Another network's device, made with our settings: the kernel refuses a second one.
  const theirs = FLANNELD_DEVICE.slice();
  theirs.set([0x6f, 0x74, 0x68, 0x65, 0x72, 0x30, 0], 16 + 4); // IFLA_IFNAME: "other0" NUL
  theirs.set([3], 16 + 20 + 8 + 4 + 12 + 4 + 4); // IFLA_IPTUN_LINK: 3 (eth0)
  netlink.linkReplies = [ETH0, { type: RTM_NEWLINK, body: new DataView(theirs.buffer) }];
  netlink.answer = (request) =>
    request.type === RTM_NEWLINK && (request.flags & NLM_F_CREATE) ? EEXIST : 0;
  await assert.rejects(
    () => backend.start(OWN),
    /^OverlayError: ipip backend: device other0 is already the ipip tunnel from 172\.31\.254\.11 on eth0 \(remove it, or give overlay that name with --device\)$/,
  );
  assert.deepEqual(netlink.take(), [GETLINK, CREATE, GETLINK]);
  await backend.stop();
});

Deno.test("the probe: an ipip link already here answers at once; else a probe device tells, and goes", () => {
  const probe = (links: Message[], answer: number) => {
    const netlink = new RecordingNetlink();
    netlink.linkReplies = links;
    netlink.answer = () => answer;
    const system = { netlink: () => netlink, interfaceIndex: (name: string) => indexes[name] ?? 0 };
    return { verdict: ipipUnavailable(system, "ovlprobe1a2b"), sent: netlink.take() };
  };
  // The module is loaded: the kernel's tunl0 is in every namespace.
  assert.deepEqual(probe([ETH0, linkReply(2, "tunl0", "ipip")], 0), {
    verdict: undefined,
    sent: [GETLINK],
  });
  // No ipip link: the kernel is asked to make one; without the kind it answers EOPNOTSUPP.
  assert.deepEqual(probe([ETH0], EOPNOTSUPP), {
    verdict: IPIP_MISSING,
    sent: [GETLINK, PROBE_CREATE],
  });
  // It could: the probe device is deleted at once.
  assert.deepEqual(probe([ETH0], 0), {
    verdict: undefined,
    sent: [GETLINK, PROBE_CREATE, deleteLink("07000000")],
  });
  // Any other refusal means the kind is known (a tunl0 not listed stands in the way).
  assert.deepEqual(probe([ETH0], EEXIST), { verdict: undefined, sent: [GETLINK, PROBE_CREATE] });
});

Deno.test("ipip in the registry: flanneld's device name, MTU underlay − 20, a lease with no BackendData, cleanup knows its device", () => {
  const config = parseNetworkConfig(`{"Network":"10.10.0.0/16","Backend":{"Type":"ipip"}}`);
  assert.equal(BACKENDS.ipip.defaultDevice(config), "flannel.ipip");
  const underlay = {
    name: "eth0",
    ip: ip("172.31.254.11"),
    prefixLen: 24,
    addresses: [ip("172.31.254.11")],
    publicIp: ip("172.31.254.11"),
    mtu: 1500,
  };
  const backend = createBackend({ config, underlay, stateDir: "/nonexistent" });
  assert.equal(backend.type, "ipip");
  assert.equal(backend.mtu, 1480);
  assert.equal(backend.device, "flannel.ipip");
  assert.equal(backend.backendData, undefined);
  assert.deepEqual(backend.owned(), { device: { name: "flannel.ipip", kind: "ipip" }, files: [] });
  assert.equal(
    encodeLeaseValue({
      publicIp: underlay.publicIp,
      backendType: backend.type,
      backendData: backend.backendData,
    }),
    `{"PublicIP":"172.31.254.11","PublicIPv6":null,"BackendType":"ipip"}`,
  );
  const withMtu = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","Backend":{"Type":"ipip","MTU":1400}}`,
  );
  assert.equal(createBackend({ config: withMtu, underlay, stateDir: "/nonexistent" }).mtu, 1400);
});
