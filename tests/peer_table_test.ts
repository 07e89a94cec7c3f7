/** The udp data path's shared peer table: one array read per packet decides who may send what. */
import assert from "node:assert/strict";
import { parseIp4 } from "../lib/ip.ts";
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
