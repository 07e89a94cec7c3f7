/**
 * What the lease manager needs of etcd, and nothing more: lib/registry.ts is the real
 * one (flannel's keys through the etcd client); the lease manager's unit tests use a map.
 */
import type { Ip4Net } from "./ip.ts";
import type { Lease, LeaseAttrs, LeaseSubnets } from "./lease.ts";
import type { LeaseListing } from "./registry.ts";

export interface LeaseStore {
  /** The key prefix (`/coreos.com/network`): lease keys are `<prefix>/subnets/<ip>-<len>[&<ipv6>-<len>]`. */
  readonly prefix: string;
  /** Every lease key, parsed, at one revision; unreadable ones come back as skipped. */
  listLeases(within?: Ip4Net): Promise<LeaseListing>;
  /** A new etcd lease of `ttlSeconds`; its ID. */
  grant(ttlSeconds: number): Promise<string>;
  revoke(etcdLeaseId: string): Promise<void>;
  /** Renews an etcd lease: its TTL in seconds, 0 when it is gone. */
  keepAlive(etcdLeaseId: string): Promise<number>;
  /** Claims a free subnet: the lease as written, undefined when another host was first. */
  create(subnets: LeaseSubnets, attrs: LeaseAttrs, etcdLeaseId: string): Promise<Lease | undefined>;
  /** Rewrites a lease unchanged since it was read: the lease as written, or undefined. */
  update(lease: Lease, attrs: LeaseAttrs): Promise<Lease | undefined>;
  /** Deletes a lease unchanged since it was read; false when it changed. */
  delete(lease: Lease): Promise<boolean>;
}
