/**
 * Health and readiness. The daemon keeps a small state file in the state folder,
 * named after its subnet file so several networks on one host do not mix; `--health`
 * and `wait` judge that file against reality: the daemon's process must still be the
 * one that wrote it, its heartbeat fresh, its lease unexpired, its device present.
 */
import { formatDuration } from "./duration.ts";
import { writeFileAtomic } from "./atomic_file.ts";
import { FORWARDING_OFF, forwardingOff, forwardingSysctl, type IpFamily } from "./forwarding.ts";
import { interfaceExists } from "./underlay.ts";

export interface DaemonState {
  readonly pid: number;
  /** The process start time from /proc/<pid>/stat, so a recycled PID is not taken for us. */
  readonly pidStart: string;
  /** The agent is up (health also requires IPv4 forwarding, checked when asked). */
  readonly ready: boolean;
  /** Why not ready: "starting", "waiting-for-etcd: …", "lease lost", … */
  readonly reason?: string;
  /** Ready but with a problem worth showing: "etcd unreachable". */
  readonly degraded?: string;
  /** This host's IPv4 subnet as the subnet file names it (10.10.16.1/24); absent IPv6-only. */
  readonly subnet?: string;
  /** This host's IPv6 subnet as the subnet file names it (fd10:0:0:1::1/64). */
  readonly ipv6Subnet?: string;
  /** The families the network carries, whose forwarding health requires. */
  readonly families?: IpFamily[];
  readonly mtu?: number;
  readonly backend?: string;
  readonly peers?: number;
  readonly device?: string;
  /** Further devices that carry traffic (vxlan's `flannel-v6.<VNI>`), checked as `device` is. */
  readonly moreDevices?: string[];
  readonly bridge?: string;
  /** Epoch ms; null for a reservation, which never expires. */
  readonly leaseExpiresAt?: number | null;
  readonly heartbeatAt: number;
  readonly subnetFile: string;
  /** The data path's packet and drop counters (userspace backends). */
  readonly counters?: Record<string, number>;
  readonly dataPath?: string;
  readonly etcdReconnects?: number;
  readonly watchEvents?: number;
  /** The peers, with when they joined and when the data path last heard from them. */
  readonly peerList?: PeerStatus[];
  /** Leases in etcd not used for routing, and why (the first few). */
  readonly skippedLeases?: { key: string; reason: string; text: string }[];
  /** How many times a lease was skipped, by reason. */
  readonly leaseSkips?: Record<string, number>;
  /** Entries the backend wants that someone else's entry holds (left alone). */
  readonly conflicts?: string[];
}

export interface PeerStatus {
  /** Its subnets: "10.10.1.0/24", "10.10.1.0/24 fd10:0:0:1::/64" or "fd10:0:0:1::/64". */
  readonly subnet: string;
  /** Its public addresses, as the subnets: IPv4, IPv6 or both. */
  readonly publicIp: string;
  readonly backend: string;
  /** Epoch ms this agent learned of the peer. */
  readonly since: number;
  /** Epoch ms the data path last heard from it; null when it cannot tell, 0 when never. */
  readonly lastHeard: number | null;
  /** WireGuard peers: epoch ms of the last completed handshake (0: none yet). */
  readonly lastHandshake?: number;
  /** WireGuard peers: bytes of WireGuard messages received from and sent to it. */
  readonly rxBytes?: number;
  readonly txBytes?: number;
  /** WireGuard peers: where its messages go now ("192.0.2.1:51820"; it follows roaming). */
  readonly endpoint?: string;
}

/** How often the daemon rewrites its state, and when a reader gives up on it. */
export const HEARTBEAT_MS = 2_000;
export const HEARTBEAT_STALE_MS = 15_000;

/** The state file of the daemon that writes `subnetFile`. */
export function statePath(stateDir: string, subnetFile: string): string {
  const absolute = subnetFile.startsWith("/") ? subnetFile : `${Deno.cwd()}/${subnetFile}`;
  return `${stateDir.replace(/\/+$/, "")}/${absolute.replace(/[^A-Za-z0-9._-]/g, "_")}.json`;
}

export async function writeState(path: string, state: DaemonState): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(state) + "\n");
}

/** Start time of a process (field 22 of /proc/<pid>/stat); undefined when it is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    return startTimeOfLiving(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return undefined;
  }
}

/**
 * Field 22 of a /proc/<pid>/stat line; undefined for a process that has exited and waits
 * to be reaped (state Z or X): a killed agent is not running, reaped or not.
 */
export function startTimeOfLiving(stat: string): string | undefined {
  // The command name (field 2) may hold spaces and parentheses: split after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[0] === "Z" || fields[0] === "X" ? undefined : fields[19];
}

export interface HealthVerdict {
  readonly ready: boolean;
  /** The one line `overlay --health` prints. */
  readonly line: string;
}

/**
 * The health line for a state as seen by the daemon itself (no file, no process checks).
 * It starts as the flannel charm's does, `ready lxcbr:10.10.16.1 subnet:10.10.16.1/24
 * mtu:1472` (`lxcbr:` whatever the bridge is called), and the agent's own fields follow.
 * The devices and the forwarding of each family the network has are looked at now (`off`
 * overrides forwarding for tests), so `/readyz` and `--health` judge them alike.
 */
export function describeState(
  state: DaemonState,
  now = Date.now(),
  off = forwardingOff(state.families ?? ["ipv4"]),
): HealthVerdict {
  if (!state.ready) return { ready: false, line: `not-ready ${state.reason ?? "starting"}` };
  if (state.leaseExpiresAt != null && state.leaseExpiresAt <= now) {
    return { ready: false, line: "not-ready lease expired" };
  }
  for (const device of [state.device, ...(state.moreDevices ?? []), state.bridge]) {
    if (device && !interfaceExists(device)) {
      return { ready: false, line: `not-ready device ${device} missing` };
    }
  }
  if (off) {
    const sysctl = forwardingSysctl(off);
    return {
      ready: false,
      line: `not-ready ${FORWARDING_OFF} (${sysctl} is 0: containers cannot reach ` +
        `other hosts; turn it on with: sysctl -w ${sysctl}=1)`,
    };
  }
  const parts = ["ready"];
  const gateway = (state.subnet ?? state.ipv6Subnet)?.split("/")[0];
  if (state.bridge) parts.push(`lxcbr:${gateway}`);
  if (state.subnet) parts.push(`subnet:${state.subnet}`);
  if (state.ipv6Subnet) parts.push(`subnet6:${state.ipv6Subnet}`);
  parts.push(`mtu:${state.mtu}`, `backend:${state.backend}`);
  parts.push(`peers:${state.peers ?? 0}`);
  if (state.bridge) parts.push(`bridge:${state.bridge}`);
  if (state.degraded) parts.push(`degraded:${state.degraded.replaceAll(" ", "-")}`);
  return { ready: true, line: parts.join(" ") };
}

/** Judges the state file at `path` against the running system. */
export async function evaluateHealth(path: string, now = Date.now()): Promise<HealthVerdict> {
  let state: DaemonState;
  try {
    state = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? `daemon not running (no state at ${path}; start it with: overlay run)`
      : `daemon state ${path} unreadable (${(error as Error).message})`;
    return { ready: false, line: `not-ready ${reason}` };
  }
  if (processStartTime(state.pid) !== state.pidStart) {
    return { ready: false, line: `not-ready daemon not running (pid ${state.pid} has exited)` };
  }
  const age = now - state.heartbeatAt;
  if (age > HEARTBEAT_STALE_MS) {
    return {
      ready: false,
      line: `not-ready daemon not responding (last heartbeat ${formatDuration(age)} ago)`,
    };
  }
  if (state.ready) {
    try {
      await Deno.stat(state.subnetFile);
    } catch {
      return { ready: false, line: `not-ready subnet file ${state.subnetFile} missing` };
    }
  }
  return describeState(state, now);
}

/**
 * Serves `/healthz` (200 while the process lives), `/readyz` (200 only when ready, else
 * 503 with the reason) and `/metrics` (Prometheus text) on the given address.
 */
export function serveHealth(
  options: { hostname: string; port: number; signal: AbortSignal },
  verdict: () => HealthVerdict,
  metrics: () => string,
): Deno.HttpServer {
  return Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: options.signal,
    onListen: () => {},
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return new Response("ok\n");
    if (path === "/readyz") {
      const { ready, line } = verdict();
      return new Response(line + "\n", { status: ready ? 200 : 503 });
    }
    if (path === "/metrics") {
      return new Response(metrics(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    return new Response("not found (try /healthz, /readyz or /metrics)\n", { status: 404 });
  });
}
