/**
 * `overlay status`'s summary says only what the agent's state tells: an agent waiting at
 * boot has no lease and no etcd connection to show, whatever fields are missing.
 */
import assert from "node:assert/strict";
import { summaryLines } from "../lib/commands/status.ts";
import { type DaemonState, startTimeOfLiving } from "../lib/health.ts";

const NOW = 1_800_000_000_000;
const REFUSED =
  "etcd at http://172.31.254.1:2379: connection refused (is etcd running? see --etcd-endpoints)";

/** What the agent writes before it holds a lease: no subnet, no lease, no `degraded`. */
function booting(reason: string): DaemonState {
  return {
    pid: 4242,
    pidStart: "1",
    ready: false,
    reason,
    heartbeatAt: NOW,
    subnetFile: "/run/flannel/subnet.env",
  };
}

/** What a ready agent writes. */
function serving(change: Partial<DaemonState> = {}): DaemonState {
  return {
    ...booting("starting"),
    ready: true,
    reason: undefined,
    subnet: "10.10.16.1/24",
    backend: "vxlan",
    device: "flannel.1",
    mtu: 1450,
    leaseExpiresAt: NOW + 86_340_000,
    peers: 2,
    ...change,
  };
}

Deno.test("status while the agent waits for etcd at boot: etcd unreachable with the reason, no lease yet", () => {
  assert.deepEqual(summaryLines(booting(`waiting-for-etcd: ${REFUSED}`), { now: NOW }), [
    "lease      none yet",
    `etcd       unreachable: ${REFUSED}`,
  ]);
});

Deno.test("status while the config is missing, invalid or its backend unavailable: etcd answered, no lease yet", () => {
  for (
    const reason of [
      "waiting-for-config",
      'invalid-config: "SubnetLen" 31 is out of range for 10.10.0.0/16 (fix it with: overlay config set)',
      "backend-unavailable: ipip needs the ipip kernel module (load it with: modprobe ipip)",
    ]
  ) {
    assert.deepEqual(summaryLines(booting(reason), { now: NOW }), [
      "lease      none yet",
      "etcd       connected",
    ], reason);
  }
});

Deno.test("status while the agent starts: no lease yet, and no etcd line (nothing is known of it)", () => {
  assert.deepEqual(summaryLines(booting("starting"), { now: NOW }), ["lease      none yet"]);
});

Deno.test("status of a ready agent: lease expiry or reservation, etcd connected or degraded", () => {
  assert.deepEqual(summaryLines(serving(), { now: NOW }), [
    "subnet     10.10.16.1/24",
    "backend    vxlan",
    "device     flannel.1",
    "mtu        1450",
    "lease      in 23h59m",
    "etcd       connected",
    "peers      2",
  ]);
  const reservation = summaryLines(serving({ leaseExpiresAt: null }), { now: NOW });
  assert.ok(reservation.includes("lease      never (reservation)"), reservation.join("\n"));
  const degraded = summaryLines(serving({ degraded: "etcd unreachable" }), { now: NOW });
  assert.ok(degraded.includes("etcd       unreachable"), degraded.join("\n"));
});

Deno.test("status of an agent that lost or outlived its lease says so", () => {
  const lost = summaryLines(serving({ ready: false, reason: "lease lost" }), { now: NOW });
  assert.ok(lost.includes("lease      lost"), lost.join("\n"));
  const expired = summaryLines(serving({ leaseExpiresAt: NOW - 5_000 }), { now: NOW });
  assert.ok(expired.includes("lease      expired 5s ago"), expired.join("\n"));
});

Deno.test("status of an agent that has exited: no etcd line (its connection went with it)", () => {
  const lines = summaryLines(serving(), { now: NOW, running: false });
  assert.ok(!lines.some((line) => line.startsWith("etcd")), lines.join("\n"));
  assert.deepEqual(
    summaryLines(booting(`waiting-for-etcd: ${REFUSED}`), { now: NOW, running: false }),
    ["lease      none yet"],
  );
});

Deno.test("status paints only through the given paint", () => {
  const paint = (code: number, text: string) => `<${code}>${text}</>`;
  assert.deepEqual(summaryLines(booting(`waiting-for-etcd: ${REFUSED}`), { now: NOW, paint }), [
    "lease      none yet",
    `etcd       <31>unreachable: ${REFUSED}</>`,
  ]);
});

Deno.test("a process that has exited but is not reaped yet (a zombie) is not running", () => {
  const line = (state: string) =>
    `4242 (overlay (main)) ${state} 1 4242 4242 0 -1 4194560 900 0 0 0 10 5 0 0 20 0 9 0 ` +
    `984630 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n`;
  assert.equal(startTimeOfLiving(line("S")), "984630");
  assert.equal(startTimeOfLiving(line("R")), "984630");
  assert.equal(startTimeOfLiving(line("Z")), undefined);
  assert.equal(startTimeOfLiving(line("X")), undefined);
});
