/**
 * Desired kernel state for the kernel backends (vxlan, host-gw, ipip), and the reconciler
 * that makes the kernel match it: entries someone deleted by hand come back, entries of
 * peers that left go away, nothing is duplicated, and an agent that restarts adopts what
 * it made before (lib/ownership.ts: the entries carry its mark).
 *
 * An entry is one route, neighbour or FDB record, keyed so that the desired set and a
 * dump of the kernel can be compared. Changes go out as one netlink batch. A new route is
 * added exclusively (`ip route add`, never `replace`): if the kernel already holds a route
 * to that destination, the agent looks at who made it: its own from an earlier run is
 * adopted, anyone else's is left alone and reported as a conflict until it goes away.
 *
 * IPv4 and IPv6 entries live side by side: their keys differ by how the address is
 * written ("route 10.10.5.0/24", "route fd10:0:0:5::/64"), and a snapshot reads each
 * family with its own dump (snapshotRoutes, snapshotRoutes6).
 */
import {
  type Address,
  describeRoute,
  formatAddress,
  Netlink,
  type Request,
  type Route,
} from "../../ffi/netlink.ts";
import { describeErrno, EEXIST, ENOENT, ESRCH } from "../../ffi/libc.ts";
import { formatIp4Net } from "../ip.ts";
import { formatIp6Net } from "../ip6.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import { OVERLAY_PROTOCOL } from "../ownership.ts";

/** How often the kernel is compared with the desired entries. */
export const RECONCILE_MS = 5_000;

export interface KernelEntry {
  /** Identity, e.g. "route 10.10.5.0/24"; the same key in a dump means the same entry. */
  readonly key: string;
  /** What the kernel must hold, compared with a dumped entry's fingerprint. */
  readonly fingerprint: string;
  /**
   * Builds the request that creates the entry: exclusive for routes (EEXIST when anyone's
   * route is there). Requests are built when sent, not kept: with 5,000 peers the bytes
   * of every peer's three requests per entry would be ~25 MB of the agent's heap.
   */
  readonly add: () => Request;
  /** Builds the request that rewrites an entry this agent owns. */
  readonly replace: () => Request;
  readonly remove: () => Request;
}

/** An entry found in the kernel that this agent owns. */
export interface OwnedEntry {
  readonly fingerprint: string;
  /**
   * False for an entry that is ours without carrying the mark yet (a route through our own
   * device, or flanneld's route being taken over): rewritten with the mark when kept.
   */
  readonly marked: boolean;
  /** Builds the delete request (only for the few that must go). */
  readonly remove: () => Request;
}

/**
 * What a dump found, by key: the entries this agent owns, and the entries someone else
 * made where the agent might want one (as `ip` prints them).
 */
export interface KernelSnapshot {
  readonly ours: Map<string, OwnedEntry>;
  readonly others: Map<string, string>;
}

export function emptySnapshot(): KernelSnapshot {
  return { ours: new Map(), others: new Map() };
}

export class KernelState {
  readonly #netlink: Netlink;
  readonly #what: string;
  readonly #dump: () => KernelSnapshot;
  /** Desired entries per peer (subnet key), in the order they must be added. */
  readonly #peers = new Map<string, KernelEntry[]>();
  /** Keys of desired entries held by someone else's entry: key → what holds it. */
  readonly #conflicts = new Map<string, string>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #soon: ReturnType<typeof setTimeout> | undefined;
  /** Changes held back inside batch(), and the failures of those already sent. */
  #held: Held | undefined;

  /**
   * `dump` reads what the backend owns in the kernel now (and what others hold in its
   * way); it is called on every reconcile. The state owns `netlink` and closes it in close().
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
    clearTimeout(this.#soon);
    this.#soon = undefined;
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
    clearTimeout(this.#soon);
    this.#netlink.close();
  }

  /**
   * Sets a peer's entries. Entries this run already made are replaced; new ones are added
   * exclusively, and an entry already in the kernel is sorted out by a reconcile right
   * after (adopted when it carries our mark, reported when it does not).
   */
  setPeer(peer: string, entries: KernelEntry[]): void {
    const previous = this.#peers.get(peer) ?? [];
    this.#peers.set(peer, entries);
    const made = new Set(previous.map((e) => e.key));
    const keep = new Set(entries.map((e) => e.key));
    const stale = previous.filter((e) => !keep.has(e.key)).reverse();
    for (const entry of stale) this.#resolve(entry.key);
    const writes = entries.filter((e) => !this.#conflicts.has(e.key));
    const requests = [
      ...stale.map((e) => e.remove()),
      ...writes.map((e) => (made.has(e.key) ? e.replace() : e.add())),
    ];
    this.#submit({
      requests,
      action: "program peer",
      expected: PROGRAM_EXPECTED,
      writesFrom: stale.length,
    });
  }

  /** Removes a peer's entries, in the reverse of the order they were added. */
  removePeer(peer: string): void {
    const entries = this.#peers.get(peer);
    if (!entries) return;
    this.#peers.delete(peer);
    const ours = entries.filter((e) => !this.#conflicts.has(e.key));
    for (const entry of entries) this.#resolve(entry.key);
    const requests = ours.slice().reverse().map((e) => e.remove());
    this.#submit({ requests, action: "remove peer", expected: REMOVE_EXPECTED });
  }

  /**
   * Runs `work` (setPeer and removePeer calls) and sends what it changes to the kernel in
   * order, BATCH_REQUESTS at a time: 5,000 peers at start go out in 60 netlink batches, not
   * 5,000 (requests are built as they go, so no more than a batch of them is alive).
   */
  batch(work: () => void): void {
    if (this.#held) return work();
    this.#held = { changes: [], requests: 0, failures: new Map() };
    try {
      work();
      this.#flushHeld();
    } finally {
      // Anything not sent when work() threw is still desired: the next reconcile adds it.
      const { failures } = this.#held;
      this.#held = undefined;
      // One warning per action and error for the whole batch, as for one peer.
      for (const [action, group] of failures) {
        this.#logFailures(group.codes, group.total, action, group.expected);
      }
    }
  }

  #submit(change: Change): void {
    if (change.requests.length === 0) return;
    const held = this.#held;
    if (!held) return this.#settleChange(change, this.#netlink.batch(change.requests));
    held.changes.push(change);
    held.requests += change.requests.length;
    if (held.requests >= BATCH_REQUESTS) this.#flushHeld();
  }

  #flushHeld(): void {
    const held = this.#held!;
    if (held.changes.length === 0) return;
    const codes = this.#netlink.batch(held.changes.flatMap((change) => change.requests));
    let at = 0;
    for (const change of held.changes) {
      const own = codes.slice(at, at + change.requests.length);
      at += change.requests.length;
      let group = held.failures.get(change.action);
      if (!group) {
        held.failures.set(
          change.action,
          group = { codes: [], total: 0, expected: change.expected },
        );
      }
      group.total += own.length;
      for (const code of own) {
        if (code !== 0 && !change.expected.includes(code)) group.codes.push(code);
      }
      this.#askReconcileOnEexist(change, own);
    }
    held.changes = [];
    held.requests = 0;
  }

  /** Logs a change's unexpected failures and asks for a reconcile on EEXIST. */
  #settleChange(change: Change, codes: number[]): void {
    this.#logFailures(codes, change.requests.length, change.action, change.expected);
    this.#askReconcileOnEexist(change, codes);
  }

  /** An EEXIST among a change's writes: someone's entry is there; a reconcile sorts it out. */
  #askReconcileOnEexist(change: Change, codes: number[]): void {
    if (change.writesFrom !== undefined && codes.slice(change.writesFrom).includes(EEXIST)) {
      this.#reconcileSoon();
    }
  }

  /** Number of entries desired. */
  get size(): number {
    let total = 0;
    for (const entries of this.#peers.values()) total += entries.length;
    return total;
  }

  /** Desired entries held by someone else's: "route 10.10.9.0/24 (held by: … proto static)". */
  conflicts(): string[] {
    return [...this.#conflicts].map(([key, holder]) => `${key} (held by: ${holder})`);
  }

  /**
   * Compares the desired entries with `actual` and fixes the difference: missing entries
   * are added, ours that changed are rewritten, ours nobody wants are deleted, and a
   * desired entry someone else holds is left alone and reported. Returns how many entries
   * it restored and removed.
   */
  reconcile(actual: KernelSnapshot): { restored: number; removed: number } {
    const requests: Request[] = [];
    const keys: string[] = [];
    const wanted = new Set<string>();
    for (const entries of this.#peers.values()) {
      for (const entry of entries) {
        wanted.add(entry.key);
        const holder = actual.others.get(entry.key);
        if (holder !== undefined) {
          this.#conflict(entry.key, holder);
          continue;
        }
        this.#resolve(entry.key);
        const found = actual.ours.get(entry.key);
        if (found?.fingerprint === entry.fingerprint && found.marked) continue;
        requests.push(found ? entry.replace() : entry.add());
        keys.push(entry.key);
      }
    }
    // Removals first: a route must go before the neighbour it points through.
    const removals: Request[] = [];
    for (const [key, found] of actual.ours) if (!wanted.has(key)) removals.push(found.remove());
    const codes = this.#send([...removals, ...requests], "reconcile", [ENOENT, ESRCH, EEXIST]);
    codes.slice(removals.length).forEach((code, i) => {
      // Someone added a route between our dump and our write: theirs stays.
      if (code === EEXIST) this.#conflict(keys[i], "an entry made just now by someone else");
    });
    return {
      restored: codes.slice(removals.length).filter((c) => c === 0).length,
      removed: removals.length,
    };
  }

  #reconcileSoon(): void {
    this.#soon ??= setTimeout(() => this.reconcileNow(), 0);
  }

  #conflict(key: string, holder: string): void {
    if (this.#conflicts.get(key) === holder) return;
    this.#conflicts.set(key, holder);
    log.warn(
      `${this.#what}: ${key} is held by an entry overlay did not make; left alone (remove it to let overlay program the peer)`,
      { holder },
    );
  }

  #resolve(key: string): void {
    if (this.#conflicts.delete(key)) log.info(`${this.#what}: ${key} is free again`);
  }

  /** Sends requests; logs failures other than `expected`. Returns every result code. */
  #send(requests: Request[], action: string, expected: number[]): number[] {
    if (requests.length === 0) return [];
    const codes = this.#netlink.batch(requests);
    this.#logFailures(codes, requests.length, action, expected);
    return codes;
  }

  #logFailures(codes: number[], total: number, action: string, expected: number[]): void {
    const failures = new Map<number, number>();
    for (const code of codes) {
      if (code === 0 || expected.includes(code)) continue;
      failures.set(code, (failures.get(code) ?? 0) + 1);
    }
    for (const [code, count] of failures) {
      log.warn(`${this.#what}: ${action} failed for ${count} of ${total} entries`, {
        error: describeErrno(code),
      });
    }
  }
}

/** Requests sent together inside batch() (the netlink socket's own batches are 256). */
const BATCH_REQUESTS = 256;
const PROGRAM_EXPECTED = [ENOENT, ESRCH, EEXIST];
const REMOVE_EXPECTED = [ENOENT, ESRCH];

/** What batch() holds: changes not sent yet, and the failures so far by action. */
interface Held {
  changes: Change[];
  requests: number;
  readonly failures: Map<string, { codes: number[]; total: number; expected: number[] }>;
}

/** Requests from one setPeer or removePeer, and how to read their results. */
interface Change {
  readonly requests: Request[];
  readonly action: string;
  /** Error codes that are no failure. */
  readonly expected: number[];
  /** Where the writes begin (after the removals of stale entries): EEXIST there matters. */
  readonly writesFrom?: number;
}

/**
 * The key a peer's entries are kept under: its lease's subnets as flannel's lease key
 * names them ("10.10.5.0/24", "10.10.5.0/24&fd10:0:0:5::/64", "0.0.0.0/0&fd10:0:0:5::/64"
 * in an IPv6-only network, where every IPv4 subnet is empty).
 */
export function peerKey(lease: Lease): string {
  const v4 = formatIp4Net(lease.subnet);
  return lease.ipv6Subnet ? `${v4}&${formatIp6Net(lease.ipv6Subnet)}` : v4;
}

/** A route entry; routes are keyed by destination. */
function routeKey(route: Route<Address>): string {
  return `route ${formatAddress(route.dst)}/${route.prefixLen}`;
}

function routeFingerprint(route: Route<Address>): string {
  const via = route.gateway === undefined ? "-" : formatAddress(route.gateway);
  return `via ${via} dev ${route.linkIndex}${route.onlink ? " onlink" : ""}`;
}

/** The entry for one of our routes, IPv4 or IPv6 (it carries our mark). */
export function routeEntry(netlink: Netlink, route: Route<Address>): KernelEntry {
  const ours = { ...route, protocol: OVERLAY_PROTOCOL };
  return {
    key: routeKey(route),
    fingerprint: routeFingerprint(route),
    add: () => netlink.routeAddRequest(ours),
    replace: () => netlink.routeReplaceRequest(ours),
    remove: () => netlink.routeDeleteRequest(ours),
  };
}

/**
 * Adds the main table's routes that `inScope` selects to `snapshot`: those with our mark
 * (or that `alsoOurs` claims: through our own device, or flanneld's being taken over) as
 * ours, the others as someone else's (they block a peer route to the same place).
 */
export function snapshotRoutes(
  netlink: Netlink,
  snapshot: KernelSnapshot,
  inScope: (route: Route) => boolean,
  alsoOurs: (route: Route) => boolean = () => false,
): KernelSnapshot {
  return addRoutes(netlink, snapshot, netlink.routes().filter(inScope), alsoOurs);
}

/** snapshotRoutes for the IPv6 main table (`ip -6 route`). */
export function snapshotRoutes6(
  netlink: Netlink,
  snapshot: KernelSnapshot,
  inScope: (route: Route<bigint>) => boolean,
  alsoOurs: (route: Route<bigint>) => boolean = () => false,
): KernelSnapshot {
  return addRoutes(netlink, snapshot, netlink.routes6().filter(inScope), alsoOurs);
}

function addRoutes<A extends Address>(
  netlink: Netlink,
  snapshot: KernelSnapshot,
  routes: Route<A>[],
  alsoOurs: (route: Route<A>) => boolean,
): KernelSnapshot {
  for (const route of routes) {
    const marked = route.protocol === OVERLAY_PROTOCOL;
    if (marked || alsoOurs(route)) {
      snapshot.ours.set(routeKey(route), {
        fingerprint: routeFingerprint(route),
        marked,
        remove: () => netlink.routeDeleteRequest(route),
      });
    } else {
      snapshot.others.set(routeKey(route), describeRoute(route));
    }
  }
  return snapshot;
}

/**
 * Makes sure the agent's own route is in place: adds it, or adopts one with our mark
 * from an earlier run. A route to the same place made by someone else is not replaced:
 * the caller gets an Error naming it.
 */
export function ensureOwnRoute(netlink: Netlink, route: Route<Address>): void {
  // A route through our own device is ours to adopt (from before the mark, or flanneld's
  // on a device overlay now owns); anyone else's in the way is not replaced.
  const ours = { ...route, protocol: OVERLAY_PROTOCOL };
  const [code] = netlink.batch([netlink.routeAddRequest(ours)]);
  if (code === 0) return;
  if (code !== EEXIST) {
    throw new Error(`route add ${describeRoute(ours)}: ${describeErrno(code)}`);
  }
  const routes: Route<Address>[] = typeof route.dst === "bigint"
    ? netlink.routes6()
    : netlink.routes();
  const holder = routes.find((r) => r.dst === route.dst && r.prefixLen === route.prefixLen);
  if (holder && holder.protocol !== OVERLAY_PROTOCOL && holder.linkIndex !== route.linkIndex) {
    throw new Error(
      `route ${describeRoute(holder)} is in the way and overlay did not make it ` +
        `(remove it, e.g. ip route del ${
          formatAddress(route.dst)
        }/${route.prefixLen}, or stop what made it)`,
    );
  }
  netlink.routeReplace(ours);
}

/**
 * Puts the routes through a backend's own device back (udp's and wireguard's Network
 * route) when someone deletes them, every RECONCILE_MS, as the reconcile does for the
 * kernel backends' peer routes: without it the host stayed ready and reached no one.
 */
export function keepOwnRoutes(what: string, routes: Route<Address>[]): { stop(): void } {
  const timer = setInterval(() => {
    const netlink = new Netlink();
    try {
      for (const route of routes) {
        const table: Route<Address>[] = typeof route.dst === "bigint"
          ? netlink.routes6()
          : netlink.routes();
        const there = table.some((r) =>
          r.dst === route.dst && r.prefixLen === route.prefixLen && r.linkIndex === route.linkIndex
        );
        if (there) continue;
        ensureOwnRoute(netlink, route);
        log.warn(`${what}: put back a route someone deleted`, { route: describeRoute(route) });
      }
    } catch (error) {
      log.warn(`${what}: cannot put its route back; retrying`, {
        error: (error as Error).message,
      });
    } finally {
      netlink.close();
    }
  }, RECONCILE_MS);
  return { stop: () => clearInterval(timer) };
}
