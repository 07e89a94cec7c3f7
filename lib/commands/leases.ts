/** `overlay leases`: the table of subnet leases. */
import { formatDuration } from "../duration.ts";
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { defineCommand, ETCD_FLAGS, type FlagName } from "../flags.ts";
import { formatIp4 } from "../ip.ts";
import { formatIp6 } from "../ip6.ts";
import { describePublicIps, describeSubnets, isReservation, type Lease } from "../lease.ts";
import { leaseProblem } from "../peer_policy.ts";
import { printableDeep, printableJson } from "../printable.ts";
import { withRegistry } from "./with_registry.ts";

const FLAGS: FlagName[] = [...ETCD_FLAGS, "json"];

export const leasesCommand = defineCommand({
  name: "overlay leases",
  usage: "overlay leases [flags]",
  description: `List subnet leases: subnet, public IP, backend, time to expiry, and whether it is a
reservation. Leases every agent passes over (outside the Network, another SubnetLen,
another backend type, an unusable public IP) are named on stderr with why.`,
  flags: FLAGS,
  async run({ values }) {
    const etcd = etcdOptionsFrom(values);
    const { leases, skipped } = await withRegistry(etcd, async (registry) => {
      const listing = await registry.listLeases();
      const config = await registry.getConfig().catch(() => undefined);
      const ttls = new Map<string, number>();
      const ids = [
        ...new Set(listing.leases.filter((l) => !isReservation(l)).map((l) => l.etcdLeaseId)),
      ];
      await Promise.all(ids.map(async (id) => ttls.set(id, await registry.timeToLive(id))));
      const now = Date.now();
      return {
        leases: [...listing.leases].sort(bySubnet).map((lease) => {
          const reserved = isReservation(lease);
          const ttl = ttls.get(lease.etcdLeaseId) ?? -1;
          // As the agents see it (their own lease and the backend's data checks aside).
          const unused = config &&
            leaseProblem(lease, {
              config,
              ownPublicIp: 0,
              backendType: config.backend.type,
              checkBackendData: () => undefined,
            });
          return {
            subnet: describeSubnets(lease),
            publicIp: lease.attrs.publicIp ? formatIp4(lease.attrs.publicIp) : null,
            publicIpv6: lease.attrs.publicIpv6 !== undefined
              ? formatIp6(lease.attrs.publicIpv6)
              : null,
            publicIps: describePublicIps(lease),
            backend: lease.attrs.backendType,
            expiresAt: reserved ? null : new Date(now + ttl * 1000).toISOString(),
            expiresIn: reserved ? "never" : formatDuration(ttl * 1000),
            reservation: reserved,
            ...(unused ? { unused: unused.text } : {}),
          };
        }),
        skipped: listing.skipped,
      };
    });
    if (values.json) {
      console.log(printableJson({
        leases: leases.map(({ publicIps: _, ...lease }) => lease),
        skipped,
      }));
      return 0;
    }
    // Keys and values come from etcd: nothing in them may reach the terminal unescaped.
    const rows = printableDeep({ leases, skipped });
    const header = ["SUBNET", "PUBLIC-IP", "BACKEND", "EXPIRES-IN", "RESERVATION"];
    const table = [
      header,
      ...rows.leases.map((
        r,
      ) => [r.subnet, r.publicIps, r.backend, r.expiresIn, r.reservation ? "yes" : "no"]),
    ];
    const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
    for (const row of table) {
      console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
    }
    for (const lease of rows.leases) {
      if (lease.unused) {
        console.error(`warning: agents do not route to ${lease.subnet}: ${lease.unused}`);
      }
    }
    for (const skipped of rows.skipped) {
      console.error(`warning: skipped ${skipped.key}: ${skipped.reason}`);
    }
    return 0;
  },
});

/** By IPv4 subnet, then IPv6 subnet, as numbers (10.10.45.0 before 10.10.152.0). */
function bySubnet(a: Lease, b: Lease): number {
  if (a.subnet.ip !== b.subnet.ip) return a.subnet.ip - b.subnet.ip;
  const [x, y] = [a.ipv6Subnet?.ip ?? -1n, b.ipv6Subnet?.ip ?? -1n];
  return x === y ? 0 : x < y ? -1 : 1;
}
