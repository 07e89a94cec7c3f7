/**
 * UDP sockets through libc: open and bind, socket options, buffer sizes, and the probe
 * for UDP GSO/GRO. Layout: sockaddr_in is 16 bytes: u16 family (LE), u16 port (BE),
 * 4 address bytes, 8 zero.
 */
import { check, closeFd, errno, libc, SystemError } from "./libc.ts";

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0x800;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_REUSEPORT = 15;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;

export const SOCKADDR_IN_SIZE = 16;
export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;

/** Writes a sockaddr_in for `ip` (32-bit host order) and `port`. */
export function writeSockaddrIn(view: DataView, offset: number, ip: number, port: number): void {
  view.setUint16(offset, AF_INET, true);
  view.setUint16(offset + 2, port, false);
  view.setUint32(offset + 4, ip, false);
  view.setBigUint64(offset + 8, 0n, true);
}

/**
 * Opens a non-blocking UDP socket bound to `ip:port` (ip 0 = any). With `reusePort`
 * (SO_REUSEPORT) several sockets of this process share the port and the kernel spreads
 * arriving datagrams over them by a hash of their addresses and ports.
 */
export function openUdpSocket(
  ip: number,
  port: number,
  options: { reusePort?: boolean } = {},
): number {
  const fd = check(
    libc().socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0),
    "socket(AF_INET, SOCK_DGRAM)",
  );
  if (options.reusePort && !setSocketInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) {
    const code = errno();
    closeFd(fd);
    throw new SystemError("setsockopt(SO_REUSEPORT)", code, `UDP port ${port}`);
  }
  const address = new Uint8Array(SOCKADDR_IN_SIZE);
  writeSockaddrIn(new DataView(address.buffer), 0, ip, port);
  if (libc().bind(fd, address, SOCKADDR_IN_SIZE) < 0) {
    const code = errno();
    closeFd(fd);
    throw new SystemError("bind", code, `UDP port ${port}`);
  }
  return fd;
}

/** setsockopt with an int value. */
export function setSocketInt(fd: number, level: number, option: number, value: number): boolean {
  const buffer = new Int32Array([value]);
  return libc().setsockopt(fd, level, option, new Uint8Array(buffer.buffer), 4) === 0;
}

/** getsockopt of an int value; undefined on failure. */
export function getSocketInt(fd: number, level: number, option: number): number | undefined {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  const ok = libc().getsockopt(
    fd,
    level,
    option,
    new Uint8Array(value.buffer),
    new Uint8Array(length.buffer),
  );
  return ok === 0 ? value[0] : undefined;
}

/**
 * Raises a socket's buffers: the FORCE variants (root/CAP_NET_ADMIN) pass the sysctl
 * caps; without the capability fall back to the plain ones. Returns what the kernel set.
 */
export function raiseSocketBuffers(fd: number, bytes: number): { rcvbuf: number; sndbuf: number } {
  if (!setSocketInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes)) {
    setSocketInt(fd, SOL_SOCKET, SO_RCVBUF, bytes);
  }
  if (!setSocketInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, bytes)) {
    setSocketInt(fd, SOL_SOCKET, SO_SNDBUF, bytes);
  }
  return {
    rcvbuf: getSocketInt(fd, SOL_SOCKET, SO_RCVBUF) ?? 0,
    sndbuf: getSocketInt(fd, SOL_SOCKET, SO_SNDBUF) ?? 0,
  };
}

/** True when the kernel takes UDP_SEGMENT and UDP_GRO on this socket (Linux ≥ 5.0). */
export function probeUdpOffloads(fd: number): boolean {
  const gso = setSocketInt(fd, SOL_UDP, UDP_SEGMENT, 1400) &&
    setSocketInt(fd, SOL_UDP, UDP_SEGMENT, 0);
  return gso && setSocketInt(fd, SOL_UDP, UDP_GRO, 1);
}
