/** `overlay status`: this host's overlay as the daemon last reported it, with health. */
import { formatDuration } from "../duration.ts";
import { defineCommand, type FlagName, LOCATOR_FLAGS, stringFlag } from "../flags.ts";
import { type DaemonState, evaluateHealth, statePath } from "../health.ts";
import { printable, printableDeep } from "../printable.ts";

const FLAGS: FlagName[] = [...LOCATOR_FLAGS, "json"];
/** A peer heard from within this long counts as alive on the data path. */
const RECENT_MS = 30_000;

export const statusCommand = defineCommand({
  name: "overlay status",
  usage: "overlay status [--json] [flags]",
  description:
    `Show this host's overlay: health, subnet, backend, data path, device, MTU, lease expiry,
etcd connectivity, the peers (subnet, public IP, backend, since when, and when the data
path last heard from them: green within 30 s) and the packet and drop counters.`,
  flags: FLAGS,
  async run({ values }) {
    const path = statePath(stringFlag(values, "state-dir"), stringFlag(values, "subnet-file"));
    const verdict = await evaluateHealth(path);
    let state: DaemonState | undefined;
    try {
      // The state quotes etcd (peers' backend types, skipped keys): shown escaped, never raw.
      state = printableDeep(JSON.parse(await Deno.readTextFile(path)));
    } catch {
      state = undefined;
    }
    if (values.json) {
      console.log(
        JSON.stringify(
          { health: verdict.line, ready: verdict.ready, state: state ?? null },
          null,
          2,
        ),
      );
      return verdict.ready ? 0 : 1;
    }
    const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
    const paint: Paint = (code, text) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
    console.log(`health     ${paint(verdict.ready ? 32 : 31, printable(verdict.line))}`);
    if (state) {
      printSummary(state, paint);
      printPeerTable(state, paint);
      printLists(state, paint);
    }
    return verdict.ready ? 0 : 1;
  },
});

type Paint = (code: number, text: string) => string;

/** Subnet, backend, data path, device, MTU, lease expiry, etcd and the peer count. */
function printSummary(state: DaemonState, paint: Paint): void {
  const expires = state.leaseExpiresAt == null
    ? "never (reservation)"
    : `in ${formatDuration(state.leaseExpiresAt - Date.now())}`;
  const rows: [string, string | number | undefined][] = [
    ["subnet", state.subnet],
    ["subnet6", state.ipv6Subnet],
    ["backend", state.backend],
    ["data path", state.dataPath],
    ["device", state.device],
    ["mtu", state.mtu],
    ["lease", expires],
    ["etcd", state.degraded ? paint(33, state.degraded) : "connected"],
    ["peers", state.peers],
  ];
  for (const [key, value] of rows) {
    if (value !== undefined) console.log(`${key.padEnd(10)} ${value}`);
  }
}

/** One row per peer; green when the data path heard from it lately, yellow when not. */
function printPeerTable(state: DaemonState, paint: Paint): void {
  if (!state.peerList || state.peerList.length === 0) return;
  const now = Date.now();
  // WireGuard peers: the last handshake, bytes each way and the endpoint, as `wg show`.
  const withWireguard = state.peerList.some((peer) => peer.lastHandshake !== undefined);
  const rows = state.peerList.map((peer) => {
    const heard = peer.lastHeard === null
      ? "-"
      : peer.lastHeard === 0
      ? "never"
      : `${formatDuration(now - peer.lastHeard)} ago`;
    const recent = peer.lastHeard !== null && peer.lastHeard > 0 &&
      now - peer.lastHeard < RECENT_MS;
    const wireguard = peer.lastHandshake === undefined ? [] : [
      peer.lastHandshake === 0 ? "none" : `${formatDuration(now - peer.lastHandshake)} ago`,
      `${formatBytes(peer.rxBytes ?? 0)}/${formatBytes(peer.txBytes ?? 0)}`,
      peer.endpoint ?? "-",
    ];
    return {
      cells: [
        peer.subnet,
        peer.publicIp,
        peer.backend,
        `${formatDuration(now - peer.since)} ago`,
        heard,
        ...(withWireguard ? (wireguard.length > 0 ? wireguard : ["-", "-", "-"]) : []),
      ],
      recent,
      known: peer.lastHeard !== null,
    };
  });
  const header = [
    "SUBNET",
    "PUBLIC-IP",
    "BACKEND",
    "SINCE",
    "HEARD",
    ...(withWireguard ? ["HANDSHAKE", "RX/TX", "ENDPOINT"] : []),
  ];
  const widths = header.map((_, i) =>
    Math.max(header[i].length, ...rows.map((r) => r.cells[i].length))
  );
  const line = (cells: string[]) =>
    cells.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd();
  console.log("peer table");
  console.log(`  ${line(header)}`);
  for (const row of rows) {
    const text = line(row.cells);
    console.log(`  ${row.known ? paint(row.recent ? 32 : 33, text) : text}`);
  }
}

/** Conflicts, skipped leases and the data path's counters, when there are any. */
function printLists(state: DaemonState, paint: Paint): void {
  if (state.conflicts && state.conflicts.length > 0) {
    console.log("conflicts (entries overlay wants that someone else's entry holds; left alone)");
    for (const conflict of state.conflicts) console.log(`  ${paint(33, conflict)}`);
  }
  if (state.skippedLeases && state.skippedLeases.length > 0) {
    console.log("skipped leases (in etcd, not used for routing)");
    for (const skipped of state.skippedLeases) console.log(`  ${skipped.key}: ${skipped.text}`);
  }
  if (state.counters) {
    console.log("counters");
    for (const [key, value] of Object.entries(state.counters)) {
      console.log(`  ${key.padEnd(24)} ${value}`);
    }
  }
}

/** 1536 → "1.5 KiB", as `wg show` prints transfer. */
function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
