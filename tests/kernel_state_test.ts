/**
 * The reconciler of the kernel backends, on made-up dumps: what it writes, in which order,
 * and what it leaves alone. (The end-to-end tests check the same against real kernels.)
 */
import assert from "node:assert/strict";
import { Netlink, type Request } from "../ffi/netlink.ts";
import { EEXIST } from "../ffi/libc.ts";
import {
  emptySnapshot,
  type KernelSnapshot,
  KernelState,
  peerKey,
  routeEntry,
} from "../lib/backends/kernel_state.ts";
import { parseIp4 } from "../lib/ip.ts";
import { formatIp6, ip6FromBytes, parseIp6 } from "../lib/ip6.ts";
import type { Lease } from "../lib/lease.ts";

const ip = (text: string) => parseIp4(text)!;
const ip6 = (text: string) => parseIp6(text)!;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const NLM_F_EXCL = 0x200;
const NLM_F_REPLACE = 0x100;

/** Stands in for the socket: records each batch, answers with the codes it is given. */
class RecordingNetlink {
  batches: Request[][] = [];
  answer: (request: Request) => number = () => 0;
  batch(requests: Request[]): number[] {
    this.batches.push(requests);
    return requests.map((r) => this.answer(r));
  }
  close(): void {}
}

function what(request: Request): string {
  const value = request.attrs[0].value as Uint8Array;
  const kind = request.type === RTM_DELROUTE
    ? "del"
    : request.flags & NLM_F_EXCL
    ? "add"
    : request.flags & NLM_F_REPLACE
    ? "replace"
    : "?";
  if (value.length === 16) return `${kind} ${formatIp6(ip6FromBytes(value))}`;
  const dst = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
  return `${kind} ${(dst >>> 24)}.${(dst >>> 16) & 255}.${(dst >>> 8) & 255}.0`;
}

function setup() {
  const builder = new Netlink(); // builds requests only; the recorder is what "sends" them
  const recorder = new RecordingNetlink();
  const state = new KernelState(recorder as unknown as Netlink, "test", () => emptySnapshot());
  const peer = (third: number) =>
    routeEntry(builder, {
      dst: ip(`10.10.${third}.0`),
      prefixLen: 24,
      linkIndex: 2,
      gateway: ip(`172.31.254.${third}`),
    });
  return { builder, recorder, state, peer };
}

function snapshot(
  ours: [string, string, boolean][],
  others: [string, string][] = [],
): KernelSnapshot {
  const builder = new Netlink();
  const snap = emptySnapshot();
  for (const [key, fingerprint, marked] of ours) {
    const third = Number(key.split(".")[2]);
    snap.ours.set(key, {
      fingerprint,
      marked,
      remove: () =>
        builder.routeDeleteRequest({ dst: ip(`10.10.${third}.0`), prefixLen: 24, linkIndex: 2 }),
    });
  }
  for (const [key, holder] of others) snap.others.set(key, holder);
  builder.close();
  return snap;
}

Deno.test("missing entries are added exclusively; ours that match are left alone", () => {
  const { builder, recorder, state, peer } = setup();
  recorder.answer = () => EEXIST; // the first writes find the routes there: reconcile sorts it out
  state.setPeer("a", [peer(5)]);
  state.setPeer("b", [peer(6)]);
  recorder.batches = [];
  recorder.answer = () => 0;
  const fingerprint6 = peer(6).fingerprint;
  const result = state.reconcile(snapshot([["route 10.10.6.0/24", fingerprint6, true]]));
  assert.deepEqual(recorder.batches.flat().map(what), ["add 10.10.5.0"]);
  assert.deepEqual(result, { restored: 1, removed: 0 });
  builder.close();
  state.close();
});

Deno.test("ours without the mark, or changed, is rewritten; ours nobody wants goes first", () => {
  const { builder, recorder, state, peer } = setup();
  state.setPeer("a", [peer(5)]);
  state.setPeer("b", [peer(6)]);
  recorder.batches = [];
  state.reconcile(snapshot([
    ["route 10.10.5.0/24", peer(5).fingerprint, false], // e.g. flanneld's, taken over
    ["route 10.10.6.0/24", "via 9.9.9.9 dev 2", true], // changed by hand
    ["route 10.10.7.0/24", "via 172.31.254.7 dev 2", true], // a peer that left
  ]));
  assert.deepEqual(recorder.batches.flat().map(what), [
    "del 10.10.7.0",
    "replace 10.10.5.0",
    "replace 10.10.6.0",
  ]);
  builder.close();
  state.close();
});

Deno.test("someone else's entry where a peer's would go is left alone and reported, until it goes", () => {
  const { builder, recorder, state, peer } = setup();
  state.setPeer("a", [peer(5)]);
  recorder.batches = [];
  state.reconcile(
    snapshot([], [["route 10.10.5.0/24", "10.10.5.0/24 via 172.31.254.98 dev eth0"]]),
  );
  assert.deepEqual(recorder.batches.flat(), []);
  assert.deepEqual(state.conflicts(), [
    "route 10.10.5.0/24 (held by: 10.10.5.0/24 via 172.31.254.98 dev eth0)",
  ]);
  state.reconcile(snapshot([]));
  assert.deepEqual(recorder.batches.flat().map(what), ["add 10.10.5.0"]);
  assert.deepEqual(state.conflicts(), []);
  builder.close();
  state.close();
});

Deno.test("an entry someone adds between dump and write (EEXIST) becomes a conflict, not a replace", () => {
  const { builder, recorder, state, peer } = setup();
  state.setPeer("a", [peer(5)]);
  recorder.answer = (request) => request.type === RTM_NEWROUTE ? EEXIST : 0;
  state.reconcile(snapshot([]));
  assert.equal(state.conflicts().length, 1);
  assert.match(state.conflicts()[0], /^route 10\.10\.5\.0\/24 \(held by: an entry made just now/);
  builder.close();
  state.close();
});

Deno.test("a peer that leaves takes its entries with it, and not a conflicting one of someone else's", () => {
  const { builder, recorder, state, peer } = setup();
  state.setPeer("a", [peer(5)]);
  state.setPeer("b", [peer(6)]);
  state.reconcile(snapshot([], [["route 10.10.6.0/24", "someone's"]]));
  recorder.batches = [];
  state.removePeer("a");
  state.removePeer("b");
  assert.deepEqual(recorder.batches.flat().map(what), ["del 10.10.5.0"]);
  builder.close();
  state.close();
});

/** A peer's IPv6 route as host-gw makes it: its /64 via its public IPv6 on the underlay. */
function peer6(builder: Netlink, n: number) {
  return routeEntry(builder, {
    dst: ip6(`fd10:0:0:${n}::`),
    prefixLen: 64,
    linkIndex: 2,
    gateway: ip6(`fd00::${n}`),
  });
}

Deno.test("a dual-stack peer's IPv4 and IPv6 routes are kept apart, and each restored on its own", () => {
  const { builder, recorder, state, peer } = setup();
  state.setPeer("a", [peer(5), peer6(builder, 5)]);
  assert.deepEqual(recorder.batches.flat().map(what), ["add 10.10.5.0", "add fd10:0:0:5::"]);
  assert.equal(peer6(builder, 5).key, "route fd10:0:0:5::/64");
  assert.equal(peer6(builder, 5).fingerprint, "via fd00::5 dev 2");
  recorder.batches = [];
  // The IPv4 route is there; the IPv6 one was deleted by hand.
  state.reconcile(snapshot([["route 10.10.5.0/24", peer(5).fingerprint, true]]));
  assert.deepEqual(recorder.batches.flat().map(what), ["add fd10:0:0:5::"]);
  builder.close();
  state.close();
});

Deno.test("someone else's IPv6 route where a peer's would go is reported like an IPv4 one", () => {
  const { builder, recorder, state } = setup();
  state.setPeer("a", [peer6(builder, 5)]);
  recorder.batches = [];
  const snap = emptySnapshot();
  snap.others.set("route fd10:0:0:5::/64", "fd10:0:0:5::/64 via fd00::99 dev eth0");
  state.reconcile(snap);
  assert.deepEqual(recorder.batches.flat(), []);
  assert.deepEqual(state.conflicts(), [
    "route fd10:0:0:5::/64 (held by: fd10:0:0:5::/64 via fd00::99 dev eth0)",
  ]);
  builder.close();
  state.close();
});

Deno.test("an IPv6 route of ours nobody wants any more is deleted", () => {
  const { builder, recorder, state } = setup();
  const snap = emptySnapshot();
  snap.ours.set("route fd10:0:0:7::/64", {
    fingerprint: "via fd00::7 dev 2",
    marked: true,
    remove: () =>
      builder.routeDeleteRequest({ dst: ip6("fd10:0:0:7::"), prefixLen: 64, linkIndex: 2 }),
  });
  assert.deepEqual(state.reconcile(snap), { restored: 0, removed: 1 });
  assert.deepEqual(recorder.batches.flat().map(what), ["del fd10:0:0:7::"]);
  builder.close();
  state.close();
});

Deno.test("peers are keyed by both subnets: IPv6-only peers (all 0.0.0.0/0) stay apart", () => {
  const lease = (v4: string, v6?: string) =>
    ({
      subnet: { ip: ip(v4.split("/")[0]), prefixLen: Number(v4.split("/")[1]) },
      ipv6Subnet: v6 ? { ip: ip6(v6), prefixLen: 64 } : undefined,
    }) as Lease;
  assert.equal(peerKey(lease("10.10.5.0/24")), "10.10.5.0/24");
  assert.equal(peerKey(lease("10.10.5.0/24", "fd10:0:0:5::")), "10.10.5.0/24&fd10:0:0:5::/64");
  assert.notEqual(
    peerKey(lease("0.0.0.0/0", "fd10:0:0:5::")),
    peerKey(lease("0.0.0.0/0", "fd10:0:0:6::")),
  );
});
