/** `overlay leases`: the table of subnet leases. */
import { formatDuration } from "../duration.ts";
import { etcdOptionsFrom } from "../etcd_flags.ts";
import { defineCommand, ETCD_FLAGS, type FlagName } from "../flags.ts";
import { describePublicIps, describeSubnets, isReservation } from "../lease.ts";
import { printableDeep } from "../printable.ts";
import { withRegistry } from "./with_registry.ts";

const FLAGS: FlagName[] = [...ETCD_FLAGS, "json"];

export const leasesCommand = defineCommand({
  name: "overlay leases",
  usage: "overlay leases [flags]",
  description:
    "List subnet leases: subnet, public IP, backend, time to expiry, and whether it is a reservation.",
  flags: FLAGS,
  async run({ values }) {
    const etcd = etcdOptionsFrom(values);
    // Keys and values come from etcd: nothing in them may reach the terminal unescaped.
    const rows = printableDeep(
      await withRegistry(etcd, async (registry) => {
        const listing = await registry.listLeases();
        const ttls = new Map<string, number>();
        const ids = [
          ...new Set(listing.leases.filter((l) => !isReservation(l)).map((l) => l.etcdLeaseId)),
        ];
        await Promise.all(ids.map(async (id) => ttls.set(id, await registry.timeToLive(id))));
        const now = Date.now();
        return {
          leases: listing.leases.map((lease) => {
            const reserved = isReservation(lease);
            const ttl = ttls.get(lease.etcdLeaseId) ?? -1;
            return {
              subnet: describeSubnets(lease),
              publicIp: describePublicIps(lease),
              backend: lease.attrs.backendType,
              expiresAt: reserved ? null : new Date(now + ttl * 1000).toISOString(),
              expiresIn: reserved ? "never" : formatDuration(ttl * 1000),
              reservation: reserved,
            };
          }),
          skipped: listing.skipped,
        };
      }),
    );
    if (values.json) {
      console.log(JSON.stringify(rows, null, 2));
      return 0;
    }
    const header = ["SUBNET", "PUBLIC-IP", "BACKEND", "EXPIRES-IN", "RESERVATION"];
    const table = [
      header,
      ...rows.leases.map((
        r,
      ) => [r.subnet, r.publicIp, r.backend, r.expiresIn, r.reservation ? "yes" : "no"]),
    ];
    const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
    for (const row of table) {
      console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
    }
    for (const skipped of rows.skipped) {
      console.error(`warning: skipped ${skipped.key}: ${skipped.reason}`);
    }
    return 0;
  },
});
