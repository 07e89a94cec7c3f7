/**
 * Lease churn for the scale bench, run inside the lab's underlay namespace: while peers
 * 0 … existing−1 hold leases (lab/write_leases.ts wrote them), `rate` new hosts join and
 * `rate` hosts leave per second for `seconds`, evenly spaced: every 1/rate s one lease is
 * put (the next unused peer) and one, picked at random among those whose put etcd has
 * acknowledged, is deleted. Each write is its own request, as each host makes its own.
 *   deno run -A churn_leases.ts '{"endpoint":…,"network":"10.65.0.0","backend":"vxlan","ips":[…],"existing":5000,"rate":100,"seconds":60}'
 * Prints one JSON object: every change with the time it was sent and acknowledged (ms
 * since the epoch), and the peers holding leases at the end.
 */
import { EtcdClient } from "../lib/etcd_client.ts";
import { fakeLease, type FakeLeaseSpec } from "../lab/fake_leases.ts";

interface ChurnSpec extends FakeLeaseSpec {
  readonly endpoint: string;
  readonly existing: number;
  readonly rate: number;
  readonly seconds: number;
}

/** One write: peer `peer` joined ("+") or left ("-"). */
export interface ChurnChange {
  readonly peer: number;
  readonly op: "+" | "-";
  readonly sentMs: number;
  ackedMs: number;
  failed?: string;
}

const spec: ChurnSpec = JSON.parse(Deno.args[0]);
const prefix = "/coreos.com/network";
const client = new EtcdClient({ endpoints: [spec.endpoint], prefix });
const lease = await client.leaseGrant(3600);
const alive = Array.from({ length: spec.existing }, (_, i) => i);
let next = spec.existing;
const changes: ChurnChange[] = [];
const pending: Promise<void>[] = [];

function write(peer: number, op: "+" | "-"): Promise<void> {
  const { key, value } = fakeLease(prefix, spec, peer);
  const change: ChurnChange = { peer, op, sentMs: Date.now(), ackedMs: 0 };
  changes.push(change);
  const request = op === "+"
    ? client.put(key, value, lease)
    : client.txn([], [{ delete: { key } }]).then(() => {});
  return request.then(
    () => {
      change.ackedMs = Date.now();
      if (op === "+") alive.push(peer);
    },
    (error) => {
      change.ackedMs = Date.now();
      change.failed = (error as Error).message;
    },
  );
}

const interval = 1000 / spec.rate;
const total = Math.round(spec.rate * spec.seconds);
const start = performance.now();
for (let tick = 0; tick < total; tick++) {
  const due = start + tick * interval;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  pending.push(write(next++, "+"));
  const pick = Math.floor(Math.random() * alive.length);
  const leaving = alive[pick];
  alive[pick] = alive[alive.length - 1];
  alive.pop();
  pending.push(write(leaving, "-"));
}
await Promise.all(pending);
client.close();
console.log(JSON.stringify({ changes, alive: alive.sort((a, b) => a - b) }));
