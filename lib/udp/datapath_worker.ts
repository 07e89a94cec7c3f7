/**
 * The udp data path, on a Worker of its own so that etcd traffic, timers and GC on the
 * agent's main thread never stall packets.
 *
 * Loop: one synchronous poll() on the TUN and the UDP socket (the thread has nothing
 * else to do, so blocking is free and wakes fastest), then drain both until they would
 * block: up to BATCH packets read from the TUN go out in one sendmmsg(); up to BATCH
 * datagrams come in with one recvmmsg() and are written to the TUN. Buffers, iovecs,
 * message headers and pointers are made once; nothing is allocated per packet.
 *
 * Wire format (flannel's udp backend): the UDP payload is the bare inner IPv4 packet.
 */
import { EAGAIN, EINTR, errno, libc, SystemError } from "../../ffi/libc.ts";
import { addressOf, MessageVector, MMSGHDR_SIZE } from "../../ffi/socket.ts";
import { COUNTER_INDEX as C } from "./counters.ts";
import { decrementTtl, PACKET_OK, readU32, validateIpv4, writeNetUnreachable } from "./packet.ts";
import { PeerTable, type PeerTableBuffers } from "./peer_table.ts";

/** What the agent hands the Worker. */
export interface DataPathConfig {
  readonly tunFd: number;
  readonly udpFd: number;
  readonly port: number;
  readonly ownSubnetIp: number;
  readonly ownSubnetPrefixLen: number;
  /**
   * Source of the ICMP errors we write into the TUN: the Network's base address. Not
   * an address of this host, or the kernel would drop our reply as a martian.
   */
  readonly icmpSourceIp: number;
  readonly slotSize: number;
  /** Busy-poll window after traffic, ms (0: always sleep in poll). */
  readonly busyPollMs: number;
  readonly peers: PeerTableBuffers;
  readonly counters: SharedArrayBuffer;
  /** Int32Array: [0] stop request, [1] state (see DATA_PATH_*). */
  readonly control: SharedArrayBuffer;
}

export const CONTROL_STOP = 0;
export const CONTROL_STATE = 1;
export const DATA_PATH_STARTING = 0;
export const DATA_PATH_RUNNING = 1;
export const DATA_PATH_STOPPED = 2;
export const DATA_PATH_FAILED = 3;

const BATCH = 64;
const POLL_TIMEOUT_MS = 200;
const POLLIN = 1;

/** Runs the loop until the stop flag is set. Throws on a fatal error. */
export function runDataPath(config: DataPathConfig): void {
  const c = libc();
  const control = new Int32Array(config.control);
  const counters = new Float64Array(config.counters);
  const peers = new PeerTable(config.peers);
  const tx = new MessageVector(BATCH, config.slotSize);
  const rx = new MessageVector(BATCH, config.slotSize);
  const txPackets = tx.packets;
  const rxPackets = rx.packets;
  const slotSize = config.slotSize;
  const port = config.port;
  for (let i = 0; i < BATCH; i++) tx.setAddress(i, 0, port);
  const txAddress = tx.addressView;

  // Pointers into preallocated memory, made once.
  const txSlotPointers: Deno.PointerValue[] = [];
  const rxSlotPointers: Deno.PointerValue[] = [];
  const txHeaderPointers: Deno.PointerValue[] = [];
  const txBase = addressOf(txPackets);
  const rxBase = addressOf(rxPackets);
  const txHeaderBase = addressOf(tx.headers);
  for (let i = 0; i < BATCH; i++) {
    txSlotPointers.push(Deno.UnsafePointer.create(txBase + BigInt(i * slotSize)));
    rxSlotPointers.push(Deno.UnsafePointer.create(rxBase + BigInt(i * slotSize)));
    txHeaderPointers.push(Deno.UnsafePointer.create(txHeaderBase + BigInt(i * MMSGHDR_SIZE)));
  }
  const icmp = new Uint8Array(128);
  const icmpPointer = Deno.UnsafePointer.of(icmp);

  const pollFds = new Uint8Array(16);
  const pollView = new DataView(pollFds.buffer);
  pollView.setInt32(0, config.tunFd, true);
  pollView.setInt16(4, POLLIN, true);
  pollView.setInt32(8, config.udpFd, true);
  pollView.setInt16(12, POLLIN, true);

  const ownMask = (0xffffffff << (32 - config.ownSubnetPrefixLen)) >>> 0;
  const ownNet = config.ownSubnetIp;

  /** TUN → peers. Returns the number of packets read. */
  function drainTun(): number {
    let accepted = 0;
    let read = 0;
    while (accepted < BATCH) {
      const offset = accepted * slotSize;
      const length = c.read_ptr(config.tunFd, txSlotPointers[accepted], slotSize);
      if (length < 0) {
        const code = errno();
        if (code === EAGAIN || code === EINTR) break;
        throw new SystemError("read", code, "TUN device");
      }
      read++;
      if (length < 20 || txPackets[offset] >>> 4 !== 4) {
        counters[C.drop_not_ipv4]++;
        continue;
      }
      const destination = readU32(txPackets, offset + 16);
      const owner = peers.ownerOf(destination);
      if (owner === 0) {
        counters[C.drop_no_route]++;
        if (peers.inNetwork(destination)) {
          const replyLength = writeNetUnreachable(
            txPackets,
            offset,
            length,
            config.icmpSourceIp,
            icmp,
            0,
          );
          if (replyLength > 0 && c.write_ptr(config.tunFd, icmpPointer, replyLength) > 0) {
            counters[C.icmp_unreachable_sent]++;
          }
        }
        continue;
      }
      if (!decrementTtl(txPackets, offset)) {
        counters[C.drop_ttl_expired]++;
        continue;
      }
      txAddress.setUint32(accepted * 16 + 4, owner, false);
      tx.setLength(accepted, length);
      counters[C.tx_bytes] += length;
      accepted++;
    }
    let sent = 0;
    while (sent < accepted) {
      const n = c.sendmmsg_ptr(config.udpFd, txHeaderPointers[sent], accepted - sent, 0);
      if (n < 0) {
        const code = errno();
        if (code === EINTR) continue;
        if (code === EAGAIN) counters[C.drop_queue_full] += accepted - sent;
        else {
          // One bad destination fails the batch at that message: count it and go on.
          counters[C.send_errors]++;
          sent++;
          continue;
        }
        break;
      }
      sent += n;
      counters[C.tx_packets] += n;
    }
    return read;
  }

  /** Peers → TUN. Returns the number of datagrams received. */
  for (let i = 0; i < BATCH; i++) rx.prepareReceive(i);
  let rxUsed = 0;
  function drainUdp(): number {
    // recvmmsg rewrote the lengths of the slots it filled last time: reset just those.
    for (let i = 0; i < rxUsed; i++) rx.prepareReceive(i);
    const count = c.recvmmsg(config.udpFd, rx.headers, BATCH, 0, null);
    rxUsed = count > 0 ? count : 0;
    if (count < 0) {
      const code = errno();
      if (code === EAGAIN || code === EINTR) return 0;
      throw new SystemError("recvmmsg", code, "UDP socket");
    }
    const now = Date.now();
    for (let i = 0; i < count; i++) {
      const offset = i * slotSize;
      const length = rx.receivedLength(i);
      const sender = rx.address(i);
      if (validateIpv4(rxPackets, offset, length) !== PACKET_OK) {
        counters[peers.isPeer(sender) ? C.drop_malformed : C.drop_unknown_peer]++;
        continue;
      }
      const source = readU32(rxPackets, offset + 12);
      if (peers.ownerOf(source) !== sender) {
        counters[peers.isPeer(sender) ? C.drop_spoofed_source : C.drop_unknown_peer]++;
        continue;
      }
      peers.heardFrom(source, now);
      const destination = readU32(rxPackets, offset + 16);
      if (((destination & ownMask) >>> 0) !== ownNet) {
        counters[C.drop_not_for_us]++;
        continue;
      }
      if (!decrementTtl(rxPackets, offset)) {
        counters[C.drop_ttl_expired]++;
        continue;
      }
      const written = c.write_ptr(config.tunFd, rxSlotPointers[i], length);
      if (written < 0) {
        counters[C.drop_queue_full]++;
        continue;
      }
      counters[C.rx_packets]++;
      counters[C.rx_bytes] += length;
    }
    return count;
  }

  Atomics.store(control, CONTROL_STATE, DATA_PATH_RUNNING);
  let lastActivity = -Infinity;
  while (Atomics.load(control, CONTROL_STOP) === 0) {
    const spinning = performance.now() - lastActivity < config.busyPollMs;
    const ready = c.poll(pollFds, 2, spinning ? 0 : POLL_TIMEOUT_MS);
    if (ready < 0) {
      const code = errno();
      if (code === EINTR) continue;
      throw new SystemError("poll", code);
    }
    if (ready === 0) {
      if (spinning) c.sched_yield();
      continue;
    }
    let moved = 1;
    while (moved > 0) moved = drainTun() + drainUdp();
    lastActivity = performance.now();
  }
  // Keep the buffers the kernel wrote into alive until the very end.
  void tx.headers;
  void rx.headers;
}

// Worker entry point.
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<DataPathConfig>) => void) | null;
  postMessage: (message: unknown) => void;
  close: () => void;
};
if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined") {
  scope.onmessage = (event) => {
    const control = new Int32Array(event.data.control);
    try {
      runDataPath(event.data);
      Atomics.store(control, CONTROL_STATE, DATA_PATH_STOPPED);
      scope.postMessage({ type: "stopped" });
    } catch (error) {
      Atomics.store(control, CONTROL_STATE, DATA_PATH_FAILED);
      scope.postMessage({ type: "failed", message: (error as Error).message });
    }
    scope.close();
  };
}
