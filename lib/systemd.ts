/**
 * systemd integration: the sd_notify protocol (READY=1 on $NOTIFY_SOCKET once the
 * overlay is up, so units ordered After=overlay.service start after it) and the unit
 * `overlay systemd-unit` prints.
 */
import { sendUnixDatagram } from "../ffi/unix_socket.ts";
import { log } from "./log.ts";

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

/** The systemd unit for `overlay run`, with only the capabilities it needs. */
export function systemdUnit(options: UnitOptions): string {
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
EnvironmentFile=-${options.environmentFile}
ExecStart=${options.binary} run
Restart=on-failure
RestartSec=2
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
