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

const SO_ATTACH_REUSEPORT_CBPF = 51;

/**
 * Spreads arriving datagrams over a SO_REUSEPORT group of `sockets` by a hash of the
 * *inner* packet's addresses and ports (a classic BPF program, SO_ATTACH_REUSEPORT_CBPF,
 * which sees the UDP payload): between two hosts every datagram has the same outer
 * addresses and ports (8285 → 8285), so the kernel's own hash would put all of one peer's
 * traffic on one socket. One inner flow always lands on one socket, so its order holds.
 * Attached to one socket of the group, it serves the group. False when the kernel refuses.
 */
export function steerByInnerFlow(fd: number, sockets: number): boolean {
  // [code, jt, jf, k]: struct sock_filter.
  const program: [number, number, number, number][] = [
    [0x30, 0, 0, 0], //  0 ldb [0]           version nibble
    [0x74, 0, 0, 4], //  1 rsh #4
    [0x15, 10, 0, 6], // 2 jeq #6 → 13 (IPv6)
    [0x20, 0, 0, 12], // 3 ld [12]           IPv4 source
    [0x07, 0, 0, 0], //  4 tax
    [0x20, 0, 0, 16], // 5 ld [16]           IPv4 destination
    [0xac, 0, 0, 0], //  6 xor x
    [0x02, 0, 0, 0], //  7 st M[0]
    [0xb1, 0, 0, 0], //  8 ldxb 4*([0]&0xf)  header length
    [0x40, 0, 0, 0], //  9 ld [x+0]         both ports
    [0x07, 0, 0, 0], // 10 tax
    [0x60, 0, 0, 0], // 11 ld M[0]
    [0x05, 0, 0, 6], // 12 ja → 19
    [0x20, 0, 0, 20], // 13 ld [20]          IPv6 source, low word
    [0x07, 0, 0, 0], // 14 tax
    [0x20, 0, 0, 36], // 15 ld [36]          IPv6 destination, low word
    [0xac, 0, 0, 0], // 16 xor x
    [0x07, 0, 0, 0], // 17 tax
    [0x20, 0, 0, 40], // 18 ld [40]          ports (no extension headers)
    [0xac, 0, 0, 0], // 19 xor x
    [0x07, 0, 0, 0], // 20 tax               fold the high half down
    [0x74, 0, 0, 16], // 21 rsh #16
    [0xac, 0, 0, 0], // 22 xor x
    [0x07, 0, 0, 0], // 23 tax
    [0x74, 0, 0, 8], // 24 rsh #8
    [0xac, 0, 0, 0], // 25 xor x
    [0x94, 0, 0, sockets], // 26 mod #sockets
    [0x16, 0, 0, 0], // 27 ret a             the socket's index in the group
  ];
  const filter = new Uint8Array(program.length * 8);
  const view = new DataView(filter.buffer);
  program.forEach(([code, jt, jf, k], i) => {
    view.setUint16(i * 8, code, true);
    view.setUint8(i * 8 + 2, jt);
    view.setUint8(i * 8 + 3, jf);
    view.setUint32(i * 8 + 4, k, true);
  });
  // struct sock_fprog: u16 len, 6 bytes padding, pointer to the filter.
  const fprog = new Uint8Array(16);
  const fview = new DataView(fprog.buffer);
  fview.setUint16(0, program.length, true);
  fview.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(filter))), true);
  const ok = libc().setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog, 16) === 0;
  void filter; // referenced until the kernel has copied it
  return ok;
}
