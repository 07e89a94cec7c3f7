/**
 * The lease watch's revision handling, on scripted watch streams: where each stream
 * starts, which events are applied once and which are replays, what a progress
 * notification and a compaction do. tests/lease_manager_test.ts watches a real etcd.
 */
import assert from "node:assert/strict";
import type { KeyValue, WatchResponse } from "../lib/etcd_client.ts";
import { EtcdClient } from "../lib/etcd_client.ts";
import { formatIp4Net, parseIp4Net } from "../lib/ip.ts";
import { encodeLeaseValue, type Lease, leaseKey } from "../lib/lease.ts";
import {
  type LeaseEvent,
  type LeaseListing,
  LeaseWatch,
  SubnetRegistry,
  WATCH_RETRY,
  WATCH_SPREAD_MS,
  type WatchStream,
} from "../lib/registry.ts";
import { Backoff } from "../lib/backoff.ts";
import { waitFor } from "./helpers.ts";

const PREFIX = "/coreos.com/network";

function kv(subnet: string, revision: number, value?: string): KeyValue {
  return {
    key: leaseKey(PREFIX, parseIp4Net(subnet)!),
    value: value ?? encodeLeaseValue({ publicIp: 0xc0000201, backendType: "udp" }),
    lease: "7",
    modRevision: String(revision),
    createRevision: String(revision),
    version: "1",
  };
}

function response(revision: number, events: WatchResponse["events"] = [], created = false) {
  return {
    revision: String(revision),
    created,
    canceled: false,
    compactRevision: "0",
    cancelReason: "",
    watchId: created || events.length > 0 ? "0" : "-1",
    events,
  };
}

const put = (subnet: string, revision: number, value?: string) => ({
  type: "PUT" as const,
  kv: kv(subnet, revision, value),
});
const del = (subnet: string, revision: number) => ({
  type: "DELETE" as const,
  kv: kv(subnet, revision),
});

/**
 * Watch streams played from a script: each open takes the next list of responses, sends
 * them, then ends (a broken stream); with no script left it stays open until aborted.
 */
class ScriptedStream implements WatchStream {
  readonly opens: string[] = [];
  untilAnswering?: (spreadMs: number, signal: AbortSignal) => Promise<void>;
  readonly script: WatchResponse[][] = [];
  async watch(
    options: { startRevision: string; signal: AbortSignal },
    onResponse: (response: WatchResponse) => void,
  ): Promise<void> {
    this.opens.push(options.startRevision);
    const next = this.script.shift();
    if (!next) {
      await new Promise((resolve) => options.signal.addEventListener("abort", resolve));
      return;
    }
    for (const r of next) onResponse(r);
  }
}

/** A registry whose listing is scripted (parseKv is the real one: it only reads the key). */
function registryListing(listing: () => LeaseListing): SubnetRegistry {
  const registry = new SubnetRegistry(
    new EtcdClient({ endpoints: ["http://127.0.0.1:9"], prefix: PREFIX }),
    PREFIX,
  );
  registry.listLeases = () => Promise.resolve(listing());
  return registry;
}

function leaseOf(registry: SubnetRegistry, pair: KeyValue): Lease {
  return registry.parseKv(pair) as Lease;
}

function watching(
  stream: ScriptedStream,
  from: LeaseListing,
  listing: () => LeaseListing = () => from,
) {
  const registry = registryListing(listing);
  const events: string[] = [];
  const skipped: string[] = [];
  const watch = new LeaseWatch(registry, stream, from, (event: LeaseEvent) => {
    events.push(`${event.type} ${formatIp4Net(event.lease.subnet)} @${event.lease.modRevision}`);
  }, { onSkipped: (s) => skipped.push(s.reason) });
  return { watch, events, skipped, registry };
}

const EMPTY: LeaseListing = { leases: [], skipped: [], revision: 10n };

Deno.test("the first stream starts right after the listing's revision", async () => {
  const stream = new ScriptedStream();
  const { watch } = watching(stream, EMPTY);
  await waitFor(() => stream.opens.length === 1, { timeoutMs: 5_000 });
  assert.deepEqual(stream.opens, ["11"]);
  await watch.close();
});

Deno.test("every event of a transaction is applied, though they share one revision", async () => {
  const stream = new ScriptedStream();
  stream.script.push([response(11, [], true)]);
  stream.script.push([
    response(11, [], true),
    response(12, [put("10.10.1.0/24", 12), put("10.10.2.0/24", 12), put("10.10.3.0/24", 12)]),
  ]);
  const { watch, events } = watching(stream, EMPTY);
  await waitFor(() => events.length === 3, { timeoutMs: 5_000 });
  assert.deepEqual(events, [
    "put 10.10.1.0/24 @12",
    "put 10.10.2.0/24 @12",
    "put 10.10.3.0/24 @12",
  ]);
  assert.equal(watch.lastRevision, 12n);
  await watch.close();
});

Deno.test("a broken stream resumes at the last applied revision + 1, and replays are not applied twice", async () => {
  const stream = new ScriptedStream();
  stream.script.push([response(11, [], true), response(13, [put("10.10.1.0/24", 13)])]);
  // A member that lags replays revision 13 on the new stream, then goes on.
  stream.script.push([
    response(13, [], true),
    response(13, [put("10.10.1.0/24", 13)]),
    response(14, [del("10.10.1.0/24", 14)]),
  ]);
  const { watch, events } = watching(stream, EMPTY);
  await waitFor(() => events.length >= 2, { timeoutMs: 5_000 });
  assert.deepEqual(stream.opens.slice(0, 2), ["11", "14"]);
  assert.deepEqual(events, ["put 10.10.1.0/24 @13", "removed 10.10.1.0/24 @13"]);
  await watch.close();
});

Deno.test("a progress notification moves the resume point past revisions with no lease events", async () => {
  const stream = new ScriptedStream();
  stream.script.push([response(11, [], true), response(40)]);
  const { watch } = watching(stream, EMPTY);
  await waitFor(() => stream.opens.length === 2, { timeoutMs: 5_000 });
  assert.deepEqual(stream.opens, ["11", "41"]);
  assert.equal(watch.lastRevision, 40n);
  await watch.close();
});

Deno.test("a value that stops parsing removes the lease and is reported as skipped", async () => {
  const stream = new ScriptedStream();
  const registry = registryListing(() => EMPTY);
  const from: LeaseListing = {
    leases: [leaseOf(registry, kv("10.10.1.0/24", 5))],
    skipped: [],
    revision: 10n,
  };
  stream.script.push([
    response(11, [], true),
    response(12, [put("10.10.1.0/24", 12, "{not json")]),
  ]);
  const { watch, events, skipped } = watching(stream, from);
  await waitFor(() => events.length === 1, { timeoutMs: 5_000 });
  assert.deepEqual(events, ["removed 10.10.1.0/24 @5"]);
  assert.deepEqual(skipped, ["value is not JSON"]);
  assert.deepEqual(watch.leases(), []);
  await watch.close();
});

Deno.test("after compaction the prefix is listed again: only the difference is reported, and the watch goes on from the new listing", async () => {
  const stream = new ScriptedStream();
  const registry = registryListing(() => EMPTY);
  const kept = leaseOf(registry, kv("10.10.1.0/24", 5));
  const gone = leaseOf(registry, kv("10.10.2.0/24", 6));
  const changed = leaseOf(registry, kv("10.10.3.0/24", 7));
  const from: LeaseListing = { leases: [kept, gone, changed], skipped: [], revision: 10n };
  const relisted: LeaseListing = {
    leases: [
      kept,
      leaseOf(registry, kv("10.10.3.0/24", 80)),
      leaseOf(registry, kv("10.10.4.0/24", 90)),
    ],
    skipped: [],
    revision: 100n,
  };
  stream.script.push([{ ...response(50), compactRevision: "50", canceled: true }]);
  const { watch, events } = watching(stream, from, () => relisted);
  await waitFor(() => stream.opens.length === 2, { timeoutMs: 5_000 });
  assert.deepEqual(events.sort(), [
    "put 10.10.3.0/24 @80",
    "put 10.10.4.0/24 @90",
    "removed 10.10.2.0/24 @6",
  ]);
  assert.deepEqual(stream.opens, ["11", "101"]);
  assert.equal(watch.leases().length, 3);
  await watch.close();
});

Deno.test("the config key is reported through onConfig; other keys in the range are passed over", async () => {
  const stream = new ScriptedStream();
  const other = (key: string, revision: number, value: string) => ({
    type: "PUT" as const,
    kv: { ...kv("10.10.1.0/24", revision), key, value },
  });
  stream.script.push([
    response(11, [], true),
    response(12, [other(`${PREFIX}/config`, 12, `{"Network":"10.20.0.0/16"}`)]),
    response(13, [other(`${PREFIX}/other`, 13, "{}")]),
    response(14, [{
      type: "DELETE" as const,
      kv: { ...kv("10.10.1.0/24", 14), key: `${PREFIX}/config` },
    }]),
    response(15, [put("10.10.2.0/24", 15)]),
  ]);
  const configs: (string | undefined)[] = [];
  const events: string[] = [];
  const watch = new LeaseWatch(registryListing(() => EMPTY), stream, EMPTY, (event) => {
    events.push(`${event.type} ${formatIp4Net(event.lease.subnet)}`);
  }, { onConfig: (text) => configs.push(text) });
  await waitFor(() => events.length === 1, { timeoutMs: 5_000 });
  assert.deepEqual(configs, [`{"Network":"10.20.0.0/16"}`, undefined]);
  assert.deepEqual(events, ["put 10.10.2.0/24"]);
  assert.equal(watch.lastRevision, 15n, "passed-over keys still move the resume point");
  await watch.close();
});

Deno.test("after a long outage the watch waits for etcd to answer before it opens again", async () => {
  const stream = new ScriptedStream();
  const waits: number[] = [];
  stream.untilAnswering = (spreadMs: number) => {
    waits.push(spreadMs);
    return Promise.resolve();
  };
  stream.script.push([]); // breaks at once
  // A backoff already at its cap, as after several seconds without etcd.
  const backoff = new Backoff({
    baseMs: WATCH_RETRY.capMs,
    capMs: WATCH_RETRY.capMs,
    random: () => 0,
  });
  const watch = new LeaseWatch(registryListing(() => EMPTY), stream, EMPTY, () => {}, { backoff });
  await waitFor(() => stream.opens.length === 2, { timeoutMs: 5_000 });
  assert.deepEqual(waits, [WATCH_SPREAD_MS]);
  await watch.close();
  // A short break does not wait: the first retries stay fast.
  const quick = new ScriptedStream();
  let waited = false;
  quick.untilAnswering = () => {
    waited = true;
    return Promise.resolve();
  };
  quick.script.push([]);
  const again = new LeaseWatch(registryListing(() => EMPTY), quick, EMPTY, () => {}, {});
  await waitFor(() => quick.opens.length === 2, { timeoutMs: 5_000 });
  assert.equal(waited, false);
  await again.close();
});
