/**
 * UDP sockets through libc, and the struct layouts for batched I/O (x86_64):
 *   sockaddr_in 16 B: u16 family (LE), u16 port (BE), 4 address bytes, 8 zero
 *   iovec       16 B: base pointer @0, length @8
 *   msghdr      56 B: name @0, namelen @8, iov @16, iovlen @24, control @32,
 *                     controllen @40, flags @48
 *   mmsghdr     64 B: msghdr, then msg_len (u32) @56
 */
import { check, closeFd, errno, libc, SystemError } from "./libc.ts";

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0x800;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;

export const SOCKADDR_IN_SIZE = 16;
export const IOVEC_SIZE = 16;
export const MMSGHDR_SIZE = 64;

/** Writes a sockaddr_in for `ip` (32-bit host order) and `port`. */
export function writeSockaddrIn(view: DataView, offset: number, ip: number, port: number): void {
  view.setUint16(offset, AF_INET, true);
  view.setUint16(offset + 2, port, false);
  view.setUint32(offset + 4, ip, false);
  view.setBigUint64(offset + 8, 0n, true);
}

/** Opens a non-blocking UDP socket bound to `ip:port` (ip 0 = any). */
export function openUdpSocket(ip: number, port: number): number {
  const fd = check(
    libc().socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0),
    "socket(AF_INET, SOCK_DGRAM)",
  );
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

/** The address of a buffer's first byte, for writing into iovecs and msghdrs. */
export function addressOf(buffer: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/**
 * A preallocated vector of mmsghdrs, each with one iovec onto its own slot of a shared
 * packet buffer and its own sockaddr_in. The kernel writes into these buffers, so the
 * object keeps every one of them referenced for as long as it lives.
 */
export class MessageVector {
  readonly count: number;
  readonly slotSize: number;
  /** Packet bytes: slot i at [i * slotSize, (i + 1) * slotSize). */
  readonly packets: Uint8Array<ArrayBuffer>;
  readonly headers: Uint8Array<ArrayBuffer>;
  readonly headerView: DataView;
  readonly addresses: Uint8Array<ArrayBuffer>;
  readonly addressView: DataView;
  readonly #iovecs: Uint8Array<ArrayBuffer>;

  readonly #controls: Uint8Array<ArrayBuffer>;
  readonly #controlView: DataView;
  readonly #controlSize: number;

  /**
   * `extra` bytes after the last slot are the caller's scratch space in the same buffer;
   * `controlSize` gives every message room for ancillary data (UDP_GRO's segment size).
   */
  constructor(count: number, slotSize: number, extra = 0, controlSize = 0) {
    this.count = count;
    this.slotSize = slotSize;
    this.packets = new Uint8Array(count * slotSize + extra);
    this.headers = new Uint8Array(count * MMSGHDR_SIZE);
    this.headerView = new DataView(this.headers.buffer);
    this.addresses = new Uint8Array(count * SOCKADDR_IN_SIZE);
    this.addressView = new DataView(this.addresses.buffer);
    this.#iovecs = new Uint8Array(count * IOVEC_SIZE);
    this.#controlSize = controlSize;
    this.#controls = new Uint8Array(Math.max(8, count * controlSize));
    this.#controlView = new DataView(this.#controls.buffer);
    const controlBase = addressOf(this.#controls);
    const iovView = new DataView(this.#iovecs.buffer);
    const packetBase = addressOf(this.packets);
    const iovBase = addressOf(this.#iovecs);
    const addressBase = addressOf(this.addresses);
    for (let i = 0; i < count; i++) {
      iovView.setBigUint64(i * IOVEC_SIZE, packetBase + BigInt(i * slotSize), true);
      iovView.setBigUint64(i * IOVEC_SIZE + 8, BigInt(slotSize), true);
      const h = i * MMSGHDR_SIZE;
      this.headerView.setBigUint64(h, addressBase + BigInt(i * SOCKADDR_IN_SIZE), true);
      this.headerView.setUint32(h + 8, SOCKADDR_IN_SIZE, true);
      this.headerView.setBigUint64(h + 16, iovBase + BigInt(i * IOVEC_SIZE), true);
      this.headerView.setBigUint64(h + 24, 1n, true);
      if (controlSize > 0) {
        this.headerView.setBigUint64(h + 32, controlBase + BigInt(i * controlSize), true);
        this.headerView.setBigUint64(h + 40, BigInt(controlSize), true);
      }
    }
    this.#iovView = iovView;
  }

  readonly #iovView: DataView;

  /** Sets the iovec length of slot i (bytes to send, or room to receive). */
  setLength(i: number, length: number): void {
    this.#iovView.setUint32(i * IOVEC_SIZE + 8, length, true);
  }

  /** Resets slot i for receiving: full room, a fresh address length and control room. */
  prepareReceive(i: number): void {
    this.#iovView.setUint32(i * IOVEC_SIZE + 8, this.slotSize, true);
    this.headerView.setUint32(i * MMSGHDR_SIZE + 8, SOCKADDR_IN_SIZE, true);
    if (this.#controlSize > 0) {
      this.headerView.setUint32(i * MMSGHDR_SIZE + 40, this.#controlSize, true);
    }
  }

  /**
   * The UDP_GRO segment size the kernel reported for slot i (every datagram joined into
   * the slot had this size, the last one possibly less); 0 when the slot holds one datagram.
   */
  groSegmentSize(i: number): number {
    if (this.#controlSize === 0) return 0;
    const used = this.headerView.getUint32(i * MMSGHDR_SIZE + 40, true);
    const base = i * this.#controlSize;
    if (used < 20) return 0;
    const level = this.#controlView.getInt32(base + 8, true);
    const type = this.#controlView.getInt32(base + 12, true);
    return level === SOL_UDP && type === UDP_GRO ? this.#controlView.getUint16(base + 16, true) : 0;
  }

  /** True when the datagram in slot i did not fit and was cut short (MSG_TRUNC). */
  truncated(i: number): boolean {
    return (this.headerView.getInt32(i * MMSGHDR_SIZE + 48, true) & MSG_TRUNC) !== 0;
  }

  /** Bytes received into slot i by the last recvmmsg. */
  receivedLength(i: number): number {
    return this.headerView.getUint32(i * MMSGHDR_SIZE + 56, true);
  }

  /** The sender or destination IPv4 address of slot i (host order). */
  address(i: number): number {
    return this.addressView.getUint32(i * SOCKADDR_IN_SIZE + 4, false);
  }

  /** Sets slot i's destination address. */
  setAddress(i: number, ip: number, port: number): void {
    writeSockaddrIn(this.addressView, i * SOCKADDR_IN_SIZE, ip, port);
  }

  /** Slot i's packet bytes, as a view (no copy). */
  slot(i: number): Uint8Array<ArrayBuffer> {
    return this.packets.subarray(i * this.slotSize, (i + 1) * this.slotSize);
  }
}

export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;
const CMSG_SPACE_U16 = 24; // cmsghdr (16) + 2 bytes, aligned to 8
const MSGHDR_SIZE = 56;

/**
 * One sendmsg() with UDP_SEGMENT (UDP GSO): a buffer of equal-size segments (only the last
 * may be shorter) leaves as one datagram per segment. Header, iovec, address and control
 * message are preallocated; send() only patches numbers into them.
 */
export class SegmentSender {
  readonly #fd: number;
  readonly #message = new Uint8Array(MSGHDR_SIZE);
  readonly #iovec = new Uint8Array(IOVEC_SIZE);
  readonly #address = new Uint8Array(SOCKADDR_IN_SIZE);
  readonly #control = new Uint8Array(CMSG_SPACE_U16);
  readonly #iovView = new DataView(this.#iovec.buffer);
  readonly #addressView = new DataView(this.#address.buffer);
  readonly #controlView = new DataView(this.#control.buffer);
  readonly #base: number;

  /** Sends from `buffer`, which must stay referenced for as long as this sender lives. */
  constructor(fd: number, buffer: Uint8Array, port: number) {
    this.#fd = fd;
    this.#base = Number(addressOf(buffer));
    writeSockaddrIn(this.#addressView, 0, 0, port);
    const message = new DataView(this.#message.buffer);
    message.setBigUint64(0, addressOf(this.#address), true);
    message.setUint32(8, SOCKADDR_IN_SIZE, true);
    message.setBigUint64(16, addressOf(this.#iovec), true);
    message.setBigUint64(24, 1n, true);
    message.setBigUint64(32, addressOf(this.#control), true);
    message.setBigUint64(40, BigInt(CMSG_SPACE_U16), true);
    this.#controlView.setBigUint64(0, 18n, true); // CMSG_LEN(2)
    this.#controlView.setInt32(8, SOL_UDP, true);
    this.#controlView.setInt32(12, UDP_SEGMENT, true);
  }

  /** Sends `length` bytes at `offset` to `ip` as segments of `segmentSize`; returns sendmsg's result. */
  send(ip: number, offset: number, length: number, segmentSize: number): number {
    const address = this.#base + offset;
    this.#iovView.setUint32(0, address % 0x1_0000_0000, true);
    this.#iovView.setUint32(4, Math.floor(address / 0x1_0000_0000), true);
    this.#iovView.setUint32(8, length, true);
    this.#iovView.setUint32(12, 0, true);
    this.#addressView.setUint32(4, ip, false);
    this.#controlView.setUint16(16, segmentSize, true);
    return libc().sendmsg(this.#fd, this.#message, 0);
  }
}

/** True when the kernel takes UDP_SEGMENT and UDP_GRO on this socket (Linux ≥ 5.0). */
export function probeUdpOffloads(fd: number): boolean {
  const gso = setSocketInt(fd, SOL_UDP, UDP_SEGMENT, 1400) &&
    setSocketInt(fd, SOL_UDP, UDP_SEGMENT, 0);
  return gso && setSocketInt(fd, SOL_UDP, UDP_GRO, 1);
}

export const AF_UNIX = 1;
/** struct sockaddr_un: u16 family, then a 108-byte path (abstract when it starts with NUL). */
const SOCKADDR_UN_SIZE = 110;

function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const address = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  // systemd writes abstract socket names with a leading "@".
  const bytes = new TextEncoder().encode(path.startsWith("@") ? "\0" + path.slice(1) : path);
  if (bytes.length > SOCKADDR_UN_SIZE - 3) throw new Error(`unix socket path too long: ${path}`);
  address.set(bytes, 2);
  return address;
}

function sockaddrUnLength(path: string): number {
  // Abstract names are not NUL-terminated: the length says where they end.
  return 2 + new TextEncoder().encode(path).length + (path.startsWith("@") ? 0 : 1);
}

/** Sends one datagram to a unix datagram socket (sd_notify's transport). */
export function sendUnixDatagram(path: string, message: string): void {
  const fd = check(libc().socket(AF_UNIX, SOCK_DGRAM, 0), "socket(AF_UNIX, SOCK_DGRAM)");
  try {
    const bytes = new TextEncoder().encode(message);
    check(
      libc().sendto(fd, bytes, bytes.length, 0, sockaddrUn(path), sockaddrUnLength(path)),
      "sendto",
      path,
    );
  } finally {
    closeFd(fd);
  }
}

/** A bound unix datagram socket, for tests that play systemd. */
export class UnixDatagramListener {
  readonly fd: number;
  constructor(path: string) {
    this.fd = check(
      libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0),
      "socket(AF_UNIX, SOCK_DGRAM)",
    );
    if (libc().bind(this.fd, sockaddrUn(path), sockaddrUnLength(path)) < 0) {
      const code = errno();
      closeFd(this.fd);
      throw new SystemError("bind", code, path);
    }
  }

  /** The next datagram, or undefined when none is waiting. */
  receive(): string | undefined {
    const buffer = new Uint8Array(4096);
    const n = libc().recv(this.fd, buffer, buffer.length, 0);
    return n < 0 ? undefined : new TextDecoder().decode(buffer.subarray(0, n));
  }

  close(): void {
    closeFd(this.fd);
  }
}
