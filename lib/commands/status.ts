/** `overlay status`: this host's overlay as the daemon last reported it, with health. */
import { formatDuration } from "../duration.ts";
import { defineCommand, type FlagName, LOCATOR_FLAGS, stringFlag } from "../flags.ts";
import { type DaemonState, evaluateHealth, processStartTime, statePath } from "../health.ts";
import { printable, printableDeep, printableJson } from "../printable.ts";

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
    let raw: DaemonState | undefined;
    try {
      raw = JSON.parse(await Deno.readTextFile(path));
    } catch {
      raw = undefined;
    }
    if (values.json) {
      console.log(
        printableJson({ health: verdict.line, ready: verdict.ready, state: raw ?? null }),
      );
      return verdict.ready ? 0 : 1;
    }
    // The state quotes etcd (peers' backend types, skipped keys): shown escaped, never raw.
    const state = raw && printableDeep(raw);
    const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
    const paint: Paint = (code, text) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
    console.log(`health     ${paint(verdict.ready ? 32 : 31, printable(verdict.line))}`);
    if (state) {
      const running = processStartTime(state.pid) === state.pidStart;
      for (const line of summaryLines(state, { paint, running })) console.log(line);
      printPeerTable(state, paint);
      printLists(state, paint);
    }
    return verdict.ready ? 0 : 1;
  },
});

/** Colours `text` with the ANSI code (31 red, 32 green, 33 yellow) on a terminal. */
export type Paint = (code: number, text: string) => string;

/**
 * The summary under the health line: subnet, backend, data path, device, MTU, lease, etcd
 * and the peer count, each only as far as the state tells. An agent waiting at boot has
 * no lease yet (`lease none yet`) and says whether etcd answers only through its reason
 * (`waiting-for-etcd: …`); what the state does not tell is not printed. `running` false
 * (the agent that wrote the state has exited): no etcd line, the connection is gone.
 */
export function summaryLines(
  state: DaemonState,
  options: { now?: number; paint?: Paint; running?: boolean } = {},
): string[] {
  const { now = Date.now(), paint = (_code, text) => text, running = true } = options;
  const rows: [string, string | number | undefined][] = [
    ["subnet", state.subnet],
    ["subnet6", state.ipv6Subnet],
    ["backend", state.backend],
    ["data path", state.dataPath],
    ["device", state.device],
    ["mtu", state.mtu],
    ["lease", describeLease(state, now, paint)],
    ["etcd", running ? describeEtcd(state, paint) : undefined],
    ["peers", state.peers],
  ];
  return rows.filter(([, value]) => value !== undefined).map(([key, value]) =>
    `${key.padEnd(10)} ${value}`
  );
}

/** `leaseExpiresAt`: absent while no lease is held, null for a reservation. */
function describeLease(state: DaemonState, now: number, paint: Paint): string {
  if (!state.ready && state.reason === LEASE_LOST) return paint(31, "lost");
  const at = state.leaseExpiresAt;
  if (at === undefined) return "none yet";
  if (at === null) return "never (reservation)";
  return at > now
    ? `in ${formatDuration(at - now)}`
    : paint(31, `expired ${formatDuration(now - at)} ago`);
}

/**
 * An agent that serves (it has published its lease) follows its connection to etcd in
 * `degraded`; one waiting at boot tells by its reason: waiting for etcd, or waiting for
 * something etcd answered with (a config missing, invalid or not runnable here). While
 * it starts, nothing is known yet.
 */
function describeEtcd(state: DaemonState, paint: Paint): string | undefined {
  if (!state.ready && state.reason?.startsWith(WAITING_FOR_ETCD)) {
    return paint(31, `unreachable: ${state.reason.slice(WAITING_FOR_ETCD.length)}`);
  }
  if (state.ready || state.leaseExpiresAt !== undefined) {
    // `degraded` names what is wrong ("etcd unreachable"); the row already says "etcd".
    return state.degraded ? paint(33, state.degraded.replace(/^etcd /, "")) : "connected";
  }
  if (ETCD_ANSWERED.some((reason) => state.reason?.startsWith(reason))) return "connected";
  return undefined;
}

/** The reasons (lib/boot.ts, lib/daemon.ts) that tell about etcd. */
const WAITING_FOR_ETCD = "waiting-for-etcd: ";
const ETCD_ANSWERED = ["waiting-for-config", "invalid-config", "backend-unavailable"];
const LEASE_LOST = "lease lost";

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
