/** The udp data path's shared peer table: one array read per packet decides who may send what. */
import assert from "node:assert/strict";
import { parseIp4 } from "../lib/ip.ts";
import { ip6Bytes, parseIp6, parseIp6Net } from "../lib/ip6.ts";
import { PeerTable } from "../lib/udp/peer_table.ts";

const ip = (text: string) => parseIp4(text)!;

function table() {
  const peers = PeerTable.create(ip("10.10.0.0"), 16, 24);
  peers.setOwner(ip("10.10.5.0"), ip("192.0.2.5"));
  peers.setOwner(ip("10.10.6.0"), ip("192.0.2.6"));
  peers.setPeers([ip("192.0.2.5"), ip("192.0.2.6")]);
  return peers;
}

Deno.test("owners are found by subnet; addresses outside the Network have none", () => {
  const peers = table();
  assert.equal(peers.ownerOf(ip("10.10.5.77")), ip("192.0.2.5"));
  assert.equal(peers.ownerOf(ip("10.10.7.1")), 0);
  assert.equal(peers.ownerOf(ip("10.11.5.1")), 0);
  peers.setOwner(ip("172.16.0.0"), ip("192.0.2.9")); // outside: ignored
  assert.equal(peers.ownerOf(ip("172.16.0.1")), 0);
});

Deno.test("a sender may carry only sources of its own subnets, and 0 owns nothing", () => {
  const peers = table();
  assert.equal(peers.mayCarry(ip("192.0.2.5"), ip("10.10.5.9")), true);
  assert.equal(peers.mayCarry(ip("192.0.2.5"), ip("10.10.6.9")), false, "another peer's subnet");
  assert.equal(peers.mayCarry(ip("192.0.2.5"), ip("10.10.7.9")), false, "an unowned subnet");
  assert.equal(peers.mayCarry(0, ip("10.10.7.9")), false, "0.0.0.0 and an unowned subnet");
  assert.equal(peers.mayCarry(0, ip("8.8.8.8")), false, "0.0.0.0 and an address outside");
  assert.equal(peers.mayCarry(ip("192.0.2.99"), ip("10.10.5.9")), false, "no lease");
});

Deno.test("the peer set tells unknown senders from peers, and flips atomically", () => {
  const peers = table();
  assert.equal(peers.isPeer(ip("192.0.2.5")), true);
  assert.equal(peers.isPeer(0), false);
  assert.equal(peers.isPeer(ip("192.0.2.99")), false);
  peers.setPeers([ip("192.0.2.6")]);
  assert.equal(peers.isPeer(ip("192.0.2.5")), false);
  assert.equal(peers.isPeer(ip("192.0.2.6")), true);
});

Deno.test("first contacts are counted once per peer until its owner changes", () => {
  const peers = table();
  assert.equal(peers.firstContacts, 0);
  peers.heardFrom(ip("10.10.5.3"), 1000);
  peers.heardFrom(ip("10.10.5.4"), 2000);
  assert.equal(peers.firstContacts, 1);
  assert.equal(peers.lastHeard(ip("10.10.5.0")), 2000);
  peers.setOwner(ip("10.10.5.0"), ip("192.0.2.55")); // a new owner is not yet heard from
  assert.equal(peers.lastHeard(ip("10.10.5.0")), 0);
  peers.heardFrom(ip("10.10.5.3"), 3000);
  assert.equal(peers.firstContacts, 2);
});

// ---- the IPv6 side of a dual-stack network ------------------------------------------

const ip6 = (text: string) => parseIp6(text)!;
const at = (text: string) => ip6Bytes(ip6(text));

function dualStack(network = "fd10:0:0:100::/56", subnetLen = 64) {
  const peers = PeerTable.create(ip("10.10.0.0"), 16, 24, {
    ipv6: { network: parseIp6Net(network)!, subnetLen },
  });
  peers.setOwner(ip("10.10.5.0"), ip("192.0.2.5"));
  peers.setOwner6(ip6("fd10:0:0:105::"), ip("192.0.2.5"));
  peers.setOwner6(ip6("fd10:0:0:106::"), ip("192.0.2.6"));
  peers.setPeers([ip("192.0.2.5"), ip("192.0.2.6")]);
  return peers;
}

Deno.test("IPv6 owners are found by subnet from the address bytes; outside the IPv6 Network none", () => {
  const peers = dualStack();
  assert.equal(peers.hasIpv6, true);
  assert.equal(peers.ownerOf6(at("fd10:0:0:105::77"), 0), ip("192.0.2.5"));
  assert.equal(peers.ownerOf6(at("fd10:0:0:105:ffff:ffff:ffff:ffff"), 0), ip("192.0.2.5"));
  assert.equal(peers.ownerOf6(at("fd10:0:0:106::1"), 0), ip("192.0.2.6"));
  assert.equal(peers.ownerOf6(at("fd10:0:0:107::1"), 0), 0, "unowned subnet");
  assert.equal(peers.ownerOf6(at("fd10:0:0:205::1"), 0), 0, "outside the Network");
  assert.equal(peers.inNetwork6(at("fd10:0:0:1ff::1"), 0), true);
  assert.equal(peers.inNetwork6(at("fd10:0:0:200::"), 0), false);
  // An address at an offset inside a packet buffer.
  const packet = new Uint8Array(64);
  packet.set(at("fd10:0:0:106::9"), 24);
  assert.equal(peers.ownerOf6(packet, 24), ip("192.0.2.6"));
  peers.setOwner6(ip6("fd20::"), ip("192.0.2.9")); // outside: ignored
  assert.equal(peers.ownerOf6(at("fd20::1"), 0), 0);
  peers.setOwner6(ip6("fd10:0:0:106::"), 0);
  assert.equal(peers.ownerOf6(at("fd10:0:0:106::1"), 0), 0, "cleared");
});

Deno.test("IPv6 owner index matches (dst − network) >> (128 − SubnetLen) for unaligned prefixes", () => {
  // Prefixes and subnet lengths off byte boundaries, and near the end of the address.
  const cases: [string, number][] = [
    ["fd10:0:0:100::/57", 64],
    ["fd10:8000::/17", 33],
    ["fd10:0:0:0:ab00::/70", 90],
    ["fd10::ff00:0/105", 127],
    ["fd10::ff00:0/104", 128],
    ["fd10:0:0:100::/48", 72],
  ];
  for (const [text, subnetLen] of cases) {
    const network = parseIp6Net(text)!;
    const peers = PeerTable.create(ip("10.10.0.0"), 16, 24, { ipv6: { network, subnetLen } });
    const count = 2 ** (subnetLen - network.prefixLen);
    const host = (1n << BigInt(128 - subnetLen)) - 1n;
    for (const index of [0, 1, count >> 1, count - 2, count - 1]) {
      if (index < 0 || index >= count) continue;
      const subnet = network.ip + (BigInt(index) << BigInt(128 - subnetLen));
      peers.setOwner6(subnet, 1000 + index);
      for (const address of [subnet, subnet | host]) {
        assert.equal(
          peers.ownerOf6(ip6Bytes(address), 0),
          1000 + index,
          `${text} /${subnetLen} #${index}`,
        );
      }
    }
  }
});

Deno.test("an IPv6 sender may carry only sources of its own IPv6 subnet; heard stamps are per subnet", () => {
  const peers = dualStack();
  assert.equal(peers.mayCarry6(ip("192.0.2.5"), at("fd10:0:0:105::9"), 0), true);
  assert.equal(peers.mayCarry6(ip("192.0.2.5"), at("fd10:0:0:106::9"), 0), false);
  assert.equal(peers.mayCarry6(ip("192.0.2.5"), at("fd10:0:0:107::9"), 0), false);
  assert.equal(peers.mayCarry6(0, at("fd10:0:0:107::9"), 0), false);
  assert.equal(peers.mayCarry6(ip("192.0.2.5"), at("fd99::9"), 0), false);
  assert.equal(peers.firstContacts, 0);
  peers.heardFrom6(at("fd10:0:0:105::9"), 0, 1234);
  peers.heardFrom6(at("fd10:0:0:105::a"), 0, 2345);
  assert.equal(peers.firstContacts, 1);
  assert.equal(peers.lastHeard6(ip6("fd10:0:0:105::")), 2345);
  assert.equal(peers.lastHeard(ip("10.10.5.0")), 0, "the IPv4 side keeps its own stamp");
  peers.setOwner6(ip6("fd10:0:0:105::"), ip("192.0.2.55"));
  assert.equal(peers.lastHeard6(ip6("fd10:0:0:105::")), 0, "a new owner is not yet heard from");
});

Deno.test("an IPv6 Network with too many subnets is refused; IPv4-only tables have no IPv6 side", () => {
  assert.throws(
    () =>
      PeerTable.create(ip("10.10.0.0"), 16, 24, {
        ipv6: { network: parseIp6Net("fd10::/32")!, subnetLen: 64 },
      }),
    /longer IPv6Network prefix or a shorter IPv6SubnetLen/,
  );
  const v4 = table();
  assert.equal(v4.hasIpv6, false);
  assert.equal(v4.ownerOf6(at("fd10::1"), 0), 0);
  v4.setOwner6(ip6("fd10::"), 5); // nothing to set
  assert.equal(v4.lastHeard6(ip6("fd10::")), 0);
});
