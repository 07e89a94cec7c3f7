/**
 * The lease manager: takes this host's subnet and keeps it.
 *
 * Acquisition follows flannel's order: (1) a lease already carrying our PublicIP
 * that still fits the config; (2) the subnet named in our previous subnet file, if
 * free and fitting; (3) a random free subnet in [SubnetMin, SubnetMax]. Claims are
 * create-if-absent transactions; the loser of a race lists again and picks again.
 * Reservations (keys without an etcd lease) are never renewed, expired or taken.
 */
import { fitsNetwork, fitsRange, type NetworkConfig, subnetCount } from "./config.ts";
import { OverlayError } from "./errors.ts";
import { formatIp4, formatIp4Net, type Ip4Net, netEqual, prefixSize } from "./ip.ts";
import {
  describeLease,
  isReservation,
  type Lease,
  type LeaseAttrs,
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
  /** Subnet from the previous subnet file, if any. */
  readonly previousSubnet?: Ip4Net;
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

        const subnet = this.#choose(config, listing);
        grantedId ??= await this.#store.grant(ttlSeconds);
        const claimed = await this.#store.create(subnet, this.#attrs, grantedId);
        if (claimed) {
          log.info("acquired subnet lease", { subnet: formatIp4Net(subnet), lease: grantedId });
          grantedId = undefined;
          return {
            lease: claimed,
            expiresAt: Date.now() + ttlSeconds * 1000,
            listing,
            claimed: true,
          };
        }
        log.debug("lost the race for a subnet; choosing again", { subnet: formatIp4Net(subnet) });
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
    const mine = listing.leases.filter((l) => l.attrs.publicIp === this.#options.attrs.publicIp);
    for (const lease of mine) {
      if (!fitsNetwork(config, lease.subnet)) {
        if (isReservation(lease)) {
          log.warn("reservation for this host does not fit the network config; ignoring it", {
            lease: describeLease(lease),
          });
        } else {
          log.warn("deleting this host's old lease: it does not fit the network config", {
            lease: describeLease(lease),
          });
          await this.#store.delete(lease);
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
      JSON.stringify(lease.attrs.backendData) === JSON.stringify(wanted.backendData)
    ) return lease;
    const fresh = await this.#store.update(lease, wanted);
    if (!fresh) {
      throw new OverlayError(
        `lease ${formatIp4Net(lease.subnet)} changed while it was being adopted (try again)`,
      );
    }
    return fresh;
  }

  /**
   * Steps 2 and 3: the previous subnet if free, else a random free one. Only keys of the
   * config's SubnetLen inside the Network take part: a hostile `0.0.0.0-0` cannot make the
   * choice walk the address space, so choosing costs at most the Network's subnet count.
   */
  #choose(config: NetworkConfig, listing: LeaseListing): Ip4Net {
    const taken = new Set<number>();
    for (const lease of listing.leases) {
      if (fitsNetwork(config, lease.subnet)) taken.add(lease.subnet.ip);
    }
    // A key whose value does not parse still occupies its subnet.
    for (const skipped of listing.skipped) {
      const subnet = parseLeaseKey(this.#store.prefix, skipped.key);
      if (subnet && fitsNetwork(config, subnet)) taken.add(subnet.ip);
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
        const holder = listing.leases.find((l) => netEqual(l.subnet, previous));
        log.info("previous subnet from the subnet file is taken; choosing another", {
          subnet: formatIp4Net(previous),
          holder: holder ? formatIp4(holder.attrs.publicIp) : undefined,
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
