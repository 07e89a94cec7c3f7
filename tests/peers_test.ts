/**
 * Which leases become peers: the policy for untrusted etcd data, and the tracker that
 * admits, updates and withdraws peers, settling collisions by lease age.
 */
import assert from "node:assert/strict";
import type { Backend, BackendObservation } from "../lib/backend.ts";
import { Backoff } from "../lib/backoff.ts";
import { parseNetworkConfig } from "../lib/config.ts";
import { parseIp4, parseIp4Net } from "../lib/ip.ts";
import type { Lease } from "../lib/lease.ts";
import { leaseProblem, type PeerPolicy } from "../lib/peer_policy.ts";
import { PeerTracker } from "../lib/peers.ts";
import { macProblem } from "../lib/backends/vxlan.ts";

const config = parseNetworkConfig(`{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan"}}`);
const OWN_IP = parseIp4("192.0.2.1")!;

let revision = 100;
function lease(
  subnet: string,
  publicIp: string,
  data: Record<string, unknown> = { VNI: 1, VtepMAC: "02:00:00:00:00:01" },
  backendType = "vxlan",
): Lease {
  revision++;
  return {
    subnet: parseIp4Net(subnet)!,
    attrs: { publicIp: parseIp4(publicIp)!, backendType, backendData: data },
    etcdLeaseId: "7",
    modRevision: String(revision),
    createRevision: String(revision),
  };
}

/** A backend that only records what it is told (the tracker's other side). */
class RecordingBackend implements Backend {
  readonly type = "vxlan" as const;
  readonly mtu = 1450;
  readonly hearsPeers = false;
  readonly dataPath = "recording";
  readonly programmed = new Map<string, string>();
  readonly calls: string[] = [];
  start(): Promise<void> {
    return Promise.resolve();
  }
  checkPeer(peer: Lease): string | undefined {
    const mac = peer.attrs.backendData?.VtepMAC;
    return typeof mac === "string" ? macProblem(mac) : "no VtepMAC";
  }
  claims(peer: Lease): string[] {
    const mac = peer.attrs.backendData?.VtepMAC;
    return typeof mac === "string" ? [`VtepMAC ${mac}`] : [];
  }
  addPeer(peer: Lease): void {
    const key = `${peer.subnet.ip}`;
    this.programmed.set(key, `${peer.attrs.publicIp} ${peer.attrs.backendData?.VtepMAC}`);
    this.calls.push(`add ${key}`);
  }
  removePeer(peer: Lease): void {
    this.programmed.delete(`${peer.subnet.ip}`);
    this.calls.push(`remove ${peer.subnet.ip}`);
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  observe(): BackendObservation {
    return { healthy: true, conflicts: [] };
  }
  lastHeard(): null {
    return null;
  }
  owned() {
    return { files: [] };
  }
  readonly ownClaims: string[] = [];
  renewIdentity(): boolean {
    return false;
  }
}

function tracker() {
  const backend = new RecordingBackend();
  const policy: PeerPolicy = {
    config,
    ownPublicIp: OWN_IP,
    backendType: "vxlan",
    checkBackendData: (peer) => backend.checkPeer(peer),
  };
  return { backend, peers: new PeerTracker(backend, policy, "/p") };
}

Deno.test("the policy refuses leases that would route outside the Network or to nowhere", () => {
  const policy: PeerPolicy = {
    config,
    ownPublicIp: OWN_IP,
    backendType: "vxlan",
    checkBackendData: () => undefined,
  };
  const cases: [Lease, string | undefined][] = [
    [lease("10.10.5.0/24", "192.0.2.7"), undefined],
    [lease("192.0.2.0/24", "192.0.2.7"), "outside_network"],
    [lease("10.10.0.0/16", "192.0.2.7"), "outside_network"],
    [lease("10.10.5.0/25", "192.0.2.7"), "outside_network"],
    [lease("10.10.5.0/24", "127.0.0.1"), "bad_public_ip"],
    [lease("10.10.5.0/24", "0.0.0.0"), "bad_public_ip"],
    [lease("10.10.5.0/24", "239.1.1.1"), "bad_public_ip"],
    [lease("10.10.5.0/24", "255.255.255.255"), "bad_public_ip"],
    [lease("10.10.5.0/24", "10.10.9.9"), "bad_public_ip"],
    [lease("10.10.5.0/24", "192.0.2.1"), "bad_public_ip"],
    [lease("10.10.5.0/24", "192.0.2.7", {}, "udp"), "backend_type"],
  ];
  for (const [candidate, reason] of cases) {
    assert.equal(leaseProblem(candidate, policy)?.reason, reason, JSON.stringify(candidate));
  }
  // This host's old lease, from before it was started with another --public-ip: another
  // address of its underlay interface is not a peer.
  const moved = { ...policy, ownPublicIp: parseIp4("192.0.2.50")!, ownAddresses: [OWN_IP] };
  assert.equal(leaseProblem(lease("10.10.5.0/24", "192.0.2.1"), moved)?.reason, "bad_public_ip");
  assert.equal(leaseProblem(lease("10.10.5.0/24", "192.0.2.7"), moved), undefined);
});

Deno.test("VTEP MACs must be unicast and non-zero", () => {
  assert.equal(macProblem("02:42:ac:11:00:02"), undefined);
  assert.match(macProblem("00:00:00:00:00:00")!, /zero MAC/);
  assert.match(macProblem("01:00:5e:00:00:01")!, /multicast/);
  assert.match(macProblem("ff:ff:ff:ff:ff:ff")!, /multicast or broadcast/);
  assert.match(macProblem("zz:00:00:00:00:00")!, /not a MAC/);
});

Deno.test("a valid lease is programmed once; a bad rewrite withdraws it; a fix brings it back", () => {
  const { backend, peers } = tracker();
  const good = lease("10.10.5.0/24", "192.0.2.7");
  peers.apply({ type: "put", lease: good });
  peers.apply({ type: "put", lease: { ...good, modRevision: "999" } }); // a renewal-like rewrite
  assert.deepEqual(backend.calls, [`add ${good.subnet.ip}`]);
  peers.apply({ type: "put", lease: { ...good, attrs: { ...good.attrs, publicIp: 0 } } });
  assert.equal(backend.programmed.size, 0);
  assert.equal(peers.skipped()[0].reason, "bad_public_ip");
  peers.apply({ type: "put", lease: good });
  assert.equal(backend.programmed.size, 1);
  assert.deepEqual(peers.skipped(), []);
  assert.deepEqual(peers.skipCounts(), { bad_public_ip: 1 });
});

Deno.test("two leases with one VtepMAC: the older keeps it, the newer waits until it goes", () => {
  const { backend, peers } = tracker();
  const victim = lease("10.10.5.0/24", "192.0.2.7", { VNI: 1, VtepMAC: "02:00:00:00:00:05" });
  const copier = lease("10.10.6.0/24", "192.0.2.66", { VNI: 1, VtepMAC: "02:00:00:00:00:05" });
  peers.apply({ type: "put", lease: victim });
  peers.apply({ type: "put", lease: copier });
  assert.deepEqual([...backend.programmed.values()], [
    `${victim.attrs.publicIp} 02:00:00:00:00:05`,
  ]);
  assert.equal(peers.skipped()[0].reason, "conflict");
  // In a listing, age decides, not order: the newer is never programmed, not even briefly.
  const second = tracker();
  second.peers.load([copier, victim]);
  assert.deepEqual(second.backend.calls, [`add ${victim.subnet.ip}`]);
  // The older one leaves: the newer is admitted.
  peers.apply({ type: "removed", lease: victim });
  assert.deepEqual([...backend.programmed.values()], [
    `${copier.attrs.publicIp} 02:00:00:00:00:05`,
  ]);
});

Deno.test("backoff windows double up to the cap, with full jitter, and reset", () => {
  const backoff = new Backoff({ baseMs: 1000, capMs: 10_000, random: () => 1 });
  assert.deepEqual(
    Array.from({ length: 7 }, () => backoff.next()),
    [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000],
  );
  backoff.reset();
  assert.equal(backoff.next(), 1000);
  const jittered = new Backoff({ baseMs: 1000, capMs: 10_000, random: () => 0.25 });
  assert.equal(jittered.next(), 250);
});
