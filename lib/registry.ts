/**
 * The subnet registry: flannel's etcd schema read and written through the etcd client
 * (lib/etcd_client.ts). It knows keys, values, etcd leases and revisions; it knows
 * nothing of devices.
 */
import { type EtcdClient, type KeyValue, prefixEnd, type WatchResponse } from "./etcd_client.ts";
import { ConfigError, type NetworkConfig, parseNetworkConfig } from "./config.ts";
import { UsageError } from "./errors.ts";
import { formatIp4, type Ip4Net } from "./ip.ts";
import {
  decodeLeaseValue,
  encodeLeaseValue,
  type Lease,
  type LeaseAttrs,
  leaseKey,
  type LeaseSubnets,
  parseLeaseKey,
  subnetsPrefix,
} from "./lease.ts";
import { log } from "./log.ts";
import { Backoff, sleep } from "./backoff.ts";

/** A key under the subnets prefix that is not a valid lease, and why. */
export interface SkippedLease {
  readonly key: string;
  readonly reason: string;
}

export interface LeaseListing {
  readonly leases: Lease[];
  readonly skipped: SkippedLease[];
  /** The etcd revision the listing was read at: watch from revision + 1 to miss nothing. */
  readonly revision: bigint;
}

/** "put": a lease appeared or its value changed; "removed": deleted, expired or unreadable. */
export type LeaseEvent =
  | { readonly type: "put"; readonly lease: Lease }
  | { readonly type: "removed"; readonly lease: Lease };

export interface WatchHooks {
  /** A key under the prefix that is not a valid lease. */
  onSkipped?: (skipped: SkippedLease) => void;
  /** The watch had to list again after compaction. */
  onResync?: () => void;
  /** The watch stream broke (etcd unreachable) or came back. */
  onConnection?: (connected: boolean) => void;
  /** The network config key was written (its text) or deleted (undefined). */
  onConfig?: (text: string | undefined) => void;
  /** The waits before a broken stream is opened again (capped, jittered by default). */
  backoff?: Backoff;
}

/**
 * Re-opening a broken watch: the first retry within 250 ms, none more than 6 s apart, so a
 * fleet that lost etcd comes back spread over 6 s instead of all at once.
 */
export const WATCH_RETRY = { baseMs: 250, capMs: 6_000 } as const;
/**
 * Once retries are that far apart (etcd has been away for several seconds), a watch waits
 * for etcd to serve again and then a random part of this before it opens again.
 */
export const WATCH_SPREAD_MS = 5_000;

/** Where a watch stream comes from: the etcd client, or a scripted one in tests. */
export interface WatchStream {
  /** Opens a stream from `startRevision`; settles when it ends (see EtcdClient.watch). */
  watch(
    options: { key: string; rangeEnd?: string; startRevision: string; signal: AbortSignal },
    onResponse: (response: WatchResponse) => void,
  ): Promise<void>;
  /** After a long outage, waits for etcd to serve again, then a random part of `spreadMs`. */
  untilAnswering?(spreadMs: number, signal: AbortSignal): Promise<void>;
}

export class SubnetRegistry {
  readonly #client: EtcdClient;
  readonly #prefix: string;

  constructor(client: EtcdClient, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  get prefix(): string {
    return this.#prefix;
  }

  get configKey(): string {
    return `${this.#prefix}/config`;
  }

  /** Reads and validates the network config. Throws UsageError when missing or invalid. */
  async getConfig(): Promise<NetworkConfig> {
    const text = await this.getConfigText();
    if (text === undefined) {
      throw new UsageError(
        `Network config ${JSON.stringify(this.configKey)}: key not found ` +
          `(set it with: overlay config set '{"Network":"10.10.0.0/16"}')`,
      );
    }
    try {
      return parseNetworkConfig(text);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      throw new UsageError(
        `Network config ${JSON.stringify(this.configKey)}: ${error.message} ` +
          `(fix it with: overlay config set)`,
      );
    }
  }

  /** The config text as stored, or undefined when absent. */
  async getConfigText(): Promise<string | undefined> {
    return await this.#client.get(this.configKey);
  }

  /** The config text (undefined when absent) and the revision it was read at. */
  async readConfig(): Promise<{ text: string | undefined; revision: string }> {
    const { kvs, revision } = await this.#client.range(this.configKey);
    return { text: kvs[0]?.value, revision };
  }

  /**
   * Resolves when the config key changes after `revision`, after `timeoutMs`, or when
   * `signal` aborts, whichever comes first. Throws when etcd cannot be reached.
   */
  async configChanged(revision: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const done = new AbortController();
    const timer = setTimeout(() => done.abort(), timeoutMs);
    try {
      await this.#client.watch({
        key: this.configKey,
        startRevision: (BigInt(revision) + 1n).toString(),
        signal: AbortSignal.any([signal, done.signal]),
      }, (response) => {
        if (response.events.length > 0) done.abort();
      });
    } catch (error) {
      if (!done.signal.aborted && !signal.aborted) throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async putConfigText(text: string): Promise<void> {
    await this.#client.put(this.configKey, text);
  }

  /**
   * Every key under the subnets prefix, parsed; invalid ones are returned as skipped.
   * One consistent snapshot: every page is read at the revision of the first. A crowded
   * network is read in parallel key ranges (split by the digits after the octets that
   * `within` fixes), because etcd's JSON gateway spends ~300 ms encoding 20,000 leases.
   */
  async listLeases(within?: Ip4Net): Promise<LeaseListing> {
    const prefix = subnetsPrefix(this.#prefix);
    const end = prefixEnd(prefix);
    const first = await this.#client.range(prefix, { rangeEnd: end, limit: FIRST_PAGE_SIZE });
    const kvs = [...first.kvs];
    if (first.more && first.kvs.length > 0) {
      const resume = first.kvs[first.kvs.length - 1].key + "\0";
      const fixed = within
        ? formatIp4(within.ip).split(".").slice(0, Math.floor(within.prefixLen / 8)).map((o) =>
          o + "."
        ).join("")
        : "";
      const points = [..."0123456789"].map((digit) => prefix + fixed + digit)
        .filter((point) => point > resume && point < end);
      const bounds = [resume, ...points, end];
      const pages = await Promise.all(
        bounds.slice(0, -1).map((start, i) => this.#rangeAll(start, bounds[i + 1], first.revision)),
      );
      for (const page of pages) kvs.push(...page);
    }
    const leases: Lease[] = [];
    const skipped: SkippedLease[] = [];
    for (const kv of kvs) {
      const parsed = this.parseKv(kv);
      if ("reason" in parsed) skipped.push(parsed);
      else leases.push(parsed);
    }
    return { leases, skipped, revision: BigInt(first.revision) };
  }

  /** Every key in [start, end) at `revision`, in pages. */
  async #rangeAll(start: string, end: string, revision: string): Promise<KeyValue[]> {
    const kvs: KeyValue[] = [];
    while (true) {
      const page = await this.#client.range(start, {
        rangeEnd: end,
        limit: LIST_PAGE_SIZE,
        revision,
      });
      kvs.push(...page.kvs);
      if (!page.more || page.kvs.length === 0) return kvs;
      start = page.kvs[page.kvs.length - 1].key + "\0";
    }
  }

  /** Parses one key-value pair from etcd into a lease, or a reason to skip it. */
  parseKv(kv: KeyValue): Lease | SkippedLease {
    const subnets = parseLeaseKey(this.#prefix, kv.key);
    if (!subnets) {
      return { key: kv.key, reason: "key is not <ip>-<prefixlen>[&<ipv6>-<prefixlen>]" };
    }
    const attrs = decodeLeaseValue(kv.value);
    if (typeof attrs === "string") return { key: kv.key, reason: attrs };
    return {
      ...subnets,
      attrs,
      etcdLeaseId: kv.lease,
      modRevision: kv.modRevision,
      createRevision: kv.createRevision,
    };
  }

  /** Grants an etcd lease of `ttlSeconds`; returns its ID. */
  async grant(ttlSeconds: number): Promise<string> {
    return await this.#client.leaseGrant(ttlSeconds);
  }

  async revoke(etcdLeaseId: string): Promise<void> {
    await this.#client.leaseRevoke(etcdLeaseId);
  }

  /** Seconds an etcd lease has left; -1 when it no longer exists. */
  async timeToLive(etcdLeaseId: string): Promise<number> {
    return await this.#client.leaseTimeToLive(etcdLeaseId);
  }

  /**
   * Renews an etcd lease to its full TTL. Returns the new TTL in seconds, or 0 when
   * the lease is gone (expired or revoked).
   */
  async keepAlive(etcdLeaseId: string): Promise<number> {
    return await this.#client.leaseKeepAlive(etcdLeaseId);
  }

  /**
   * Claims a subnet if nobody holds it: one transaction,
   * `If(Version(key) == 0) Then Put(key, value, lease)`. Returns the lease as written
   * (no second read), or undefined when another host was first.
   */
  async create(
    subnets: LeaseSubnets,
    attrs: LeaseAttrs,
    etcdLeaseId: string,
  ): Promise<Lease | undefined> {
    const key = leaseKey(this.#prefix, subnets);
    const revision = await this.#client.txn(
      [{ key, target: "VERSION", version: "0" }],
      [{ put: { key, value: encodeLeaseValue(attrs), lease: etcdLeaseId } }],
    );
    if (revision === undefined) return undefined;
    return { ...subnets, attrs, etcdLeaseId, modRevision: revision, createRevision: revision };
  }

  /**
   * Rewrites a lease's value under the same etcd lease, only if nobody changed it since.
   * Returns the lease as written, or undefined when it changed in between.
   */
  async update(lease: Lease, attrs: LeaseAttrs): Promise<Lease | undefined> {
    const key = leaseKey(this.#prefix, lease);
    const revision = await this.#client.txn(
      [{ key, target: "MOD", modRevision: lease.modRevision }],
      [{ put: { key, value: encodeLeaseValue(attrs), lease: lease.etcdLeaseId } }],
    );
    return revision === undefined ? undefined : { ...lease, attrs, modRevision: revision };
  }

  /** Deletes a lease key only if it is unchanged since it was read. */
  async delete(lease: Lease): Promise<boolean> {
    const key = leaseKey(this.#prefix, lease);
    const revision = await this.#client.txn(
      [{ key, target: "MOD", modRevision: lease.modRevision }],
      [{ delete: { key } }],
    );
    return revision !== undefined;
  }

  /** Reads one lease; undefined when absent. */
  async getLease(subnets: LeaseSubnets | Ip4Net): Promise<Lease | SkippedLease | undefined> {
    const { kvs } = await this.#client.range(leaseKey(this.#prefix, subnets));
    return kvs.length === 0 ? undefined : this.parseKv(kvs[0]);
  }

  /**
   * Follows the subnets prefix from a known listing so that no change is lost: every
   * event of every response is applied, a reconnect resumes from the last seen
   * revision + 1, and when that revision has been compacted away the prefix is listed
   * again and the difference is reported as events.
   */
  watchLeases(
    from: LeaseListing,
    onEvent: (event: LeaseEvent) => void,
    hooks: WatchHooks = {},
  ): LeaseWatch {
    return new LeaseWatch(this, this.#client, from, onEvent, hooks);
  }
}

const FIRST_PAGE_SIZE = 1_000;
const LIST_PAGE_SIZE = 10_000;

/** etcd cancelled the watch because its start revision was compacted away. */
class WatchCompacted extends Error {}

/**
 * A running watch of the subnets prefix; see SubnetRegistry.watchLeases. Every stream
 * it opens starts at the last applied revision + 1, whatever broke the previous one.
 */
export class LeaseWatch {
  readonly #registry: SubnetRegistry;
  readonly #stream: WatchStream;
  readonly #onEvent: (event: LeaseEvent) => void;
  readonly #hooks: WatchHooks;
  readonly #backoff: Backoff;
  readonly #subnets: string;
  /** Current view: lease key → lease. */
  readonly #known = new Map<string, Lease>();
  #lastRevision: bigint;
  #closed = false;
  #abort = new AbortController();
  #ready: Promise<void>;
  #markReady: () => void = () => {};
  readonly #running: Promise<void>;

  constructor(
    registry: SubnetRegistry,
    stream: WatchStream,
    from: LeaseListing,
    onEvent: (event: LeaseEvent) => void,
    hooks: WatchHooks,
  ) {
    this.#registry = registry;
    this.#stream = stream;
    this.#onEvent = onEvent;
    this.#hooks = hooks;
    this.#backoff = hooks.backoff ?? new Backoff(WATCH_RETRY);
    this.#subnets = subnetsPrefix(registry.prefix);
    for (const lease of from.leases) {
      this.#known.set(leaseKey(registry.prefix, lease), lease);
    }
    this.#lastRevision = from.revision;
    this.#ready = new Promise((resolve) => this.#markReady = resolve);
    this.#running = this.#run();
  }

  /** Resolves once the watch stream is established for the first time. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** The last etcd revision whose events have been applied. */
  get lastRevision(): bigint {
    return this.#lastRevision;
  }

  /** The leases as the watch currently sees them. */
  leases(): Lease[] {
    return [...this.#known.values()];
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    this.#markReady();
    await this.#running;
  }

  async #run(): Promise<void> {
    let connected = true;
    const setConnected = (value: boolean) => {
      if (value !== connected) this.#hooks.onConnection?.(value);
      connected = value;
    };
    while (!this.#closed) {
      try {
        await this.#follow(() => {
          setConnected(true);
          this.#backoff.reset();
        });
      } catch (error) {
        if (this.#closed) break;
        if (error instanceof WatchCompacted) {
          await this.#resync();
          continue;
        }
        setConnected(false);
        log.debug("lease watch interrupted; resuming", {
          error: (error as Error).message,
          from: (this.#lastRevision + 1n).toString(),
        });
        await sleep(this.#backoff.next(), this.#abort.signal);
        if (this.#backoff.window >= WATCH_RETRY.capMs) {
          // A long outage: come back when etcd serves, spread over WATCH_SPREAD_MS.
          await this.#stream.untilAnswering?.(WATCH_SPREAD_MS, this.#abort.signal);
        }
      }
    }
  }

  /**
   * Opens one watch stream from the last applied revision + 1; settles when it ends. The
   * range runs from the config key to the end of the subnets prefix: one stream follows
   * both (flannel's schema keeps nothing else between them; anything else is passed over).
   */
  async #follow(onCreated: () => void): Promise<void> {
    const prefix = subnetsPrefix(this.#registry.prefix);
    await this.#stream.watch({
      key: this.#registry.configKey,
      rangeEnd: prefixEnd(prefix),
      startRevision: (this.#lastRevision + 1n).toString(),
      signal: this.#abort.signal,
    }, (response) => {
      if (response.compactRevision !== "0") {
        throw new WatchCompacted(`revision compacted at ${response.compactRevision}`);
      }
      if (response.canceled) {
        throw new Error(`watch canceled: ${response.cancelReason || "no reason given"}`);
      }
      if (response.created) {
        onCreated();
        this.#markReady();
      }
      this.#apply(response);
    });
    if (!this.#closed) throw new Error("watch stream ended");
  }

  #apply(response: WatchResponse): void {
    // One transaction's events share a revision: compare against the revision applied
    // before this response, not the one just applied.
    const appliedBefore = this.#lastRevision;
    for (const event of response.events) {
      const revision = BigInt(event.kv.modRevision);
      if (revision <= appliedBefore) continue;
      const key = event.kv.key;
      if (!key.startsWith(this.#subnets)) {
        if (key === this.#registry.configKey) {
          this.#hooks.onConfig?.(event.type === "DELETE" ? undefined : event.kv.value);
        }
        this.#lastRevision = revision;
        continue;
      }
      const previous = this.#known.get(key);
      if (event.type === "DELETE") {
        if (previous) {
          this.#known.delete(key);
          this.#onEvent({ type: "removed", lease: previous });
        }
      } else {
        const parsed = this.#registry.parseKv(event.kv);
        if ("reason" in parsed) {
          this.#hooks.onSkipped?.(parsed);
          if (previous) {
            this.#known.delete(key);
            this.#onEvent({ type: "removed", lease: previous });
          }
        } else {
          this.#known.set(key, parsed);
          this.#onEvent({ type: "put", lease: parsed });
        }
      }
      this.#lastRevision = revision;
    }
    if (response.events.length === 0 && !response.created) {
      // A progress notification: everything up to this revision has been delivered.
      const revision = BigInt(response.revision);
      if (revision > this.#lastRevision) this.#lastRevision = revision;
    }
  }

  /** After compaction: list again and report the difference against what we knew. */
  async #resync(): Promise<void> {
    while (!this.#closed) {
      try {
        const listing = await this.#registry.listLeases();
        const fresh = new Map<string, Lease>();
        for (const lease of listing.leases) {
          fresh.set(leaseKey(this.#registry.prefix, lease), lease);
        }
        for (const [key, lease] of this.#known) {
          if (!fresh.has(key)) {
            this.#known.delete(key);
            this.#onEvent({ type: "removed", lease });
          }
        }
        for (const [key, lease] of fresh) {
          const old = this.#known.get(key);
          if (!old || old.modRevision !== lease.modRevision) {
            this.#known.set(key, lease);
            this.#onEvent({ type: "put", lease });
          }
        }
        for (const skipped of listing.skipped) this.#hooks.onSkipped?.(skipped);
        this.#lastRevision = listing.revision;
        // The config key's events in the compacted span are gone too: read it afresh.
        this.#hooks.onConfig?.(await this.#registry.getConfigText());
        this.#hooks.onResync?.();
        this.#backoff.reset();
        return;
      } catch (error) {
        log.warn("lease re-list after compaction failed; retrying", {
          error: (error as Error).message,
        });
        await sleep(this.#backoff.next(), this.#abort.signal);
        if (this.#backoff.window >= WATCH_RETRY.capMs) {
          // A long outage: come back when etcd serves, spread over WATCH_SPREAD_MS.
          await this.#stream.untilAnswering?.(WATCH_SPREAD_MS, this.#abort.signal);
        }
      }
    }
  }
}
