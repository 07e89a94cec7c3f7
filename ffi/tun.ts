/**
 * TUN devices: open /dev/net/tun and attach it to a named interface with TUNSETIFF.
 * The device is made persistent, so it outlives a restart of the agent with its address
 * and route (a restart adopts it); a second agent cannot take one that is in use (EBUSY).
 *
 * A multi-queue device (IFF_MULTI_QUEUE) has one descriptor per queue, each attached by its
 * own TUNSETIFF with the same name and flags; the kernel spreads outgoing packets over the
 * queues by flow hash (and keeps a flow on the queue that last wrote its other direction).
 * A device's multi-queue flag is fixed when it is made: the kernel refuses (EINVAL) to attach
 * a descriptor whose flag differs.
 */
import {
  check,
  closeFd,
  cString,
  EAGAIN,
  EBUSY,
  EINTR,
  EINVAL,
  errno,
  libc,
  O_RDWR,
  SystemError,
} from "./libc.ts";

const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const TUNSETOFFLOAD = 0x400454d0;
const IFF_VNET_HDR = 0x4000;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const TUN_F_USO4 = 0x20;
const TUN_F_USO6 = 0x40;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_MULTI_QUEUE = 0x0100;
/** struct ifreq: name[16] then flags (u16, little endian) at offset 16; 40 bytes in all. */
const IFREQ_SIZE = 40;
export const IFNAMSIZ = 16;

export interface TunDevice {
  /** The first queue's descriptor (the only one unless the device is multi-queue). */
  readonly fd: number;
  /** One descriptor per queue. */
  readonly fds: number[];
  readonly name: string;
  /** Whether the device was made (or adopted) with IFF_MULTI_QUEUE. */
  readonly multiQueue: boolean;
}

export interface OpenTunOptions {
  /** Each packet behind a virtio_net_hdr (IFF_VNET_HDR), for the offloads. */
  vnetHdr?: boolean;
  /**
   * Queues to open (default 1). More than 1 needs a multi-queue device: a persistent
   * single-queue device left by an older run is deleted and made again (its address and
   * routes go with it; the caller sets them anew). With 1, a multi-queue device left by a
   * newer run is adopted with one queue.
   */
  queues?: number;
}

/**
 * Opens the TUN device `name` (created if absent) without packet-info headers: each
 * read or write is one bare IP packet. Throws SystemError naming the device.
 */
export function openTun(name: string, options: OpenTunOptions = {}): TunDevice {
  if (name.length === 0 || name.length >= IFNAMSIZ) {
    throw new Error(`TUN device name ${JSON.stringify(name)} must be 1..15 characters`);
  }
  const queues = Math.max(1, options.queues ?? 1);
  const flags = IFF_TUN | IFF_NO_PI | (options.vnetHdr ? IFF_VNET_HDR : 0);
  // A multi-queue device takes more queues from anyone: refuse one that another process
  // holds, as the kernel refuses a single-queue one (EBUSY).
  if (heldMultiQueue(name)) throw busy(new SystemError("TUNSETIFF", EBUSY, name));
  if (queues === 1) {
    try {
      return { ...attachQueues(name, flags, 1), multiQueue: false };
    } catch (error) {
      if (!(error instanceof SystemError) || error.errno !== EINVAL) throw error;
    }
    // A multi-queue device from a run with more queues: one of its queues serves.
    return { ...attachQueues(name, flags | IFF_MULTI_QUEUE, 1), multiQueue: true };
  }
  try {
    return { ...attachQueues(name, flags | IFF_MULTI_QUEUE, queues), multiQueue: true };
  } catch (error) {
    if (!(error instanceof SystemError) || error.errno !== EINVAL) throw error;
  }
  // A single-queue device from an older run: end its persistence (the kernel deletes it
  // once its last descriptor closes) and make it again with queues.
  const old = attachQueues(name, flags, 1);
  libc().ioctl_value(old.fd, BigInt(TUNSETPERSIST), 0n);
  closeFd(old.fd);
  return { ...attachQueues(name, flags | IFF_MULTI_QUEUE, queues), multiQueue: true };
}

/** Attaches `count` descriptors to the device with TUNSETIFF; closes them all on failure. */
function attachQueues(
  name: string,
  flags: number,
  count: number,
): { fd: number; fds: number[]; name: string } {
  const fds: number[] = [];
  let attached = name;
  try {
    for (let i = 0; i < count; i++) {
      const queue = attachQueue(name, flags);
      fds.push(queue.fd);
      attached = queue.name;
    }
  } catch (error) {
    for (const fd of fds) closeFd(fd);
    throw error;
  }
  return { fd: fds[0], fds, name: attached };
}

function busy(error: SystemError): SystemError {
  error.message += " — another process holds this device (is another overlay run using it?)";
  return error;
}

/**
 * Whether `name` is a multi-queue TUN with a queue attached: its carrier is on exactly while
 * some descriptor is attached (read from sysfs; a device that is down reads as not held).
 */
function heldMultiQueue(name: string): boolean {
  try {
    const flags = parseInt(Deno.readTextFileSync(`/sys/class/net/${name}/tun_flags`), 16);
    if (!(flags & IFF_MULTI_QUEUE)) return false;
    return Deno.readTextFileSync(`/sys/class/net/${name}/carrier`).trim() === "1";
  } catch {
    return false;
  }
}

function attachQueue(name: string, flags: number): { fd: number; name: string } {
  const fd = check(libc().open(cString("/dev/net/tun"), O_RDWR), "open", "/dev/net/tun");
  const ifreq = new Uint8Array(IFREQ_SIZE);
  ifreq.set(new TextEncoder().encode(name));
  new DataView(ifreq.buffer).setUint16(16, flags, true);
  if (libc().ioctl(fd, BigInt(TUNSETIFF), ifreq) < 0) {
    const code = errno();
    closeFd(fd);
    const error = new SystemError("TUNSETIFF", code, name);
    throw code === EBUSY ? busy(error) : error;
  }
  if (libc().ioctl_value(fd, BigInt(TUNSETPERSIST), 1n) < 0) {
    const code = errno();
    closeFd(fd);
    throw new SystemError("TUNSETPERSIST", code, name);
  }
  const nameEnd = ifreq.indexOf(0);
  return {
    fd,
    name: new TextDecoder().decode(ifreq.subarray(0, nameEnd < 0 ? IFNAMSIZ : nameEnd)),
  };
}

/**
 * Lets the kernel hand this TUN TCPv4 super-packets, with `ipv6` TCPv6 ones too, and leave
 * checksums to us (TUNSETOFFLOAD with CSUM|TSO4[|TSO6], flags passed by value). False when
 * it refuses.
 */
export function enableTso(fd: number, options: { ipv6?: boolean } = {}): boolean {
  const flags = TUN_F_CSUM | TUN_F_TSO4 | (options.ipv6 ? TUN_F_TSO6 : 0);
  return libc().ioctl_value(fd, BigInt(TUNSETOFFLOAD), BigInt(flags)) === 0;
}

/**
 * enableTso's offloads plus UDP segmentation (TUN_F_USO4|USO6, Linux 6.2+): the kernel may
 * also hand this TUN UDP super-packets (vnet gso_type GSO_UDP_L4). The kernel takes USO4
 * and USO6 only together. False, changing nothing, when it refuses (then call enableTso).
 */
export function enableUso(fd: number, options: { ipv6?: boolean } = {}): boolean {
  const flags = TUN_F_CSUM | TUN_F_TSO4 | (options.ipv6 ? TUN_F_TSO6 : 0) | TUN_F_USO4 |
    TUN_F_USO6;
  return libc().ioctl_value(fd, BigInt(TUNSETOFFLOAD), BigInt(flags)) === 0;
}

/**
 * Turns TUN offloads off. A persistent device keeps the offloads an earlier agent
 * enabled; without a vnet header we must not be handed super-packets.
 */
export function disableOffloads(fd: number): void {
  libc().ioctl_value(fd, BigInt(TUNSETOFFLOAD), 0n);
}

/**
 * A TUN device's packets, read and written by pointer into preallocated memory (one
 * packet per call, as the TUN hands them over; with IFF_VNET_HDR each starts with a
 * virtio_net_hdr, which lib/udp/offload.ts reads and writes). Nothing is allocated per call.
 */
export class TunQueue {
  readonly #fd: number;
  readonly #libc = libc();

  constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Reads one packet into `room` bytes at `pointer`: its length (which may exceed `room`
   * on some kernels, or fill it when the packet was cut: the caller checks), 0 when none
   * is waiting. Throws SystemError when the device has failed.
   */
  read(pointer: Deno.PointerValue, room: number): number {
    const length = this.#libc.read_ptr(this.#fd, pointer, room);
    if (length >= 0) return length;
    const code = errno();
    if (code === EAGAIN || code === EINTR) return 0;
    throw new SystemError("read", code, "TUN device");
  }

  /** Writes one packet of `length` bytes at `pointer`; false when the device's queue is full. */
  write(pointer: Deno.PointerValue, length: number): boolean {
    return this.#libc.write_ptr(this.#fd, pointer, length) >= 0;
  }
}
