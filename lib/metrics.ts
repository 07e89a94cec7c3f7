/**
 * /metrics in Prometheus' text exposition format, from the daemon's state. Counter names
 * end in _total, units are in the names, labels carry direction and drop reason.
 */
import type { DaemonState } from "./health.ts";

interface Family {
  readonly name: string;
  readonly type: "counter" | "gauge";
  readonly help: string;
  readonly samples: { labels?: Record<string, string>; value: number }[];
}

function render(families: Family[]): string {
  const lines: string[] = [];
  for (const family of families) {
    if (family.samples.length === 0) continue;
    lines.push(`# HELP ${family.name} ${family.help}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      const labels = sample.labels
        ? "{" + Object.entries(sample.labels).map(([k, v]) =>
          `${k}="${v.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))}"`
        ).join(",") + "}"
        : "";
      const value = Number.isFinite(sample.value)
        ? String(sample.value)
        : sample.value > 0
        ? "+Inf"
        : "-Inf";
      lines.push(`${family.name}${labels} ${value}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** A counter family with tx and rx samples from the data path's `tx_<unit>`/`rx_<unit>`. */
function byDirection(
  name: string,
  help: string,
  counters: Record<string, number>,
  unit: string,
): Family {
  const samples = `tx_${unit}` in counters
    ? [
      { labels: { direction: "tx" }, value: counters[`tx_${unit}`] },
      { labels: { direction: "rx" }, value: counters[`rx_${unit}`] },
    ]
    : [];
  return { name, type: "counter", help, samples };
}

/** The metrics text for a daemon state. */
export function renderMetrics(state: DaemonState, now = Date.now()): string {
  return render([
    {
      name: "overlay_ready",
      type: "gauge",
      help: "1 when this host's overlay is ready.",
      samples: [{ value: state.ready ? 1 : 0 }],
    },
    ...dataPathFamilies(state.counters ?? {}),
    ...agentFamilies(state, now),
  ]);
}

/** What the userspace data path counts: packets, bytes, drops by reason, ICMP sent. */
function dataPathFamilies(counters: Record<string, number>): Family[] {
  const drops = Object.entries(counters).filter(([name]) => name.startsWith("drop_"));
  return [
    byDirection(
      "overlay_packets_total",
      "Packets carried by the userspace data path (tx: device to peers, rx: peers to device).",
      counters,
      "packets",
    ),
    byDirection(
      "overlay_bytes_total",
      "Bytes of inner packets carried by the userspace data path.",
      counters,
      "bytes",
    ),
    {
      name: "overlay_dropped_packets_total",
      type: "counter",
      help: "Packets and datagrams the data path dropped, by reason.",
      samples: drops.map(([name, value]) => ({
        labels: { reason: name.slice("drop_".length) },
        value,
      })),
    },
    {
      name: "overlay_wireguard_events_total",
      type: "counter",
      help:
        "WireGuard protocol events of the userspace path (handshakes, keepalives, cookies), by event.",
      samples: Object.entries(counters).filter(([name]) => name.startsWith("wg_")).map((
        [name, value],
      ) => ({ labels: { event: name.slice("wg_".length) }, value })),
    },
    {
      name: "overlay_icmp_unreachable_sent_total",
      type: "counter",
      help: "ICMP net-unreachable replies sent for overlay addresses no peer owns.",
      samples: "icmp_unreachable_sent" in counters
        ? [{ value: counters.icmp_unreachable_sent }]
        : [],
    },
  ];
}

/** The agent's side: peers, the lease, etcd, the watch, skipped leases, conflicts. */
function agentFamilies(state: DaemonState, now: number): Family[] {
  return [
    {
      name: "overlay_peers",
      type: "gauge",
      help: "Peers this host routes to.",
      samples: [{ value: state.peers ?? 0 }],
    },
    {
      name: "overlay_lease_expiry_seconds",
      type: "gauge",
      help: "Seconds until this host's subnet lease expires (+Inf for a reservation).",
      samples: state.leaseExpiresAt === undefined ? [] : [{
        value: state.leaseExpiresAt === null
          ? Infinity
          : Math.round((state.leaseExpiresAt - now) / 1000),
      }],
    },
    {
      name: "overlay_etcd_up",
      type: "gauge",
      help: "1 while etcd answers.",
      samples: [{
        value: state.degraded || state.reason?.startsWith("waiting-for-etcd") ? 0 : 1,
      }],
    },
    {
      name: "overlay_etcd_reconnects_total",
      type: "counter",
      help: "Times the connection to etcd came back after a break.",
      samples: [{ value: state.etcdReconnects ?? 0 }],
    },
    {
      name: "overlay_watch_events_total",
      type: "counter",
      help: "Lease events received from the etcd watch.",
      samples: [{ value: state.watchEvents ?? 0 }],
    },
    {
      name: "overlay_leases_skipped_total",
      type: "counter",
      help:
        "Leases in etcd not used for routing (untrusted data that fails the checks), by reason.",
      samples: Object.entries(state.leaseSkips ?? {}).map(([reason, value]) => ({
        labels: { reason },
        value,
      })),
    },
    {
      name: "overlay_route_conflicts",
      type: "gauge",
      help: "Entries the agent wants that someone else's route or entry holds (left alone).",
      samples: [{ value: state.conflicts?.length ?? 0 }],
    },
    {
      name: "overlay_data_path_info",
      type: "gauge",
      help: "The active data path (always 1; see the labels).",
      samples: state.backend
        ? [{ labels: { backend: state.backend, mode: state.dataPath ?? "" }, value: 1 }]
        : [],
    },
  ];
}
