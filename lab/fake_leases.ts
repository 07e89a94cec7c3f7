/**
 * The leases of hosts that do not exist, for the benches that need many peers in etcd
 * (lab/write_leases.ts, bench/churn_leases.ts): peer `i` holds subnet `network + i × 256`
 * (a /24), a public IP from `ips` and, for vxlan, a VtepMAC of its own made from `i`.
 */
import { parseIp4 } from "../lib/ip.ts";
import { encodeLeaseValue, leaseKey } from "../lib/lease.ts";

export interface FakeLeaseSpec {
  /** The first subnet is this address + 256. */
  readonly network: string;
  readonly backend: string;
  /** Public IPs, used in turn. */
  readonly ips: string[];
  readonly vni?: number;
}

/** Peer `i`'s lease key and value under `prefix` (e.g. "/coreos.com/network"). */
export function fakeLease(
  prefix: string,
  spec: FakeLeaseSpec,
  i: number,
): { key: string; value: string } {
  const hex = (shift: number) => ((i >> shift) & 255).toString(16).padStart(2, "0");
  const mac = `02:aa:00:${hex(16)}:${hex(8)}:${hex(0)}`;
  const value = encodeLeaseValue({
    publicIp: parseIp4(spec.ips[i % spec.ips.length])!,
    backendType: spec.backend,
    backendData: spec.backend === "vxlan" ? { VNI: spec.vni ?? 1, VtepMAC: mac } : undefined,
  });
  const base = parseIp4(spec.network)!;
  return { key: leaseKey(prefix, { ip: (base + (i + 1) * 256) >>> 0, prefixLen: 24 }), value };
}
