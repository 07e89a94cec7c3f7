/**
 * The lease manager: takes this host's subnet and keeps it.
 *
 * Acquisition follows flannel's order: (1) a lease already carrying our PublicIP
 * (PublicIPv6 in an IPv6-only network) that still fits the config; (2) the subnets named
 * in our previous subnet file, if free and fitting; (3) a random free subnet in
 * [SubnetMin, SubnetMax], per family. A dual-stack lease is one key naming both subnets
 * (`10.10.1.0-24&fd10:0:0:1::-64`), so both are claimed in one create-if-absent
 * transaction; the loser of a race lists again and picks again. A key holds one pair,
 * so two keys can share one family's subnet: after claiming, the newer of two such keys
 * gives its subnets up and chooses again.
 * Reservations (keys without an etcd lease) are never renewed, expired or taken.
 */
import {
  fitsNetwork,
  fitsNetwork6,
  fitsRange,
  fitsRange6,
  type Ip6Pool,
  type NetworkConfig,
  subnetCount,
} from "./config.ts";
import { OverlayError } from "./errors.ts";
import { formatIp4, formatIp4Net, type Ip4Net, netEqual, prefixSize } from "./ip.ts";
import { formatIp6, formatIp6Net, type Ip6Net, net6Equal, prefixSize6 } from "./ip6.ts";
import {
  describeLease,
  describeSubnets,
  isReservation,
  type Lease,
  type LeaseAttrs,
  type LeaseSubnets,
  parseLeaseKey,
} from "./lease.ts";
import { log } from "./log.ts";
import { Backoff } from "./backoff.ts";
import type { LeaseStore } from "./lease_store.ts";
import type { LeaseListing } from "./registry.ts";

export interface LeaseManagerOptions {
  readonly attrs: LeaseAttrs;
  readonly ttlMs: number;
  readonly renewMarginMs: number;
  /** Subnets from the previous subnet file, if any (FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET). */
  readonly previousSubnet?: Ip4Net;
  readonly previousIpv6Subnet?: Ip6Net;
}

/** The lease this host holds. */
export interface HeldLease {
  readonly lease: Lease;
  /** Epoch ms when the etcd lease runs out; Infinity for a reservation. */
  readonly expiresAt: number;
  /** The listing taken during acquisition: watch from its revision + 1. */
  readonly listing: LeaseListing;
  /** True when this acquisition claimed the subnet (false: an existing lease was reused). */
  readonly claimed: boolean;
}

const MAX_CLAIM_ATTEMPTS = 100;

export interface RenewalHooks {
  /** The lease was renewed; it now runs out at `expiresAt` (epoch ms). */
  onRenewed(expiresAt: number): void;
  /** The etcd lease no longer exists: this host has lost its subnet. */
  onLost(): void;
  /** etcd could not be asked; the renewal is retried. */
  onFailed(error: unknown): void;
}

/** A running renewal; see LeaseManager.keepRenewed. */
export interface Renewal {
  /** Renews at once (etcd is reachable again). */
  renewNow(): void;
  stop(): void;
}

export class LeaseManager {
  readonly #store: LeaseStore;
  readonly #options: LeaseManagerOptions;
  #attrs: LeaseAttrs;
  readonly #deleted = new WeakSet<Lease>();

  constructor(store: LeaseStore, options: LeaseManagerOptions) {
    this.#store = store;
    this.#options = options;
    this.#attrs = options.attrs;
  }

  /** Acquires a subnet for this host. Throws OverlayError when the network is exhausted. */
  async acquire(config: NetworkConfig): Promise<HeldLease> {
    const ttlSeconds = Math.max(1, Math.round(this.#options.ttlMs / 1000));
    let grantedId: string | undefined;
    try {
      for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
        const listing = await this.#store.listLeases(config.network);

        const own = await this.#adoptOwn(config, listing);
        if (own) {
          if (grantedId) await this.#store.revoke(grantedId).catch(() => {});
          grantedId = undefined;
          return { ...own, listing, claimed: false };
        }

        // Our own leases deleted for not fitting free their subnets for this choice.
        const remaining = {
          ...listing,
          leases: listing.leases.filter((lease) => !this.#deleted.has(lease)),
        };
        const subnets = this.#choose(config, remaining);
        grantedId ??= await this.#store.grant(ttlSeconds);
        const claimed = await this.#store.create(subnets, this.#attrs, grantedId);
        if (claimed && config.ipv6 && await this.#sharedWithOlder(claimed)) {
          log.debug("another key holds one of these subnets; choosing again", {
            subnets: describeSubnets(subnets),
          });
          await this.#store.delete(claimed);
          continue;
        }
        if (claimed) {
          log.info("acquired subnet lease", { subnet: describeSubnets(subnets), lease: grantedId });
          grantedId = undefined;
          return {
            lease: claimed,
            expiresAt: Date.now() + ttlSeconds * 1000,
            listing,
            claimed: true,
          };
        }
        log.debug("lost the race for a subnet; choosing again", {
          subnets: describeSubnets(subnets),
        });
      }
      throw new OverlayError(
        `Could not claim a subnet after ${MAX_CLAIM_ATTEMPTS} attempts (too many hosts racing; try again)`,
      );
    } finally {
      if (grantedId) await this.#store.revoke(grantedId).catch(() => {});
    }
  }

  /** Step 1: a lease whose PublicIP is ours. Incompatible ones of ours are deleted, as flannel does. */
  async #adoptOwn(
    config: NetworkConfig,
    listing: LeaseListing,
  ): Promise<Omit<HeldLease, "listing" | "claimed"> | undefined> {
    const ours = this.#options.attrs;
    // In an IPv6-only network every PublicIP is 0.0.0.0: the host is its PublicIPv6.
    const mine = listing.leases.filter((l) =>
      config.enableIPv4
        ? l.attrs.publicIp === ours.publicIp
        : ours.publicIpv6 !== undefined && l.attrs.publicIpv6 === ours.publicIpv6
    );
    for (const lease of mine) {
      if (!fitsConfig(config, lease)) {
        if (isReservation(lease)) {
          log.warn("reservation for this host does not fit the network config; ignoring it", {
            lease: describeLease(lease),
          });
        } else {
          log.warn("deleting this host's old lease: it does not fit the network config", {
            lease: describeLease(lease),
          });
          if (await this.#store.delete(lease)) this.#deleted.add(lease);
        }
        continue;
      }
      if (isReservation(lease)) {
        log.info("using the reservation for this host", { lease: describeLease(lease) });
        return { lease: await this.#refreshValue(lease), expiresAt: Infinity };
      }
      const ttl = await this.#store.keepAlive(lease.etcdLeaseId);
      if (ttl <= 0) continue; // expired between listing and now
      log.info("reusing this host's existing lease", { lease: describeLease(lease) });
      return { lease: await this.#refreshValue(lease), expiresAt: Date.now() + ttl * 1000 };
    }
    return undefined;
  }

  /**
   * Publishes new attributes for the lease this host holds (a new VtepMAC): one
   * compare-and-set write. Returns the lease as it now reads.
   */
  async republish(lease: Lease, attrs: LeaseAttrs): Promise<Lease> {
    this.#attrs = attrs;
    return await this.#refreshValue(lease);
  }

  /** Rewrites the value when our attributes (backend type or data) changed. */
  async #refreshValue(lease: Lease): Promise<Lease> {
    const wanted = this.#attrs;
    if (
      lease.attrs.backendType === wanted.backendType &&
      lease.attrs.publicIpv6 === wanted.publicIpv6 &&
      JSON.stringify(lease.attrs.backendData) === JSON.stringify(wanted.backendData) &&
      JSON.stringify(lease.attrs.backendV6Data) === JSON.stringify(wanted.backendV6Data)
    ) return lease;
    const fresh = await this.#store.update(lease, wanted);
    if (!fresh) {
      throw new OverlayError(
        `lease ${describeSubnets(lease)} changed while it was being adopted (try again)`,
      );
    }
    return fresh;
  }

  /**
   * Steps 2 and 3, per family: the previous subnet if free, else a random free one. Only
   * keys of the config's SubnetLen inside the Network take part: a hostile `0.0.0.0-0`
   * cannot make the choice walk the address space, so choosing costs at most the
   * Network's subnet count (IPv6: the number of keys, whatever the Network's size).
   */
  #choose(config: NetworkConfig, listing: LeaseListing): LeaseSubnets {
    const held: LeaseSubnets[] = [...listing.leases];
    // A key whose value does not parse still occupies its subnets.
    for (const skipped of listing.skipped) {
      const subnets = parseLeaseKey(this.#store.prefix, skipped.key);
      if (subnets) held.push(subnets);
    }
    const subnet = config.enableIPv4 ? this.#choose4(config, held) : config.network;
    if (!config.ipv6) return { subnet };
    return { subnet, ipv6Subnet: this.#choose6(config.ipv6, held) };
  }

  #choose4(config: NetworkConfig, held: LeaseSubnets[]): Ip4Net {
    const taken = new Set<number>();
    for (const lease of held) {
      if (fitsNetwork(config, lease.subnet)) taken.add(lease.subnet.ip);
    }
    const previous = this.#options.previousSubnet;
    if (previous) {
      if (!fitsRange(config, previous)) {
        log.info("previous subnet from the subnet file does not fit the config; ignoring it", {
          subnet: formatIp4Net(previous),
        });
      } else if (!taken.has(previous.ip)) {
        return previous;
      } else {
        log.info("previous subnet from the subnet file is taken; choosing another", {
          subnet: formatIp4Net(previous),
        });
      }
    }
    const count = subnetCount(config);
    const step = prefixSize(config.subnetLen);
    const start = Math.floor(Math.random() * count);
    for (let i = 0; i < count; i++) {
      const ip = config.subnetMin + ((start + i) % count) * step;
      if (!taken.has(ip)) return { ip, prefixLen: config.subnetLen };
    }
    throw new OverlayError(
      `Network ${
        formatIp4Net(config.network)
      } is exhausted: all ${count} /${config.subnetLen} subnets ` +
        `from ${formatIp4(config.subnetMin)} to ${formatIp4(config.subnetMax)} are leased ` +
        `(free unused leases, or widen SubnetMin/SubnetMax with: overlay config set)`,
    );
  }

  #choose6(pool: Ip6Pool, held: LeaseSubnets[]): Ip6Net {
    const taken = new Set<bigint>();
    for (const lease of held) {
      if (lease.ipv6Subnet && fitsNetwork6(pool, lease.ipv6Subnet)) {
        taken.add(lease.ipv6Subnet.ip);
      }
    }
    const previous = this.#options.previousIpv6Subnet;
    if (previous) {
      if (!fitsRange6(pool, previous)) {
        log.info("previous IPv6 subnet from the subnet file does not fit the config; ignoring it", {
          subnet: formatIp6Net(previous),
        });
      } else if (!taken.has(previous.ip)) {
        return previous;
      } else {
        log.info("previous IPv6 subnet from the subnet file is taken; choosing another", {
          subnet: formatIp6Net(previous),
        });
      }
    }
    const step = prefixSize6(pool.subnetLen);
    const count = (pool.subnetMax - pool.subnetMin) / step + 1n;
    const start = randomBelow(count);
    // Probing from a random start finds a free subnet within taken + 1 steps, if any.
    const probes = count < BigInt(taken.size + 1) ? count : BigInt(taken.size + 1);
    for (let i = 0n; i < probes; i++) {
      const ip = pool.subnetMin + ((start + i) % count) * step;
      if (!taken.has(ip)) return { ip, prefixLen: pool.subnetLen };
    }
    throw new OverlayError(
      `IPv6Network ${formatIp6Net(pool.network)} is exhausted: all ${count} /${pool.subnetLen} ` +
        `subnets from ${formatIp6(pool.subnetMin)} to ${formatIp6(pool.subnetMax)} are leased ` +
        `(free unused leases, or widen IPv6SubnetMin/IPv6SubnetMax with: overlay config set)`,
    );
  }

  /**
   * True when another key, created before ours, holds one of our subnets: a dual-stack
   * key is claimed whole, so a host racing us for one family with a different other
   * family is only seen afterwards. The newer key yields.
   */
  async #sharedWithOlder(ours: Lease): Promise<boolean> {
    const listing = await this.#store.listLeases();
    const order = (lease: Lease) => BigInt(lease.createRevision || "0");
    return listing.leases.some((other) =>
      other.createRevision !== ours.createRevision && order(other) < order(ours) &&
      sharesSubnet(other, ours)
    );
  }

  /**
   * Renews the held lease before expiry. Returns the new expiry, or "lost" when the
   * etcd lease no longer exists. Throws on etcd errors (the caller retries).
   */
  async renew(held: Lease): Promise<number | "lost"> {
    if (isReservation(held)) return Infinity;
    const ttl = await this.#store.keepAlive(held.etcdLeaseId);
    if (ttl <= 0) return "lost";
    return Date.now() + ttl * 1000;
  }

  /**
   * Keeps `lease` renewed until stop(): one renewal at a time, due `renewMarginMs` before
   * expiry, retried with capped exponential backoff (full jitter) while etcd cannot be
   * reached, and at once after renewNow() (etcd is back). A reservation is never renewed.
   */
  keepRenewed(lease: () => Lease, expiresAt: number, hooks: RenewalHooks): Renewal {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    let running = false;
    // Retries never wait so long that a short TTL runs out between them.
    const capMs = Math.min(10_000, Math.max(1_000, this.#options.ttlMs / 4));
    const backoff = new Backoff({ baseMs: 250, capMs });
    const schedule = (at: number) => {
      clearTimeout(timer);
      if (!Number.isFinite(at) || stopped) return;
      timer = setTimeout(renew, Math.max(0, at - Date.now()));
    };
    const renew = async () => {
      if (running || stopped) return;
      running = true;
      try {
        const result = await this.renew(lease());
        if (stopped) return;
        if (result === "lost") return hooks.onLost();
        backoff.reset();
        hooks.onRenewed(result);
        schedule(this.renewAt(result));
      } catch (error) {
        if (stopped) return;
        hooks.onFailed(error);
        schedule(Date.now() + backoff.next());
      } finally {
        running = false;
      }
    };
    schedule(this.renewAt(expiresAt));
    return {
      renewNow: () => {
        if (Number.isFinite(expiresAt)) schedule(Date.now());
      },
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  /** When the next renewal is due for a lease that expires at `expiresAt`. */
  renewAt(expiresAt: number): number {
    if (!Number.isFinite(expiresAt)) return Infinity;
    const ttl = this.#options.ttlMs;
    const margin = this.#options.renewMarginMs;
    // flannel renews 1 h before a 24 h expiry; with a short test TTL, renew at a third.
    const lead = margin < ttl ? margin : (ttl * 2) / 3;
    return expiresAt - lead;
  }
}

/** True when a lease's subnets are what this config hands out: each family right, no extra. */
export function fitsConfig(config: NetworkConfig, lease: LeaseSubnets): boolean {
  if (!fitsNetwork(config, lease.subnet)) return false;
  if (!config.ipv6) return lease.ipv6Subnet === undefined;
  return lease.ipv6Subnet !== undefined && fitsNetwork6(config.ipv6, lease.ipv6Subnet);
}

/** True when two keys name one subnet of either family (0.0.0.0/0 of IPv6-only keys aside). */
function sharesSubnet(a: LeaseSubnets, b: LeaseSubnets): boolean {
  if (a.subnet.prefixLen > 0 && netEqual(a.subnet, b.subnet)) return true;
  return a.ipv6Subnet !== undefined && b.ipv6Subnet !== undefined &&
    net6Equal(a.ipv6Subnet, b.ipv6Subnet);
}

/** A uniform random bigint in [0, bound). */
function randomBelow(bound: bigint): bigint {
  const words = new Uint32Array(5);
  crypto.getRandomValues(words);
  let value = 0n;
  for (const word of words) value = (value << 32n) | BigInt(word);
  return value % bound; // 160 random bits over at most 2^126: the bias is negligible
}
