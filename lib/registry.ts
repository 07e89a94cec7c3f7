/**
 * The subnet registry: flannel's etcd schema read and written through npm:etcd3.
 * It knows keys, values, etcd leases and revisions; it knows nothing of devices.
 */
import { Buffer } from "node:buffer";
import type { Etcd3, IKeyValue, IWatchResponse } from "etcd3";
import { ConfigError, type NetworkConfig, parseNetworkConfig } from "./config.ts";
import { UsageError } from "./errors.ts";
import type { Ip4Net } from "./ip.ts";
import {
  decodeLeaseValue,
  encodeLeaseValue,
  type Lease,
  type LeaseAttrs,
  leaseKey,
  parseLeaseKey,
  subnetsPrefix,
} from "./lease.ts";
import { log } from "./log.ts";

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
}

export class SubnetRegistry {
  readonly #client: Etcd3;
  readonly #prefix: string;

  constructor(client: Etcd3, prefix: string) {
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
    return (await this.#client.get(this.configKey).string()) ?? undefined;
  }

  async putConfigText(text: string): Promise<void> {
    await this.#client.put(this.configKey).value(text).exec();
  }

  /**
   * Every key under the subnets prefix, parsed; invalid ones are returned as skipped.
   * Read in pages at one pinned revision, so a crowded network (60,000 leases is ~7 MB)
   * stays under gRPC's message cap and the listing is still one consistent snapshot.
   */
  async listLeases(): Promise<LeaseListing> {
    const prefix = Buffer.from(subnetsPrefix(this.#prefix));
    const rangeEnd = prefixEnd(prefix);
    const leases: Lease[] = [];
    const skipped: SkippedLease[] = [];
    let start = prefix;
    let revision: string | undefined;
    while (true) {
      const response = await this.#client.kv.range({
        key: start,
        range_end: rangeEnd,
        limit: LIST_PAGE_SIZE,
        revision: revision ?? 0,
      });
      revision ??= response.header.revision;
      for (const kv of response.kvs) {
        const parsed = this.parseKv(kv);
        if ("reason" in parsed) skipped.push(parsed);
        else leases.push(parsed);
      }
      if (!response.more || response.kvs.length === 0) break;
      start = Buffer.concat([response.kvs[response.kvs.length - 1].key, Buffer.from([0])]);
    }
    return { leases, skipped, revision: BigInt(revision) };
  }

  /** Parses one key-value pair from etcd into a lease, or a reason to skip it. */
  parseKv(kv: IKeyValue): Lease | SkippedLease {
    const key = kv.key.toString();
    const subnet = parseLeaseKey(this.#prefix, key);
    if (!subnet) return { key, reason: "key is not <ip>-<prefixlen>" };
    const attrs = decodeLeaseValue(kv.value);
    if (typeof attrs === "string") return { key, reason: attrs };
    return { subnet, attrs, etcdLeaseId: String(kv.lease ?? "0"), modRevision: kv.mod_revision };
  }

  /** Grants an etcd lease of `ttlSeconds`; returns its ID. */
  async grant(ttlSeconds: number): Promise<string> {
    const response = await this.#client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
    return String(response.ID);
  }

  async revoke(etcdLeaseId: string): Promise<void> {
    await this.#client.leaseClient.leaseRevoke({ ID: etcdLeaseId });
  }

  /** Seconds an etcd lease has left; -1 when it no longer exists. */
  async timeToLive(etcdLeaseId: string): Promise<number> {
    const response = await this.#client.leaseClient.leaseTimeToLive({ ID: etcdLeaseId });
    return Number(response.TTL);
  }

  /**
   * Renews an etcd lease to its full TTL. Returns the new TTL in seconds, or 0 when
   * the lease is gone (expired or revoked).
   */
  async keepAlive(etcdLeaseId: string): Promise<number> {
    const stream = await this.#client.leaseClient.leaseKeepAlive();
    try {
      const response = await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on("data", resolve);
        stream.on("error", reject);
        stream.write({ ID: etcdLeaseId });
      });
      return Number(response.TTL);
    } finally {
      stream.end();
    }
  }

  /**
   * Claims a subnet if nobody holds it: one transaction,
   * `If(Version(key) == 0) Then Put(key, value, lease)`. Returns false on a lost race.
   */
  async create(subnet: Ip4Net, attrs: LeaseAttrs, etcdLeaseId: string): Promise<boolean> {
    const key = leaseKey(this.#prefix, subnet);
    const result = await this.#client.if(key, "Version", "==", 0)
      .then(this.#client.put(key).value(encodeLeaseValue(attrs)).lease(etcdLeaseId))
      .commit();
    return result.succeeded;
  }

  /** Rewrites a lease's value under the same etcd lease, only if nobody changed it since. */
  async update(lease: Lease, attrs: LeaseAttrs): Promise<boolean> {
    const key = leaseKey(this.#prefix, lease.subnet);
    const put = this.#client.put(key).value(encodeLeaseValue(attrs));
    if (lease.etcdLeaseId !== "0") put.lease(lease.etcdLeaseId);
    const result = await this.#client.if(key, "Mod", "==", lease.modRevision).then(put).commit();
    return result.succeeded;
  }

  /** Deletes a lease key only if it is unchanged since it was read. */
  async delete(lease: Lease): Promise<boolean> {
    const key = leaseKey(this.#prefix, lease.subnet);
    const result = await this.#client.if(key, "Mod", "==", lease.modRevision)
      .then(this.#client.delete().key(key)).commit();
    return result.succeeded;
  }

  /** Reads one lease; undefined when absent. */
  async getLease(subnet: Ip4Net): Promise<Lease | SkippedLease | undefined> {
    const key = leaseKey(this.#prefix, subnet);
    const response = await this.#client.get(key).exec();
    return response.kvs.length === 0 ? undefined : this.parseKv(response.kvs[0]);
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

const LIST_PAGE_SIZE = 20_000;

/** The range end that covers every key starting with `prefix`. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return end;
}

/** etcd cancelled the watch because its start revision was compacted away. */
class WatchCompacted extends Error {}

/**
 * A running watch of the subnets prefix; see SubnetRegistry.watchLeases.
 * It drives etcd's watch stream itself (not the client's watcher, which resumes from
 * the server's header revision and gives no compaction signal): it always resumes
 * from the last applied revision + 1.
 */
export class LeaseWatch {
  readonly #registry: SubnetRegistry;
  readonly #client: Etcd3;
  readonly #onEvent: (event: LeaseEvent) => void;
  readonly #hooks: WatchHooks;
  /** Current view: lease key → lease. */
  readonly #known = new Map<string, Lease>();
  #lastRevision: bigint;
  #closed = false;
  #stream: { end(): void; cancel?(): void } | undefined;
  #ready: Promise<void>;
  #markReady: () => void = () => {};
  #wake: () => void = () => {};
  readonly #running: Promise<void>;

  constructor(
    registry: SubnetRegistry,
    client: Etcd3,
    from: LeaseListing,
    onEvent: (event: LeaseEvent) => void,
    hooks: WatchHooks,
  ) {
    this.#registry = registry;
    this.#client = client;
    this.#onEvent = onEvent;
    this.#hooks = hooks;
    for (const lease of from.leases) {
      this.#known.set(leaseKey(registry.prefix, lease.subnet), lease);
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
    this.#endStream();
    this.#wake();
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
        await this.#follow(() => setConnected(true));
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
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          setTimeout(resolve, 500);
        });
      } finally {
        this.#endStream();
      }
    }
  }

  /** Opens one watch stream from the last applied revision + 1; settles when it ends. */
  async #follow(onCreated: () => void): Promise<void> {
    const stream = await this.#client.watchClient.watch();
    this.#stream = stream as unknown as { end(): void; cancel?(): void };
    if (this.#closed) return;
    const key = Buffer.from(subnetsPrefix(this.#registry.prefix));
    const rangeEnd = prefixEnd(key);
    await new Promise<void>((_resolve, reject) => {
      stream.on("data", (response: IWatchResponse) => {
        try {
          if (response.compact_revision && response.compact_revision !== "0") {
            reject(new WatchCompacted(`revision compacted at ${response.compact_revision}`));
            return;
          }
          if (response.canceled) {
            reject(new Error(`watch canceled: ${response.cancel_reason || "no reason given"}`));
            return;
          }
          if (response.created) {
            onCreated();
            this.#markReady();
          }
          this.#apply(response);
        } catch (error) {
          reject(error);
        }
      });
      stream.on("error", reject);
      stream.on("end", () => reject(new Error("watch stream ended")));
      stream.write({
        create_request: {
          key,
          range_end: rangeEnd,
          start_revision: (this.#lastRevision + 1n).toString(),
          progress_notify: true,
        },
      });
    });
  }

  #endStream(): void {
    const stream = this.#stream;
    this.#stream = undefined;
    try {
      stream?.cancel?.();
      stream?.end();
    } catch { /* already closed */ }
  }

  #apply(response: IWatchResponse): void {
    // One transaction's events share a revision: compare against the revision applied
    // before this response, not the one just applied.
    const appliedBefore = this.#lastRevision;
    for (const event of response.events ?? []) {
      const revision = BigInt(event.kv.mod_revision);
      if (revision <= appliedBefore) continue;
      const key = event.kv.key.toString();
      const previous = this.#known.get(key);
      if (event.type === "Delete") {
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
    if ((response.events ?? []).length === 0 && response.header && !response.created) {
      // A progress notification: everything up to this revision has been delivered.
      const revision = BigInt(response.header.revision);
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
          fresh.set(leaseKey(this.#registry.prefix, lease.subnet), lease);
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
        this.#hooks.onResync?.();
        return;
      } catch (error) {
        log.warn("lease re-list after compaction failed; retrying", {
          error: (error as Error).message,
        });
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }
}
