/**
 * The udp backend in a dual-stack network: IPv6 inner packets over the IPv4 underlay,
 * checked on two hosts running the backend directly (lab/udp_pair.ts), and the refusal
 * of IPv6-only networks.
 */
import assert from "node:assert/strict";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab } from "../lab/lab.ts";
import { udpHostConfig } from "../lab/udp_host.ts";
import { udpPair } from "../lab/udp_pair.ts";
import { encodeRequests } from "../ffi/netlink_codec.ts";
import { Netlink } from "../ffi/netlink.ts";
import { UdpBackend } from "../lib/backends/udp.ts";
import { parseIp4 } from "../lib/ip.ts";
import { ip6Bytes, parseIp6 } from "../lib/ip6.ts";

const SEND_DATAGRAMS = new URL("./fixtures/send_datagrams.ts", import.meta.url).pathname;

function backendWith(spec: { enableIPv4?: boolean; ipv6?: boolean; underlayMtu?: number }) {
  const ip = parseIp4("172.31.252.1")!;
  return new UdpBackend({
    config: udpHostConfig({
      network: "10.10.0.0/16",
      subnetLen: 24,
      ...(spec.ipv6 ? { ipv6Network: "fd10:0:0:100::/56", ipv6SubnetLen: 64 } : {}),
      enableIPv4: spec.enableIPv4,
      underlayIp: "172.31.252.1",
      underlayMtu: 1500,
      device: "flannel0",
      stateDir: "/nonexistent",
      countersFile: "/nonexistent",
      own: { subnet: "10.10.1.0/24", publicIp: "172.31.252.1" },
      peers: [],
    }),
    underlay: {
      name: "eth0",
      ip,
      prefixLen: 24,
      addresses: [ip],
      publicIp: ip,
      mtu: spec.underlayMtu ?? 1500,
    },
    device: "flannel0",
    stateDir: "/nonexistent",
  });
}

Deno.test("the udp backend refuses an IPv6-only network in one line naming the fix", () => {
  assert.throws(
    () => backendWith({ enableIPv4: false, ipv6: true }),
    (error: Error) =>
      error.message ===
        "udp backend needs an IPv4 underlay and IPv4 network; for IPv6-only networks use vxlan or host-gw",
  );
  assert.throws(
    () => backendWith({ ipv6: true, underlayMtu: 1300 }),
    /device MTU 1272 is below IPv6's minimum of 1280 \(the IPv6 Network needs an underlay MTU of at least 1308\)/,
  );
  backendWith({ ipv6: true }); // dual stack: fine
  backendWith({}); // IPv4 only: fine
});

/** An IPv6 packet (next header 59, no payload unless `extra`) as hex, for send_datagrams. */
function ipv6Hex(
  source: string,
  destination: string,
  options: { hops?: number; extra?: number; claim?: number; cut?: number } = {},
): string {
  const extra = options.extra ?? 8;
  const bytes = new Uint8Array(40 + extra);
  bytes[0] = 0x60;
  new DataView(bytes.buffer).setUint16(4, options.claim ?? extra);
  bytes[6] = 59;
  bytes[7] = options.hops ?? 64;
  bytes.set(ip6Bytes(parseIp6(source)!), 8);
  bytes.set(ip6Bytes(parseIp6(destination)!), 24);
  return [...bytes.subarray(0, options.cut ?? bytes.length)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name:
    "dual stack over udp: IPv6 inner packets cross both ways, TCP over IPv6 crosses without a drop, and an unowned IPv6 overlay address gets an ICMPv6 no-route the kernel accepts",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "u6" });
    const [h1, h2] = await udpPair(lab, { ipv6: true });
    const ping6 = await lab.exec(h1.ns, ["ping", "-6", "-c", "3", "-i", "0.2", h2.tunIp6]);
    assert.match(ping6.stdout, /3 received/, ping6.stdout);
    const ping4 = await lab.exec(h2.ns, ["ping", "-c", "3", "-i", "0.2", h1.tunIp]);
    assert.match(ping4.stdout, /3 received/, ping4.stdout);
    // The TUN has exactly our addresses: no link-local, so no IPv6 chatter into it.
    const addresses = await lab.exec(h1.ns, ["ip", "-6", "addr", "show", "dev", "flannel0"]);
    assert.match(addresses.stdout, /inet6 fd10:0:0:101::\/128 scope global/);
    assert.doesNotMatch(addresses.stdout, /fe80/);
    const routes = await lab.exec(h1.ns, ["ip", "-6", "route", "show", "dev", "flannel0"]);
    assert.match(routes.stdout, /fd10:0:0:100::\/56 proto 111/);

    const unreachable = await lab.exec(h1.ns, [
      "ping",
      "-6",
      "-c",
      "1",
      "-W",
      "1",
      "fd10:0:0:1ff::1",
    ]);
    assert.match(
      unreachable.stdout,
      /From fd10:0:0:100:: icmp_seq=1 Destination unreachable: No route/,
    );
    const gbps = await lab.iperf(h2.ns, h1.ns, h2.tunIp6, 2);
    assert.ok(gbps > 0.1, `TCP over IPv6 ${gbps} Gbit/s`);
    await waitFor(() => h1.counters().icmp_unreachable_sent === 1, { what: "ICMPv6 counted" });
    const c1 = h1.counters();
    const c2 = h2.counters();
    assert.equal(c1.drop_no_route_v6, 1);
    // Every segment out of TSO6 super-packets arrived whole and was coalesced back.
    for (const [name, counters] of [["h1", c1], ["h2", c2]] as const) {
      const drops = Object.entries(counters).filter(([key, value]) =>
        key.startsWith("drop_") && key !== "drop_no_route_v6" && value !== 0
      );
      assert.deepEqual(drops, [], `${name} dropped nothing else`);
    }
    assert.ok(c2.rx_packets > 10_000, `h2 received ${c2.rx_packets} packets`);
  },
});

Deno.test({
  name:
    "hostile IPv6 datagrams (cut short, wrong lengths, spoofed, not for us, hop limit spent, from no peer) are dropped and counted by reason",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "u6" });
    const [h1, h2] = await udpPair(lab, { ipv6: true });
    const peer = "fd10:0:0:102::5";
    const us = "fd10:0:0:101::";
    const send = async (payloads: string[], from?: string) => {
      const result = await lab.exec(h2.ns, [
        "deno",
        "run",
        "-A",
        SEND_DATAGRAMS,
        JSON.stringify({ to: h1.underlayIp, port: 8285, kind: "hex", count: 50, payloads, from }),
      ]);
      assert.equal(result.code, 0, result.stderr);
    };
    await send([
      ipv6Hex(peer, us), // accepted
      ipv6Hex(peer, us, { cut: 20 }), // a header cut short
      ipv6Hex(peer, us, { claim: 100 }), // payload length beyond the datagram
      ipv6Hex(peer, us, { claim: 0 }), // bytes beyond the payload length
      ipv6Hex(peer, us, { extra: 1500 }), // larger than the MTU
      ipv6Hex("fd10:0:0:103::1", us), // a source outside the sender's IPv6 subnet
      ipv6Hex("fd10:0:0:101::9", us), // our own subnet as source
      ipv6Hex(peer, "fd10:0:0:102::9"), // not for us
      ipv6Hex(peer, "2001:db8::1"), // not for us, outside the Network
      ipv6Hex(peer, us, { hops: 1 }),
    ]);
    await lab.ip(h2.ns, "addr", "add", "172.31.252.9/24", "dev", "eth0");
    await send([ipv6Hex(peer, us)], "172.31.252.9");
    const expected = {
      rx_packets: 50,
      drop_malformed_v6: 200,
      drop_spoofed_source_v6: 100,
      drop_not_for_us_v6: 100,
      drop_hop_limit_expired: 50,
      drop_unknown_peer: 50,
    };
    await waitFor(() => h1.counters().drop_unknown_peer === 50, { what: "all datagrams counted" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const counters = h1.counters();
    const nonZero = Object.fromEntries(
      Object.entries(counters).filter(([key, value]) =>
        value !== 0 && (key.startsWith("drop_") || key === "rx_packets")
      ),
    );
    assert.deepEqual(nonZero, expected);
    const ping = await lab.exec(h2.ns, ["ping", "-6", "-c", "2", "-i", "0.2", h1.tunIp6]);
    assert.match(ping.stdout, /2 received/, "the data path still runs");
  },
});

Deno.test({
  name: "in an IPv4-only network an IPv6 inner packet from a peer is dropped as malformed",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "u6" });
    const [h1, h2] = await udpPair(lab);
    const result = await lab.exec(h2.ns, [
      "deno",
      "run",
      "-A",
      SEND_DATAGRAMS,
      JSON.stringify({
        to: h1.underlayIp,
        port: 8285,
        kind: "hex",
        count: 20,
        payloads: [ipv6Hex("fd10:0:0:102::5", "fd10:0:0:101::")],
      }),
    ]);
    assert.equal(result.code, 0, result.stderr);
    await waitFor(() => h1.counters().drop_malformed === 20, { what: "IPv6 datagrams counted" });
    assert.equal(h1.counters().rx_packets, 0);
    const addresses = await lab.exec(h1.ns, ["ip", "-6", "addr", "show", "dev", "flannel0"]);
    assert.equal(addresses.stdout.trim(), "", "IPv6 stays off on the TUN");
    const ping = await lab.exec(h2.ns, ["ping", "-c", "2", "-i", "0.2", h1.tunIp]);
    assert.match(ping.stdout, /2 received/);
  },
});

Deno.test("the TUN's IPv6 address and route are the netlink messages iproute2 sends for them", () => {
  // Checked against `strace -e trace=sendmsg` of iproute2 for
  //   ip -6 addr replace fd10:0:0:101::/128 dev flannel0 nodad
  //   ip -6 route replace fd10:0:0:100::/56 dev flannel0 proto 111
  // field by field: RTM_NEWADDR REQUEST|ACK|REPLACE|CREATE, AF_INET6 prefixlen 128
  // IFA_F_NODAD scope UNIVERSE, IFA_LOCAL and IFA_ADDRESS; RTM_NEWROUTE the same flags,
  // AF_INET6 dst_len 56 table MAIN proto 0x6f scope UNIVERSE type UNICAST, RTA_DST, RTA_OIF.
  // Ours adds RTA_TABLE 254 to the route, as every IPv4 route request here does.
  const netlink = new Netlink(); // builds requests; nothing is sent
  const requests = [
    netlink.addressReplaceRequest(3, parseIp6("fd10:0:0:101::")!, 128),
    netlink.routeReplaceRequest({
      dst: parseIp6("fd10:0:0:100::")!,
      prefixLen: 56,
      linkIndex: 3,
      protocol: 111,
    }),
  ];
  const hex = [...encodeRequests(requests, 1)].map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(
    hex,
    "40000000140005050100000000000000" + "0a80020003000000" +
      "14000200fd100000000001010000000000000000" + "14000100fd100000000001010000000000000000" +
      "40000000180005050200000000000000" + "0a380000fe6f000100000000" +
      "14000100fd100000000001000000000000000000" + "080004000300000008000f00fe000000",
  );
});
