/**
 * Batched datagram I/O: a preallocated vector of messages for sendmmsg()/recvmmsg(),
 * and one UDP_SEGMENT (GSO) send. Layouts (x86_64):
 *   iovec    16 B: base pointer @0, length @8
 *   msghdr   56 B: name @0, namelen @8, iov @16, iovlen @24, control @32,
 *                  controllen @40, flags @48
 *   mmsghdr  64 B: msghdr, then msg_len (u32) @56
 * Every call returns a count or one of the SEND_* / nothing-waiting results below and
 * throws SystemError only when the socket itself has failed: the data path above imports
 * no libc symbol.
 */
import { EAGAIN, EINTR, errno, libc, SystemError } from "./libc.ts";
import { addressOf } from "./memory.ts";
import { SOCKADDR_IN_SIZE, SOL_UDP, UDP_GRO, UDP_SEGMENT, writeSockaddrIn } from "./udp_socket.ts";

export const IOVEC_SIZE = 16;
export const MMSGHDR_SIZE = 64;
const MSG_TRUNC = 0x20;

/** A send result: the socket's queue is full (the caller counts a drop). */
export const SEND_BLOCKED = -1;
/** A send result: the kernel refused the message (the caller counts it and goes on). */
export const SEND_FAILED = -2;

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
   * `controlSize` gives every message room for ancillary data (UDP_GRO's segment size);
   * `allocate` makes the packet buffer (e.g. lib/udp/checksum.ts's packetMemory, inside
   * WebAssembly memory; it must never move or be detached while this vector lives).
   */
  constructor(
    count: number,
    slotSize: number,
    extra = 0,
    controlSize = 0,
    allocate: (size: number) => Uint8Array<ArrayBuffer> = (size) => new Uint8Array(size),
  ) {
    this.count = count;
    this.slotSize = slotSize;
    this.packets = allocate(count * slotSize + extra);
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
    const headerBase = addressOf(this.headers);
    for (let i = 0; i < count; i++) {
      this.#headerPointers.push(Deno.UnsafePointer.create(headerBase + BigInt(i * MMSGHDR_SIZE)));
    }
  }

  readonly #iovView: DataView;
  /** Pointers to each message header, so a send can start at any slot. */
  readonly #headerPointers: Deno.PointerValue[] = [];
  readonly #libc = libc();

  /**
   * sendmmsg() of slots [first, first + count) to `fd`: how many left, or SEND_BLOCKED
   * when the socket's queue is full, or SEND_FAILED when the kernel refused slot `first`
   * (a bad destination): the caller counts it and sends on from the next slot.
   */
  send(fd: number, first: number, count: number): number {
    while (true) {
      const sent = this.#libc.sendmmsg_ptr(fd, this.#headerPointers[first], count, 0);
      if (sent >= 0) return sent;
      const code = errno();
      if (code === EINTR) continue;
      return code === EAGAIN ? SEND_BLOCKED : SEND_FAILED;
    }
  }

  /**
   * recvmmsg() into every slot from `fd` (each prepared with prepareReceive): how many
   * arrived, 0 when none was waiting. Throws SystemError when the socket has failed.
   */
  receive(fd: number): number {
    const count = this.#libc.recvmmsg(fd, this.headers, this.count, 0, null);
    if (count >= 0) return count;
    const code = errno();
    if (code === EAGAIN || code === EINTR) return 0;
    throw new SystemError("recvmmsg", code, "UDP socket");
  }

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
  readonly #libc = libc();

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

  /**
   * Sends `length` bytes at `offset` to `ip` as segments of `segmentSize`: 0 when sent,
   * SEND_BLOCKED when the socket's queue is full, SEND_FAILED when the kernel refused it.
   * `port` sends to another port than the constructor's (WireGuard peers each name theirs).
   */
  send(ip: number, offset: number, length: number, segmentSize: number, port?: number): number {
    const address = this.#base + offset;
    this.#iovView.setUint32(0, address % 0x1_0000_0000, true);
    this.#iovView.setUint32(4, Math.floor(address / 0x1_0000_0000), true);
    this.#iovView.setUint32(8, length, true);
    this.#iovView.setUint32(12, 0, true);
    this.#addressView.setUint32(4, ip, false);
    if (port !== undefined) this.#addressView.setUint16(2, port, false);
    this.#controlView.setUint16(16, segmentSize, true);
    while (true) {
      if (this.#libc.sendmsg(this.#fd, this.#message, 0) >= 0) return 0;
      const code = errno();
      if (code === EINTR) continue;
      return code === EAGAIN ? SEND_BLOCKED : SEND_FAILED;
    }
  }
}
