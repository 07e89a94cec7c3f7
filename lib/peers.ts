/**
 * The peers: every other host's lease as the watch reports it, and which of them the
 * backend routes to. A lease is admitted when lib/peer_policy.ts finds nothing wrong with
 * it and it collides with no older lease: two leases that claim one thing only one host
 * can have (vxlan's VtepMAC: the FDB is keyed by MAC) are settled by age, the lower etcd
 * create revision keeps it, and the newer is skipped until the older goes away. So a
 * copied or hostile lease never changes the entries of the lease it copies.
 */
import type { Backend } from "./backend.ts";
import {
  describeLease,
  describePublicIps,
  describeSubnets,
  type Lease,
  leaseKey,
} from "./lease.ts";
import { formatIp4Net } from "./ip.ts";
import { formatIp6Net } from "./ip6.ts";
import type { PeerStatus } from "./health.ts";
import { log } from "./log.ts";
import {
  type LeaseProblem,
  leaseProblem,
  type PeerPolicy,
  type SkipReason,
} from "./peer_policy.ts";
import { KeyedRateLimit } from "./rate_limit.ts";
import type { LeaseEvent, SkippedLease } from "./registry.ts";

/** At most one log line per lease key in this window (a flapping key floods nothing). */
const LOG_WINDOW_MS = 60_000;

/** A lease the agent does not route to, and why. */
export interface SkippedPeer {
  readonly key: string;
  readonly reason: SkipReason;
  readonly text: string;
}

export class PeerTracker {
  readonly #backend: Backend;
  readonly #policy: PeerPolicy;
  readonly #prefix: string;
  /** Every peer lease that parsed, by key. */
  readonly #leases = new Map<string, Lease>();
  /** The leases the backend routes to, by key. */
  readonly #admitted = new Map<string, Lease>();
  readonly #since = new Map<string, number>();
  /** Leases skipped now, by key; a key is warned about once per reason. */
  readonly #skipped = new Map<string, SkippedPeer>();
  /** claim → keys of the leases that make it. */
  readonly #claimants = new Map<string, Set<string>>();
  readonly #skipCounts = new Map<SkipReason, number>();
  /** A flapping key (hostile or broken) gets at most one line of each kind a minute. */
  readonly #logLimit = new KeyedRateLimit(LOG_WINDOW_MS);

  constructor(backend: Backend, policy: PeerPolicy, etcdPrefix: string) {
    this.#backend = backend;
    this.#policy = policy;
    this.#prefix = etcdPrefix;
  }

  /** Applies one lease event (never this host's own lease). */
  apply(event: LeaseEvent): void {
    const key = leaseKey(this.#prefix, event.lease);
    const previous = this.#leases.get(key);
    const affected = new Set<string>([key]);
    if (previous) this.#unindex(key, previous, affected);
    if (event.type === "removed") {
      this.#leases.delete(key);
      this.#skipped.delete(key);
    } else {
      this.#leases.set(key, event.lease);
      this.#index(key, event.lease, affected);
    }
    this.#settle(affected);
  }

  /**
   * Takes a whole listing at once: every lease is known before any is admitted, so a
   * newer lease that collides with an older one is never programmed, whatever the order.
   */
  load(leases: Lease[]): void {
    const affected = new Set<string>();
    for (const lease of leases) {
      const key = leaseKey(this.#prefix, lease);
      const previous = this.#leases.get(key);
      if (previous) this.#unindex(key, previous, affected);
      this.#leases.set(key, lease);
      affected.add(key);
      this.#index(key, lease, affected);
    }
    this.#settle(affected);
  }

  /** A key under the prefix whose value or name does not parse: counted and warned about. */
  malformed(skipped: SkippedLease): void {
    // A lease that turns into garbage is gone as far as routing goes.
    if (this.#leases.has(skipped.key)) {
      const lease = this.#leases.get(skipped.key)!;
      this.apply({ type: "removed", lease });
    }
    this.#skip(skipped.key, { reason: "malformed", text: skipped.reason });
  }

  /** Number of peers routed to. */
  get size(): number {
    return this.#admitted.size;
  }

  /** The peers routed to, for status. */
  list(): PeerStatus[] {
    return [...this.#admitted].map(([key, lease]) => ({
      subnet: describeSubnets(lease),
      publicIp: describePublicIps(lease),
      backend: lease.attrs.backendType,
      since: this.#since.get(key) ?? 0,
      lastHeard: this.#backend.lastHeard(lease),
      ...this.#backend.peerDetails?.(lease),
    }));
  }

  /** Leases skipped now, for status. */
  skipped(): SkippedPeer[] {
    return [...this.#skipped.values()];
  }

  /** How many times a lease was skipped, by reason (a counter for /metrics). */
  skipCounts(): Record<string, number> {
    return Object.fromEntries(this.#skipCounts);
  }

  /** What a lease claims that no other may share: its subnets, and what the backend says. */
  #claims(lease: Lease): string[] {
    return [
      ...(lease.subnet.prefixLen > 0 ? [`subnet ${formatIp4Net(lease.subnet)}`] : []),
      ...(lease.ipv6Subnet ? [`subnet ${formatIp6Net(lease.ipv6Subnet)}`] : []),
      ...this.#backend.claims(lease),
    ];
  }

  #index(key: string, lease: Lease, affected: Set<string>): void {
    for (const claim of this.#claims(lease)) {
      let keys = this.#claimants.get(claim);
      if (!keys) this.#claimants.set(claim, keys = new Set());
      keys.add(key);
      for (const other of keys) affected.add(other);
    }
  }

  #unindex(key: string, lease: Lease, affected: Set<string>): void {
    for (const claim of this.#claims(lease)) {
      const keys = this.#claimants.get(claim);
      if (!keys) continue;
      keys.delete(key);
      for (const other of keys) affected.add(other);
      if (keys.size === 0) this.#claimants.delete(claim);
    }
  }

  /**
   * Decides again for every affected key: admit, update or withdraw. What changes goes
   * to the backend as one batch (a listing of 5,000 leases: one run of netlink batches).
   */
  #settle(affected: Set<string>): void {
    if (this.#backend.batchPeers) this.#backend.batchPeers(() => this.#decide(affected));
    else this.#decide(affected);
  }

  #decide(affected: Set<string>): void {
    // Withdrawals first, so a claim is free before its new holder is programmed.
    const admit: [string, Lease][] = [];
    for (const key of affected) {
      const lease = this.#leases.get(key);
      const problem = lease ? this.#problem(key, lease) : undefined;
      if (!lease || problem) {
        this.#withdraw(key);
        if (lease && problem) this.#skip(key, problem);
      } else admit.push([key, lease]);
    }
    for (const [key, lease] of admit) this.#admit(key, lease);
  }

  #problem(key: string, lease: Lease): LeaseProblem | undefined {
    const problem = leaseProblem(lease, this.#policy);
    if (problem) return problem;
    for (const claim of this.#claims(lease)) {
      const holder = this.#holder(claim);
      if (holder !== undefined && holder !== key) {
        return { reason: "conflict", text: `${claim} is already claimed by older lease ${holder}` };
      }
    }
    return undefined;
  }

  /** The valid lease that holds a claim: the oldest by create revision (then by key). */
  #holder(claim: string): string | undefined {
    let best: { key: string; revision: bigint } | undefined;
    for (const key of this.#claimants.get(claim) ?? []) {
      const lease = this.#leases.get(key)!;
      if (leaseProblem(lease, this.#policy)) continue;
      const revision = BigInt(lease.createRevision || "0");
      if (
        !best || revision < best.revision || (revision === best.revision && key < best.key)
      ) best = { key, revision };
    }
    return best?.key;
  }

  #admit(key: string, lease: Lease): void {
    const known = this.#admitted.get(key);
    if (this.#skipped.delete(key)) this.#log(key, "info", "lease is usable again", { key });
    this.#admitted.set(key, lease);
    if (!known) this.#since.set(key, Date.now());
    if (known && sameRoute(known, lease)) return;
    this.#backend.addPeer(lease);
    if (!known) this.#log(key, "info", "peer joined", { peer: describeLease(lease) });
  }

  #withdraw(key: string): void {
    const lease = this.#admitted.get(key);
    if (!lease) return;
    this.#admitted.delete(key);
    this.#since.delete(key);
    this.#backend.removePeer(lease);
    this.#log(key, "info", "peer left", { peer: describeLease(lease) });
  }

  /** Records a skipped lease; counts and warns only when its reason is new for the key. */
  #skip(key: string, problem: LeaseProblem): void {
    const known = this.#skipped.get(key);
    this.#skipped.set(key, { key, ...problem });
    if (known?.text === problem.text) return;
    this.#skipCounts.set(problem.reason, (this.#skipCounts.get(problem.reason) ?? 0) + 1);
    this.#log(key, "warn", "skipping a lease in etcd: it is not used for routing", {
      key,
      reason: problem.text,
    });
  }

  /** Logs at most once a minute per key and kind of line (joined, left, skipped, usable). */
  #log(key: string, level: "info" | "warn", message: string, fields: Record<string, unknown>) {
    const { allowed, held } = this.#logLimit.allow(`${message}\0${key}`);
    if (allowed) log[level](message, held > 0 ? { ...fields, heldBack: held } : fields);
  }
}

/** True when a changed lease needs no reprogramming (only its etcd bookkeeping moved). */
function sameRoute(a: Lease, b: Lease): boolean {
  return a.attrs.publicIp === b.attrs.publicIp &&
    a.attrs.publicIpv6 === b.attrs.publicIpv6 &&
    a.attrs.backendType === b.attrs.backendType &&
    JSON.stringify(a.attrs.backendData) === JSON.stringify(b.attrs.backendData) &&
    JSON.stringify(a.attrs.backendV6Data) === JSON.stringify(b.attrs.backendV6Data);
}
