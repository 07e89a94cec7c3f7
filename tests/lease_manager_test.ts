/**
 * flannel's lease scenarios against a real etcd: acquisition order, reuse, renewal,
 * watch (including TTL expiry and compaction), reservations, races and exhaustion.
 */
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { formatIp4Net, type Ip4Net, netContains, parseIp4, parseIp4Net } from "../lib/ip.ts";
import { encodeLeaseValue, type Lease, leaseKey } from "../lib/lease.ts";
import { LeaseManager } from "../lib/lease_manager.ts";
import { type LeaseEvent, SubnetRegistry } from "../lib/registry.ts";
import { OverlayError } from "../lib/errors.ts";
import { EtcdClient } from "../lib/etcd_client.ts";
import { INTEGRATION, startEtcd, waitFor } from "./helpers.ts";

let prefixCounter = 0;

/** A fresh network under its own prefix; the agent's client is ours, `client` is npm:etcd3. */
async function network(endpoint: string, config: Record<string, unknown>) {
  const prefix = `/test${++prefixCounter}/coreos.com/network`;
  const registry = new SubnetRegistry(new EtcdClient({ endpoints: [endpoint], prefix }), prefix);
  await registry.putConfigText(JSON.stringify(config));
  return { registry, prefix, config: await registry.getConfig() };
}

function manager(
  registry: SubnetRegistry,
  publicIp: string,
  options: { ttlMs?: number; previousSubnet?: Ip4Net } = {},
) {
  return new LeaseManager(registry, {
    attrs: { publicIp: parseIp4(publicIp)!, backendType: "udp" },
    ttlMs: options.ttlMs ?? 60_000,
    renewMarginMs: 3_600_000,
    previousSubnet: options.previousSubnet,
  });
}

async function putForeignLease(client: Etcd3, prefix: string, subnet: string, publicIp: string) {
  const lease = client.lease(600, { autoKeepAlive: false });
  await lease.put(leaseKey(prefix, parseIp4Net(subnet)!)).value(
    encodeLeaseValue({ publicIp: parseIp4(publicIp)!, backendType: "udp" }),
  );
}

const net = (text: string) => parseIp4Net(text)!;

Deno.test({
  name: "flannel's lease scenarios against a real etcd",
  ...INTEGRATION,
  async fn(t) {
    await using etcd = await startEtcd();
    const client = etcd.client;

    await t.step("acquires inside SubnetMin..SubnetMax and avoids taken subnets", async () => {
      const { registry, prefix, config } = await network(etcd.endpoint, {
        Network: "10.10.0.0/16",
        SubnetMin: "10.10.5.0",
        SubnetMax: "10.10.8.0",
      });
      for (const subnet of ["10.10.5.0/24", "10.10.6.0/24", "10.10.8.0/24"]) {
        await putForeignLease(client, prefix, subnet, "192.0.2.200");
      }
      const held = await manager(registry, "192.0.2.1").acquire(config);
      assert.equal(formatIp4Net(held.lease.subnet), "10.10.7.0/24");
    });

    await t.step(
      "keys of another length or outside the Network play no part in choosing (a hostile 0.0.0.0-0)",
      async () => {
        const { registry, prefix, config } = await network(etcd.endpoint, {
          Network: "10.10.0.0/16",
          SubnetLen: 26,
        });
        for (const key of ["0.0.0.0-0", "10.0.0.0-8", "10.10.0.0-16", "10.10.0.0-17"]) {
          await client.put(`${prefix}/subnets/${key}`).value(`{"PublicIP":"192.0.2.250"}`);
        }
        const started = performance.now();
        const held = await manager(registry, "192.0.2.1").acquire(config);
        const ms = performance.now() - started;
        assert.equal(held.lease.subnet.prefixLen, 26);
        assert.ok(netContains(config.network, held.lease.subnet.ip));
        assert.ok(ms < 1000, `acquired in ${ms.toFixed(0)} ms`);
      },
    );

    await t.step("an exhausted network is a clear error and takes nothing", async () => {
      const { registry, prefix, config } = await network(etcd.endpoint, {
        Network: "10.10.0.0/16",
        SubnetMin: "10.10.5.0",
        SubnetMax: "10.10.6.0",
      });
      await putForeignLease(client, prefix, "10.10.5.0/24", "192.0.2.200");
      await putForeignLease(client, prefix, "10.10.6.0/24", "192.0.2.201");
      await assert.rejects(manager(registry, "192.0.2.1").acquire(config), (error: Error) => {
        assert.ok(error instanceof OverlayError);
        assert.match(
          error.message,
          /exhausted: all 2 \/24 subnets from 10.10.5.0 to 10.10.6.0 are leased/,
        );
        return true;
      });
      assert.equal((await registry.listLeases()).leases.length, 2);
    });

    await t.step("reuses the lease that already carries this host's PublicIP", async () => {
      const { registry, config } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
      const first = await manager(registry, "192.0.2.1").acquire(config);
      await manager(registry, "192.0.2.2").acquire(config);
      const again = await manager(registry, "192.0.2.1").acquire(config);
      assert.deepEqual(again.lease.subnet, first.lease.subnet);
      assert.equal(again.lease.etcdLeaseId, first.lease.etcdLeaseId);
      assert.equal((await registry.listLeases()).leases.length, 2);
    });

    await t.step("reuses the subnet from the previous subnet file when it is free", async () => {
      const { registry, config } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
      const held = await manager(registry, "192.0.2.1", { previousSubnet: net("10.10.42.0/24") })
        .acquire(config);
      assert.equal(formatIp4Net(held.lease.subnet), "10.10.42.0/24");
      const other = await manager(registry, "192.0.2.2", { previousSubnet: net("10.10.42.0/24") })
        .acquire(config);
      assert.notEqual(formatIp4Net(other.lease.subnet), "10.10.42.0/24");
    });

    await t.step("ignores a previous subnet that does not fit the config", async () => {
      const { registry, config } = await network(etcd.endpoint, {
        Network: "10.10.0.0/16",
        SubnetMin: "10.10.10.0",
        SubnetMax: "10.10.20.0",
      });
      for (
        const [ip, previous] of [["192.0.2.1", "10.99.0.0/24"], ["192.0.2.2", "10.10.42.0/25"], [
          "192.0.2.3",
          "10.10.30.0/24",
        ]]
      ) {
        const held = await manager(registry, ip, { previousSubnet: net(previous) }).acquire(config);
        assert.equal(held.lease.subnet.prefixLen, 24);
        assert.ok(
          held.lease.subnet.ip >= config.subnetMin && held.lease.subnet.ip <= config.subnetMax,
        );
      }
    });

    await t.step(
      "a config change gives a lease in the new network and drops the stale one",
      async () => {
        const { registry, config } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
        const old = await manager(registry, "192.0.2.1").acquire(config);
        await registry.putConfigText(`{"Network":"10.20.0.0/16"}`);
        const changed = await registry.getConfig();
        const fresh = await manager(registry, "192.0.2.1").acquire(changed);
        assert.ok(netContains(net("10.20.0.0/16"), fresh.lease.subnet.ip));
        assert.equal(await registry.getLease(old.lease.subnet), undefined);
      },
    );

    await t.step("renewal extends expiry and keeps the value", async () => {
      const { registry, config } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
      const leases = manager(registry, "192.0.2.1", { ttlMs: 4_000 });
      const held = await leases.acquire(config);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      assert.ok(await registry.timeToLive(held.lease.etcdLeaseId) <= 2);
      const expiresAt = await leases.renew(held.lease);
      assert.equal(typeof expiresAt, "number");
      assert.ok((expiresAt as number) - Date.now() > 3_000);
      assert.ok(await registry.timeToLive(held.lease.etcdLeaseId) >= 3);
      const after = await registry.getLease(held.lease.subnet) as Lease;
      assert.equal(after.modRevision, held.lease.modRevision);
      assert.deepEqual(after.attrs, held.lease.attrs);
    });

    await t.step("renewing a lease that an admin deleted reports it lost", async () => {
      const { registry, config } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
      const leases = manager(registry, "192.0.2.1");
      const held = await leases.acquire(config);
      await registry.revoke(held.lease.etcdLeaseId);
      assert.equal(await leases.renew(held.lease), "lost");
    });

    await t.step("the watch sees a lease added, deleted, and expired by TTL", async () => {
      const { registry, prefix, config } = await network(etcd.endpoint, {
        Network: "10.10.0.0/16",
      });
      const events: string[] = [];
      const watch = registry.watchLeases(await registry.listLeases(), (event: LeaseEvent) => {
        events.push(`${event.type} ${formatIp4Net(event.lease.subnet)}`);
      });
      await watch.ready;
      const shortLived = await manager(registry, "192.0.2.1", {
        ttlMs: 2_000,
        previousSubnet: net("10.10.1.0/24"),
      }).acquire(config);
      await putForeignLease(client, prefix, "10.10.2.0/24", "192.0.2.2");
      await client.delete().key(leaseKey(prefix, net("10.10.2.0/24")));
      await waitFor(() => events.includes("removed 10.10.1.0/24"), {
        timeoutMs: 10_000,
        what: "TTL expiry",
      });
      await watch.close();
      assert.deepEqual(events, [
        "put 10.10.1.0/24",
        "put 10.10.2.0/24",
        "removed 10.10.2.0/24",
        "removed 10.10.1.0/24",
      ]);
      assert.ok(shortLived);
    });

    await t.step("after compaction the watch lists again and reports the difference", async () => {
      const { registry, prefix } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
      await putForeignLease(client, prefix, "10.10.3.0/24", "192.0.2.3");
      const before = await registry.listLeases();
      await putForeignLease(client, prefix, "10.10.4.0/24", "192.0.2.4");
      await client.delete().key(leaseKey(prefix, net("10.10.3.0/24")));
      const latest = await client.get("anything").exec();
      await client.kv.compact({ revision: latest.header.revision, physical: true });
      const events: string[] = [];
      let resynced = false;
      const watch = registry.watchLeases(before, (event) => {
        events.push(`${event.type} ${formatIp4Net(event.lease.subnet)}`);
      }, { onResync: () => resynced = true });
      await watch.ready;
      await waitFor(() => resynced, { what: "re-list after compaction" });
      await putForeignLease(client, prefix, "10.10.5.0/24", "192.0.2.5");
      await waitFor(() => events.includes("put 10.10.5.0/24"), { what: "live event after resync" });
      await watch.close();
      assert.deepEqual(events, ["removed 10.10.3.0/24", "put 10.10.4.0/24", "put 10.10.5.0/24"]);
    });

    await t.step("the watch applies every event of a response, even many at once", async () => {
      const { registry, prefix } = await network(etcd.endpoint, { Network: "10.10.0.0/16" });
      const seen = new Set<string>();
      const watch = registry.watchLeases(await registry.listLeases(), (event) => {
        if (event.type === "put") seen.add(formatIp4Net(event.lease.subnet));
      });
      await watch.ready;
      // One transaction: all puts land in a single revision and a single watch response.
      const txn = client.if("nonexistent-key", "Version", "==", 0);
      const puts = Array.from(
        { length: 50 },
        (_, i) =>
          client.put(leaseKey(prefix, net(`10.10.${100 + i}.0/24`))).value(
            encodeLeaseValue({ publicIp: parseIp4(`192.0.2.${100 + i}`)!, backendType: "udp" }),
          ),
      );
      await txn.then(...puts).commit();
      await waitFor(() => seen.size === 50, { what: "all 50 leases" });
      await watch.close();
    });

    await t.step("reservations are never renewed, expired or taken by another host", async () => {
      const { registry, prefix, config } = await network(etcd.endpoint, {
        Network: "10.10.0.0/16",
        SubnetMin: "10.10.1.0",
        SubnetMax: "10.10.3.0",
      });
      const key = leaseKey(prefix, net("10.10.2.0/24"));
      const value = encodeLeaseValue({ publicIp: parseIp4("192.0.2.50")!, backendType: "udp" });
      await client.put(key).value(value);
      const others = [];
      for (const ip of ["192.0.2.1", "192.0.2.2"]) {
        others.push(await manager(registry, ip).acquire(config));
      }
      assert.ok(others.every((h) => formatIp4Net(h.lease.subnet) !== "10.10.2.0/24"));
      const owner = manager(registry, "192.0.2.50");
      const held = await owner.acquire(config);
      assert.equal(formatIp4Net(held.lease.subnet), "10.10.2.0/24");
      assert.equal(held.expiresAt, Infinity);
      assert.equal(await owner.renew(held.lease), Infinity);
      const stored = await client.get(key).exec();
      assert.equal(stored.kvs[0].lease, "0");
      assert.equal(stored.kvs[0].value.toString(), value);
    });

    await t.step(
      "malformed lease values in etcd are skipped and their subnets left alone",
      async () => {
        const { registry, prefix, config } = await network(etcd.endpoint, {
          Network: "10.10.0.0/16",
          SubnetMin: "10.10.1.0",
          SubnetMax: "10.10.3.0",
        });
        await client.put(leaseKey(prefix, net("10.10.1.0/24"))).value("garbage{");
        await client.put(leaseKey(prefix, net("10.10.3.0/24"))).value(`{"PublicIP":"nope"}`);
        await client.put(`${prefix}/subnets/not-a-subnet`).value("{}");
        const listing = await registry.listLeases();
        assert.equal(listing.skipped.length, 3);
        const held = await manager(registry, "192.0.2.1").acquire(config);
        assert.equal(formatIp4Net(held.lease.subnet), "10.10.2.0/24");
      },
    );

    await t.step("20 acquirers started at the same instant get 20 distinct subnets", async () => {
      const { registry, config } = await network(etcd.endpoint, { Network: "10.10.0.0/19" }); // 31 subnets
      const held = await Promise.all(
        Array.from({ length: 20 }, (_, i) => manager(registry, `192.0.2.${i + 1}`).acquire(config)),
      );
      const subnets = new Set(held.map((h) => formatIp4Net(h.lease.subnet)));
      assert.equal(subnets.size, 20);
      assert.equal((await registry.listLeases()).leases.length, 20);
    });
  },
});
