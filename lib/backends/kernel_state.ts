/**
 * Desired kernel state for the kernel backends (vxlan, host-gw), and the reconciler
 * that makes the kernel match it: entries someone deleted by hand come back, entries of
 * peers that left go away, nothing is duplicated (every write is a replace), and an
 * agent that restarts adopts what is already there.
 *
 * An entry is one route, neighbour or FDB record, keyed so that the desired set and a
 * dump of the kernel can be compared. Changes go out as one netlink batch.
 */
import type { Netlink, Request, Route } from "../../ffi/netlink.ts";
import { describeErrno } from "../../ffi/libc.ts";
import { formatIp4 } from "../ip.ts";
import { log } from "../log.ts";

/** How often the kernel is compared with the desired entries. */
export const RECONCILE_MS = 5_000;

export interface KernelEntry {
  /** Identity, e.g. "route 10.10.5.0/24"; the same key in a dump means the same entry. */
  readonly key: string;
  /** What the kernel must hold, compared with a dumped entry's fingerprint. */
  readonly fingerprint: string;
  readonly add: Request;
  readonly remove: Request;
}

/**
 * What a dump found: key → fingerprint, and how to build the request that deletes it
 * (built only for the few entries that must go: a dump of 1,000 peers every 5 s should
 * not encode 3,000 requests nobody sends).
 */
export type KernelSnapshot = Map<string, { fingerprint: string; remove: () => Request }>;

export class KernelState {
  readonly #netlink: Netlink;
  readonly #what: string;
  readonly #dump: () => KernelSnapshot;
  /** Desired entries per peer (subnet key), in the order they must be added. */
  readonly #peers = new Map<string, KernelEntry[]>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * `dump` reads what the backend owns in the kernel now; it is called on every
   * reconcile. The state owns `netlink` from here on and closes it in close().
   */
  constructor(netlink: Netlink, what: string, dump: () => KernelSnapshot) {
    this.#netlink = netlink;
    this.#what = what;
    this.#dump = dump;
  }

  /** Reconciles every RECONCILE_MS until close(). */
  startReconciling(): void {
    this.#timer = setInterval(() => this.reconcileNow(), RECONCILE_MS);
  }

  /** Dumps the kernel and fixes the difference; logs what it changed, never throws. */
  reconcileNow(): void {
    try {
      const { restored, removed } = this.reconcile(this.#dump());
      if (restored + removed > 0) log.info(`reconciled ${this.#what}`, { restored, removed });
    } catch (error) {
      log.warn(`${this.#what}: reconcile failed; retrying later`, {
        error: (error as Error).message,
      });
    }
  }

  /** Stops reconciling and closes the netlink socket. Kernel entries stay for a restart. */
  close(): void {
    clearInterval(this.#timer);
    this.#netlink.close();
  }

  /** Sets a peer's entries, adding them now (replacing whatever is there). */
  setPeer(peer: string, entries: KernelEntry[]): void {
    const previous = this.#peers.get(peer) ?? [];
    this.#peers.set(peer, entries);
    const keep = new Set(entries.map((e) => e.key));
    const stale = previous.filter((e) => !keep.has(e.key)).reverse().map((e) => e.remove);
    this.#send([...stale, ...entries.map((e) => e.add)], "program peer");
  }

  /** Removes a peer's entries, in the reverse of the order they were added. */
  removePeer(peer: string): void {
    const entries = this.#peers.get(peer);
    if (!entries) return;
    this.#peers.delete(peer);
    this.#send(entries.slice().reverse().map((e) => e.remove), "remove peer", true);
  }

  /** Number of entries desired. */
  get size(): number {
    let total = 0;
    for (const entries of this.#peers.values()) total += entries.length;
    return total;
  }

  /**
   * Compares the desired entries with `actual` (a dump of what this backend owns) and
   * fixes the difference: missing or changed entries are written again, entries nobody
   * wants are deleted. Returns how many entries it restored and removed.
   */
  reconcile(actual: KernelSnapshot): { restored: number; removed: number } {
    const requests: Request[] = [];
    const wanted = new Set<string>();
    let restored = 0;
    for (const entries of this.#peers.values()) {
      for (const entry of entries) {
        wanted.add(entry.key);
        if (actual.get(entry.key)?.fingerprint !== entry.fingerprint) {
          requests.push(entry.add);
          restored++;
        }
      }
    }
    // Removals first: a route must go before the neighbour it points through.
    const removals: Request[] = [];
    for (const [key, found] of actual) if (!wanted.has(key)) removals.push(found.remove());
    this.#send([...removals, ...requests], "reconcile", true);
    return { restored, removed: removals.length };
  }

  #send(requests: Request[], action: string, ignoreMissing = false): void {
    if (requests.length === 0) return;
    const codes = this.#netlink.batch(requests);
    const failures = new Map<number, number>();
    for (const code of codes) {
      // ENOENT/ESRCH: already gone, which is what a removal wants.
      if (code === 0 || (ignoreMissing && (code === 2 || code === 3))) continue;
      failures.set(code, (failures.get(code) ?? 0) + 1);
    }
    for (const [code, count] of failures) {
      log.warn(`${this.#what}: ${action} failed for ${count} of ${requests.length} entries`, {
        error: describeErrno(code),
      });
    }
  }
}

/** A route entry; routes are keyed by destination. */
function routeKey(route: Route): string {
  return `route ${formatIp4(route.dst)}/${route.prefixLen}`;
}

function routeFingerprint(route: Route): string {
  const via = route.gateway === undefined ? "-" : formatIp4(route.gateway);
  return `via ${via} dev ${route.linkIndex}${route.onlink ? " onlink" : ""}`;
}

export function routeEntry(netlink: Netlink, route: Route): KernelEntry {
  return {
    key: routeKey(route),
    fingerprint: routeFingerprint(route),
    add: netlink.routeReplaceRequest(route),
    remove: netlink.routeDeleteRequest(route),
  };
}

/** Adds the routes that `owned` selects from a dump of the main table to `snapshot`. */
export function snapshotRoutes(
  netlink: Netlink,
  snapshot: KernelSnapshot,
  owned: (route: Route) => boolean,
): KernelSnapshot {
  for (const route of netlink.routes()) {
    if (!owned(route)) continue;
    snapshot.set(routeKey(route), {
      fingerprint: routeFingerprint(route),
      remove: () => netlink.routeDeleteRequest(route),
    });
  }
  return snapshot;
}
