/**
 * The lease manager's choices without etcd: an in-memory LeaseStore stands where the
 * registry stands, so each rule (own lease first, then the previous subnet, then a free
 * one; races, expiry in between, unreadable keys) is checked alone and exactly.
 * tests/lease_manager_test.ts runs the same rules against a real etcd.
 */
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../lib/config.ts";
import { OverlayError } from "../lib/errors.ts";
import { formatIp4Net, type Ip4Net, parseIp4, parseIp4Net } from "../lib/ip.ts";
import {
  describeSubnets,
  type Lease,
  type LeaseAttrs,
  leaseKey,
  type LeaseSubnets,
} from "../lib/lease.ts";
import { formatIp6Net, parseIp6, parseIp6Net } from "../lib/ip6.ts";
import { LeaseManager } from "../lib/lease_manager.ts";
import type { LeaseStore } from "../lib/lease_store.ts";
import type { LeaseListing, SkippedLease } from "../lib/registry.ts";

const PREFIX = "/coreos.com/network";
const net = (text: string) => parseIp4Net(text)!;
const attrs = (publicIp: string): LeaseAttrs => ({
  publicIp: parseIp4(publicIp)!,
  backendType: "udp",
});

/** Leases in a map, with etcd's revisions and lease IDs; every call is recorded. */
class MemoryStore implements LeaseStore {
  readonly prefix = PREFIX;
  readonly leases = new Map<string, Lease>();
  readonly skipped: SkippedLease[] = [];
  readonly calls: string[] = [];
  readonly alive = new Set<string>();
  revision = 1;
  nextLeaseId = 100;
  /** Runs before a create: a rival can take the subnet first. */
  beforeCreate?: (subnet: Ip4Net) => void;

  put(subnet: string, publicIp: string, etcdLeaseId = String(this.nextLeaseId++)): Lease {
    const revision = String(++this.revision);
    const lease: Lease = {
      subnet: net(subnet),
      attrs: attrs(publicIp),
      etcdLeaseId,
      modRevision: revision,
      createRevision: revision,
    };
    this.leases.set(leaseKey(PREFIX, lease), lease);
    if (etcdLeaseId !== "0") this.alive.add(etcdLeaseId);
    return lease;
  }

  listLeases(): Promise<LeaseListing> {
    this.calls.push("list");
    return Promise.resolve({
      leases: [...this.leases.values()],
      skipped: [...this.skipped],
      revision: BigInt(this.revision),
    });
  }

  grant(): Promise<string> {
    const id = String(this.nextLeaseId++);
    this.calls.push(`grant ${id}`);
    this.alive.add(id);
    return Promise.resolve(id);
  }

  revoke(id: string): Promise<void> {
    this.calls.push(`revoke ${id}`);
    this.alive.delete(id);
    return Promise.resolve();
  }

  keepAlive(id: string): Promise<number> {
    this.calls.push(`keepalive ${id}`);
    return Promise.resolve(this.alive.has(id) ? 60 : 0);
  }

  create(
    subnets: LeaseSubnets,
    wanted: LeaseAttrs,
    etcdLeaseId: string,
  ): Promise<Lease | undefined> {
    this.beforeCreate?.(subnets.subnet);
    this.calls.push(`create ${describeSubnets(subnets)}`);
    const key = leaseKey(PREFIX, subnets);
    if (this.leases.has(key)) return Promise.resolve(undefined);
    const revision = String(++this.revision);
    const lease = {
      ...subnets,
      attrs: wanted,
      etcdLeaseId,
      modRevision: revision,
      createRevision: revision,
    };
    this.leases.set(key, lease);
    return Promise.resolve(lease);
  }

  update(lease: Lease, wanted: LeaseAttrs): Promise<Lease | undefined> {
    this.calls.push(`update ${describeSubnets(lease)}`);
    const key = leaseKey(PREFIX, lease);
    if (this.leases.get(key)?.modRevision !== lease.modRevision) return Promise.resolve(undefined);
    const fresh = { ...lease, attrs: wanted, modRevision: String(++this.revision) };
    this.leases.set(key, fresh);
    return Promise.resolve(fresh);
  }

  delete(lease: Lease): Promise<boolean> {
    this.calls.push(`delete ${describeSubnets(lease)}`);
    const key = leaseKey(PREFIX, lease);
    if (this.leases.get(key)?.modRevision !== lease.modRevision) return Promise.resolve(false);
    return Promise.resolve(this.leases.delete(key));
  }
}

function configOf(json: Record<string, unknown>) {
  return parseNetworkConfig(JSON.stringify(json));
}

const SMALL = configOf({ Network: "10.10.0.0/22", SubnetLen: 24 }); // four /24s

function manager(store: LeaseStore, publicIp: string, previousSubnet?: string) {
  return new LeaseManager(store, {
    attrs: attrs(publicIp),
    ttlMs: 60_000,
    renewMarginMs: 3_600_000,
    previousSubnet: previousSubnet ? net(previousSubnet) : undefined,
  });
}

Deno.test("this host's own live lease is adopted before anything is claimed", async () => {
  const store = new MemoryStore();
  const own = store.put("10.10.2.0/24", "192.0.2.1");
  const held = await manager(store, "192.0.2.1", "10.10.3.0/24").acquire(SMALL);
  assert.equal(held.claimed, false);
  assert.deepEqual(held.lease, own);
  assert.deepEqual(store.calls, ["list", `keepalive ${own.etcdLeaseId}`]);
});

Deno.test("an own lease that expired between the listing and adoption is passed over", async () => {
  const store = new MemoryStore();
  const stale = store.put("10.10.2.0/24", "192.0.2.1");
  store.alive.delete(stale.etcdLeaseId); // listed, but its etcd lease ran out since
  const held = await manager(store, "192.0.2.1", "10.10.1.0/24").acquire(SMALL);
  assert.equal(held.claimed, true);
  assert.equal(formatIp4Net(held.lease.subnet), "10.10.1.0/24");
});

Deno.test("the previous subnet is claimed when free, and passed over when taken", async () => {
  const free = new MemoryStore();
  const held = await manager(free, "192.0.2.1", "10.10.3.0/24").acquire(SMALL);
  assert.equal(formatIp4Net(held.lease.subnet), "10.10.3.0/24");
  assert.equal(held.claimed, true);
  assert.equal(
    held.lease.createRevision,
    String(free.revision),
    "the lease as written, not re-read",
  );
  assert.deepEqual(free.calls, ["list", "grant 100", "create 10.10.3.0/24"]);

  const taken = new MemoryStore();
  taken.put("10.10.3.0/24", "192.0.2.9");
  const other = await manager(taken, "192.0.2.1", "10.10.3.0/24").acquire(SMALL);
  assert.notEqual(formatIp4Net(other.lease.subnet), "10.10.3.0/24");
});

Deno.test("a lost race lists again and claims another subnet with the same grant", async () => {
  const store = new MemoryStore();
  let raced = false;
  store.beforeCreate = (subnet) => {
    if (raced) return;
    raced = true;
    store.put(formatIp4Net(subnet), "192.0.2.9"); // a rival got there first
  };
  const held = await manager(store, "192.0.2.1", "10.10.1.0/24").acquire(SMALL);
  assert.notEqual(formatIp4Net(held.lease.subnet), "10.10.1.0/24");
  assert.equal(store.calls.filter((c) => c.startsWith("grant")).length, 1, store.calls.join(", "));
  assert.equal(store.calls.filter((c) => c.startsWith("revoke")).length, 0);
  assert.equal(store.calls.filter((c) => c === "list").length, 2);
});

Deno.test("after a lost race to a lease of our own, the unused grant is revoked", async () => {
  const store = new MemoryStore();
  let late = "";
  store.beforeCreate = (subnet) => {
    store.beforeCreate = undefined;
    late = formatIp4Net(subnet);
    store.put(late, "192.0.2.1"); // our previous run's lease shows up late, where we aimed
  };
  const held = await manager(store, "192.0.2.1").acquire(SMALL);
  assert.equal(formatIp4Net(held.lease.subnet), late);
  assert.equal(held.claimed, false);
  assert.deepEqual(store.calls.filter((c) => /^(grant|revoke)/.test(c)), [
    "grant 100",
    "revoke 100",
  ]);
});

Deno.test("keys that do not parse still occupy their subnet; keys outside the Network do not count", async () => {
  const store = new MemoryStore();
  store.put("10.10.0.0/24", "192.0.2.7");
  store.put("10.10.1.0/24", "192.0.2.8");
  store.skipped.push({ key: `${PREFIX}/subnets/10.10.2.0-24`, reason: "value is not JSON" });
  store.put("0.0.0.0/0", "192.0.2.66"); // hostile: would cover everything if believed
  store.put("10.10.3.0/25", "192.0.2.67"); // another SubnetLen
  const held = await manager(store, "192.0.2.1").acquire(SMALL);
  assert.equal(formatIp4Net(held.lease.subnet), "10.10.3.0/24");
});

Deno.test("an exhausted network is an error that names the fix, and the grant is given back", async () => {
  const store = new MemoryStore();
  for (let i = 0; i < 4; i++) store.put(`10.10.${i}.0/24`, `192.0.2.${10 + i}`);
  await assert.rejects(
    manager(store, "192.0.2.1").acquire(SMALL),
    (error: Error) =>
      error instanceof OverlayError && /exhausted/.test(error.message) &&
      /overlay config set/.test(error.message),
  );
  assert.equal(store.calls.filter((c) => c.startsWith("grant")).length, 0);
  assert.equal(store.leases.size, 4);
});

Deno.test("an own lease that no longer fits the config is deleted; a reservation is kept", async () => {
  const store = new MemoryStore();
  store.put("10.20.0.0/24", "192.0.2.1"); // from an older Network
  store.put("10.30.0.0/24", "192.0.2.1", "0"); // an admin's reservation elsewhere
  const held = await manager(store, "192.0.2.1").acquire(SMALL);
  assert.ok(store.calls.includes("delete 10.20.0.0/24"));
  assert.ok(!store.calls.includes("delete 10.30.0.0/24"));
  assert.ok(store.leases.has(leaseKey(PREFIX, net("10.30.0.0/24"))));
  assert.equal(held.claimed, true);
});

Deno.test("adopting a lease with other attributes rewrites it once; a concurrent change is an error", async () => {
  const vxlan = (store: LeaseStore) =>
    new LeaseManager(store, {
      attrs: { ...attrs("192.0.2.1"), backendType: "vxlan", backendData: { VNI: 1 } },
      ttlMs: 60_000,
      renewMarginMs: 3_600_000,
    });
  const store = new MemoryStore();
  const own = store.put("10.10.1.0/24", "192.0.2.1");
  const held = await vxlan(store).acquire(SMALL);
  assert.equal(held.lease.attrs.backendType, "vxlan");
  assert.notEqual(held.lease.modRevision, own.modRevision);
  assert.equal(store.calls.filter((c) => c.startsWith("update")).length, 1);

  const raced = new MemoryStore();
  raced.put("10.10.1.0/24", "192.0.2.1");
  raced.update = () => Promise.resolve(undefined); // someone wrote it in between
  await assert.rejects(vxlan(raced).acquire(SMALL), /changed while it was being adopted/);
});

// Dual stack and IPv6-only: one key names both subnets (flannel's `<ip>-<len>&<ipv6>-<len>`).

const DUAL = configOf({
  Network: "10.10.0.0/22",
  SubnetLen: 24,
  EnableIPv6: true,
  IPv6Network: "fd10::/62",
  IPv6SubnetLen: 64,
}); // four /24s, four /64s: three of each to lease
const V6_ONLY = configOf({
  EnableIPv4: false,
  EnableIPv6: true,
  IPv6Network: "fd10::/62",
  IPv6SubnetLen: 64,
  Backend: { Type: "host-gw" },
});
const net6 = (text: string) => parseIp6Net(text)!;

function manager6(
  store: LeaseStore,
  publicIp: string,
  publicIpv6: string,
  previous: { subnet?: string; ipv6Subnet?: string } = {},
) {
  return new LeaseManager(store, {
    attrs: { ...attrs(publicIp), publicIpv6: parseIp6(publicIpv6)! },
    ttlMs: 60_000,
    renewMarginMs: 3_600_000,
    previousSubnet: previous.subnet ? net(previous.subnet) : undefined,
    previousIpv6Subnet: previous.ipv6Subnet ? net6(previous.ipv6Subnet) : undefined,
  });
}

Deno.test("a dual-stack host claims both subnets in one key, and a restart reuses both", async () => {
  const store = new MemoryStore();
  const held = await manager6(store, "192.0.2.1", "2001:db8::1").acquire(DUAL);
  assert.equal(held.claimed, true);
  assert.ok(held.lease.ipv6Subnet, "an IPv6 subnet is leased");
  assert.match(leaseKey(PREFIX, held.lease), /\/subnets\/10\.10\.[123]\.0-24&fd10:0:0:[123]::-64$/);
  assert.equal(held.lease.attrs.publicIpv6, parseIp6("2001:db8::1"));
  // The lease expired while the host was down: the subnet file's pair is asked for again.
  store.leases.clear();
  const again = await manager6(store, "192.0.2.1", "2001:db8::1", {
    subnet: formatIp4Net(held.lease.subnet),
    ipv6Subnet: formatIp6Net(held.lease.ipv6Subnet!),
  }).acquire(DUAL);
  assert.equal(leaseKey(PREFIX, again.lease), leaseKey(PREFIX, held.lease));
});

Deno.test("each family's taken subnets are passed over, whatever key holds them", async () => {
  const store = new MemoryStore();
  for (
    const [v4, v6, ip] of [["10.10.1.0/24", "fd10:0:0:1::/64", "192.0.2.7"], [
      "10.10.2.0/24",
      "fd10:0:0:2::/64",
      "192.0.2.8",
    ]]
  ) {
    const lease = store.put(v4, ip);
    store.leases.delete(leaseKey(PREFIX, lease));
    const dual = { ...lease, ipv6Subnet: net6(v6) };
    store.leases.set(leaseKey(PREFIX, dual), dual);
  }
  const held = await manager6(store, "192.0.2.1", "2001:db8::1", {
    subnet: "10.10.1.0/24", // taken: passed over
    ipv6Subnet: "fd10:0:0:2::/64", // taken too
  }).acquire(DUAL);
  assert.equal(describeSubnets(held.lease), "10.10.3.0/24 fd10:0:0:3::/64");
  await assert.rejects(
    manager6(store, "192.0.2.2", "2001:db8::2").acquire(DUAL),
    (error: Error) => error instanceof OverlayError && /exhausted/.test(error.message),
  );
});

Deno.test("a host whose rival claimed one of its subnets under another key yields and chooses again", async () => {
  const store = new MemoryStore();
  // Between our listing and our create, a rival claims fd10:0:0:1::/64 with another IPv4.
  let raced = false;
  store.beforeCreate = () => {
    if (raced) return;
    raced = true;
    const revision = String(++store.revision);
    const rival: Lease = {
      subnet: net("10.10.3.0/24"),
      ipv6Subnet: net6("fd10:0:0:1::/64"),
      attrs: attrs("192.0.2.9"),
      etcdLeaseId: "7",
      modRevision: revision,
      createRevision: revision,
    };
    store.leases.set(leaseKey(PREFIX, rival), rival);
  };
  const held = await manager6(store, "192.0.2.1", "2001:db8::1", {
    subnet: "10.10.1.0/24",
    ipv6Subnet: "fd10:0:0:1::/64",
  }).acquire(DUAL);
  assert.notEqual(formatIp6Net(held.lease.ipv6Subnet!), "fd10:0:0:1::/64");
  assert.notEqual(formatIp4Net(held.lease.subnet), "10.10.3.0/24");
  assert.equal(store.leases.size, 2, "the yielded key is gone");
});

Deno.test("an IPv6-only host leases 0.0.0.0-0&<ipv6> and finds its lease by PublicIPv6", async () => {
  const store = new MemoryStore();
  const first = await manager6(store, "0.0.0.0", "2001:db8::1").acquire(V6_ONLY);
  assert.match(leaseKey(PREFIX, first.lease), /\/subnets\/0\.0\.0\.0-0&fd10:0:0:[123]::-64$/);
  const second = await manager6(store, "0.0.0.0", "2001:db8::2").acquire(V6_ONLY);
  assert.equal(second.claimed, true, "every PublicIP is 0.0.0.0: the host is its PublicIPv6");
  assert.notEqual(leaseKey(PREFIX, second.lease), leaseKey(PREFIX, first.lease));
  const restarted = await manager6(store, "0.0.0.0", "2001:db8::1").acquire(V6_ONLY);
  assert.equal(restarted.claimed, false);
  assert.equal(leaseKey(PREFIX, restarted.lease), leaseKey(PREFIX, first.lease));
});

Deno.test("this host's IPv4-only lease is replaced once the network turns dual-stack", async () => {
  const store = new MemoryStore();
  store.put("10.10.2.0/24", "192.0.2.1");
  const held = await manager6(store, "192.0.2.1", "2001:db8::1", { subnet: "10.10.2.0/24" })
    .acquire(DUAL);
  assert.equal(held.claimed, true);
  assert.equal(formatIp4Net(held.lease.subnet), "10.10.2.0/24", "the IPv4 subnet is kept");
  assert.ok(held.lease.ipv6Subnet);
  assert.equal(store.leases.size, 1, "the old IPv4-only key is gone");
});
