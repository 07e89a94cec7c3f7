/**
 * systemd integration: the sd_notify protocol (READY=1 on $NOTIFY_SOCKET once the
 * overlay is up, so units ordered After=overlay.service start after it) and the unit
 * `overlay systemd-unit` prints.
 */
import { sendUnixDatagram } from "../ffi/unix_socket.ts";
import { UsageError } from "./errors.ts";
import { log } from "./log.ts";
import { isPrintable } from "./printable.ts";

/** Sends a notification when running under systemd (Type=notify); a no-op otherwise. */
export function notifySystemd(message: string): void {
  const socket = Deno.env.get("NOTIFY_SOCKET");
  if (!socket) return;
  try {
    sendUnixDatagram(socket, message);
  } catch (error) {
    log.warn("cannot notify systemd", { socket, error: (error as Error).message });
  }
}

export interface UnitOptions {
  readonly binary: string;
  readonly environmentFile: string;
}

/**
 * A path as a unit file takes it: absolute, one line; `%` doubled (systemd expands
 * specifiers), and quoted for ExecStart= when it holds a space (else the command is cut there).
 */
function unitPath(flag: string, path: string, options: { quote?: boolean } = {}): string {
  if (!path.startsWith("/") || !isPrintable(path)) {
    throw new UsageError(
      `${flag} ${JSON.stringify(path)}: give an absolute path on one line (a unit needs one)`,
    );
  }
  const escaped = path.replaceAll("%", "%%");
  return options.quote && /[\s"'\\]/.test(escaped)
    ? `"${escaped.replace(/["\\]/g, (c) => `\\${c}`)}"`
    : escaped;
}

/** The systemd unit for `overlay run`, with only the capabilities it needs. */
export function systemdUnit(options: UnitOptions): string {
  const binary = unitPath("--binary", options.binary, { quote: true });
  const environmentFile = unitPath("--env-file", options.environmentFile);
  return `[Unit]
Description=overlay: container overlay network agent (flannel-compatible)
Wants=network-online.target
After=network-online.target
# Never give up: a host that boots long before etcd must come up when etcd does.
StartLimitIntervalSec=0
Before=docker.service lxc.service lxd.service containerd.service

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=-${environmentFile}
ExecStart=${binary} run
Restart=on-failure
RestartSec=2
# READY=1 comes once the overlay is up, which may be long after boot when etcd comes
# later: no start timeout (systemd's 90 s would kill and restart it meanwhile).
TimeoutStartSec=infinity
# Devices, routes, addresses and iptables rules need CAP_NET_ADMIN; ping-style raw
# sockets and iptables' own checks use CAP_NET_RAW. Nothing else is granted.
User=root
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW
NoNewPrivileges=yes
RuntimeDirectory=overlay flannel
RuntimeDirectoryPreserve=yes
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
}
