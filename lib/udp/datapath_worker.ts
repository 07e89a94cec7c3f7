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
 * With offloads (probed at start) the TUN hands over TCP super-packets (and UDP ones where
 * the kernel has USO) that leave as one UDP_SEGMENT send each, and GRO'd arrivals are coalesced back into super-packets for one
 * TUN write (lib/udp/offload.ts). Every datagram on the wire is still one inner packet.
 *
 * Wire format (flannel's udp backend): the UDP payload is the bare inner IPv4 packet. In a
 * dual-stack network it may be an IPv6 packet instead, told apart by its version nibble
 * (a flannel host drops those); the underlay stays IPv4 and peers are known by their IPv4
 * public IP. Every check on IPv4 packets has its IPv6 twin: owner table, anti-spoofing,
 * destination in our subnet, hop limit, ICMPv6 no-route for an unowned overlay address.
 */
import { CONTROL_STATE, CONTROL_STOP, DATA_PATH_RUNNING, serveWorker } from "./worker_control.ts";
import { pointerInto } from "../../ffi/memory.ts";
import { ip6Bytes, type Ip6Net } from "../ip6.ts";
import {
  MessageVector,
  SegmentSender,
  SEND_BLOCKED,
  SEND_FAILED,
} from "../../ffi/message_vector.ts";
import { Poller } from "../../ffi/poll.ts";
import { TunQueue } from "../../ffi/tun.ts";
import {
  finishChecksum,
  readVnetHeader,
  type Segmented,
  segmentTcp,
  segmentUdp,
  TcpCoalescer,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP_L4,
  VNET_HDR_SIZE,
  type VnetHeader,
} from "./offload.ts";
import { BusyPoll } from "./busy_poll.ts";
import { packetMemory } from "./checksum.ts";
import { COUNTER_INDEX as C } from "./counters.ts";
import {
  decrementHopLimit,
  decrementTtl,
  ICMPV6_ERROR_MAX,
  Ip6Prefix,
  PACKET_OK,
  readU32,
  validateIpv4,
  validateIpv6,
  writeNetUnreachable,
  writeNoRoute6,
} from "./packet.ts";
import { PeerTable, type PeerTableBuffers } from "./peer_table.ts";

/** What the agent hands the Worker. */
export interface DataPathConfig {
  /** This Worker's TUN queue (one of several on a multi-queue TUN). */
  readonly tunFd: number;
  /** This Worker's socket (one of several SO_REUSEPORT sockets on the port). */
  readonly udpFd: number;
  /** How many Workers share the device: the ICMP error budget is split between them. */
  readonly queues: number;
  readonly port: number;
  readonly ownSubnetIp: number;
  readonly ownSubnetPrefixLen: number;
  /**
   * Source of the ICMP errors we write into the TUN: the Network's base address. Not
   * an address of this host, or the kernel would drop our reply as a martian.
   */
  readonly icmpSourceIp: number;
  /** This host's IPv6 subnet, in a dual-stack network: inner IPv6 destinations it accepts. */
  readonly ownIpv6Subnet?: Ip6Net;
  /**
   * Source of the ICMPv6 errors we write into the TUN: the IPv6 Network's base address,
   * chosen as icmpSourceIp is. Set with ownIpv6Subnet.
   */
  readonly icmp6SourceIp?: bigint;
  readonly slotSize: number;
  /** The device MTU: no inner packet from a peer may be larger. */
  readonly mtu: number;
  /**
   * TUN offloads in use: the TUN has a vnet header and TSO4 (and TSO6 in a dual-stack
   * network), the socket UDP_SEGMENT and UDP_GRO. Otherwise the batched per-packet path.
   */
  readonly offload: boolean;
  /** Busy-poll window after traffic, ms (0: always sleep in poll). */
  readonly busyPollMs: number;
  readonly peers: PeerTableBuffers;
  readonly counters: SharedArrayBuffer;
  /** Int32Array: [0] stop request, [1] state (see DATA_PATH_*). */
  readonly control: SharedArrayBuffer;
}

export {
  CONTROL_STATE,
  CONTROL_STOP,
  DATA_PATH_FAILED,
  DATA_PATH_RUNNING,
  DATA_PATH_STARTING,
  DATA_PATH_STOPPED,
} from "./worker_control.ts";

const BATCH = 64;
const POLL_TIMEOUT_MS = 200;
/** A GRO'd receive holds up to 64 KB of datagrams. */
const GRO_SLOT = 65_536;
/** Room after the TX batch slots: a 64 KB super-packet read, then its segments. */
const TX_SCRATCH = (VNET_HDR_SIZE + 65_535) + 65_535 + 128 * 80;
/** The kernel sends at most this many segments per UDP GSO send, and 65,507 bytes. */
const MAX_GSO_SEGMENTS = 64;
const MAX_UDP_PAYLOAD = 65_507;
/**
 * ICMP errors written into the TUN: at most ICMP_BURST at once, refilled at
 * ICMP_PER_MS (1,000/s), as Linux limits its own (RFC 4443 §2.4(f) requires a limit).
 */
const ICMP_BURST = 50;
const ICMP_PER_MS = 1;

/** Runs the loop until the stop flag is set. Throws on a fatal error. */
export function runDataPath(config: DataPathConfig): void {
  const tun = new TunQueue(config.tunFd);
  const control = new Int32Array(config.control);
  const counters = new Float64Array(config.counters);
  const peers = new PeerTable(config.peers);
  const offload = config.offload;
  // With offloads the TUN reads up to 64 KB super-packets, and GRO hands us up to 64 KB of
  // datagrams at once; each vector's buffer also holds the scratch regions (segments out,
  // coalesced run) so every copy stays inside one buffer.
  const rxSlot = offload ? GRO_SLOT : config.slotSize;
  // Packet buffers inside WebAssembly memory, so checksums over them run in SIMD without a
  // copy (lib/udp/checksum.ts; plain buffers where the runtime lacks it, or with
  // OVERLAY_CHECKSUM_WASM=0).
  const wasm = Deno.env.get("OVERLAY_CHECKSUM_WASM") !== "0";
  const allocate = (size: number) => packetMemory(size, { wasm });
  const tx = new MessageVector(BATCH, config.slotSize, offload ? TX_SCRATCH : 0, 0, allocate);
  const rx = new MessageVector(
    BATCH,
    rxSlot,
    offload ? VNET_HDR_SIZE + 65_535 : 0,
    offload ? 32 : 0,
    allocate,
  );
  const txPackets = tx.packets;
  const rxPackets = rx.packets;
  const slotSize = config.slotSize;
  const port = config.port;
  for (let i = 0; i < BATCH; i++) tx.setAddress(i, 0, port);
  const txAddress = tx.addressView;

  // Pointers into preallocated memory, made once.
  const txSlotPointers: Deno.PointerValue[] = [];
  const rxSlotPointers: Deno.PointerValue[] = [];
  for (let i = 0; i < BATCH; i++) {
    txSlotPointers.push(pointerInto(txPackets, i * slotSize));
    rxSlotPointers.push(pointerInto(rxPackets, i * rxSlot));
  }
  // ICMP replies: behind an (empty) vnet header when the TUN expects one. An ICMPv6 error
  // may quote up to 1280 bytes in all.
  const icmpHeadroom = offload ? VNET_HDR_SIZE : 0;
  const icmp = new Uint8Array(ICMPV6_ERROR_MAX + icmpHeadroom);
  const icmpPointer = Deno.UnsafePointer.of(icmp);
  // The budget is per host: each of the Workers gets its share.
  const icmpBurst = Math.max(1, Math.floor(ICMP_BURST / config.queues));
  const icmpPerMs = ICMP_PER_MS / config.queues;
  let icmpTokens = icmpBurst;
  let icmpRefilledAt = performance.now();

  // IPv6 inner packets, in a dual-stack network: the bigints become bytes and words once.
  const ipv6 = peers.hasIpv6 && config.ownIpv6Subnet !== undefined;
  const ownNet6 = new Ip6Prefix(
    config.ownIpv6Subnet?.ip ?? 0n,
    config.ownIpv6Subnet?.prefixLen ?? 128,
  );
  const icmp6Source = ip6Bytes(config.icmp6SourceIp ?? 0n);

  // Offload scratch: the super-packet read region and the segments region of tx.packets.
  const readAt = BATCH * slotSize;
  const segmentsAt = readAt + VNET_HDR_SIZE + 65_535;
  const readPointer = offload ? pointerInto(txPackets, readAt) : null;
  const vnet: VnetHeader = {
    flags: 0,
    gsoType: 0,
    headerLength: 0,
    gsoSize: 0,
    csumStart: 0,
    csumOffset: 0,
  };
  const segmenter = offload ? new SegmentSender(config.udpFd, txPackets, port) : undefined;
  const segmented: Segmented = { count: 0, segmentSize: 0, total: 0 };
  const runAt = BATCH * rxSlot;
  const runPointer = offload ? pointerInto(rxPackets, runAt) : null;
  const coalescer = offload
    ? new TcpCoalescer(rxPackets, runAt, (_start, length) => {
      if (!tun.write(runPointer, length)) counters[C.drop_queue_full]++;
    }, { udp: Deno.env.get("OVERLAY_UDP_COALESCE") !== "0" })
    : undefined;

  const ownMask = (0xffffffff << (32 - config.ownSubnetPrefixLen)) >>> 0;
  const ownNet = config.ownSubnetIp;

  /** Whether an ICMP error may go out now (token bucket; counts the ones held back). */
  function icmpAllowed(): boolean {
    const now = performance.now();
    icmpTokens = Math.min(icmpBurst, icmpTokens + (now - icmpRefilledAt) * icmpPerMs);
    icmpRefilledAt = now;
    if (icmpTokens < 1) {
      counters[C.icmp_rate_limited]++;
      return false;
    }
    icmpTokens--;
    return true;
  }

  /**
   * The peer that gets a packet read from the TUN, with its TTL decremented; 0 when it
   * is dropped (counted, and answered with ICMP net-unreachable for an overlay address).
   */
  function routeFromTun(bytes: Uint8Array, offset: number, length: number): number {
    if (ipv6 && length > 0 && bytes[offset] >>> 4 === 6) {
      return routeFromTun6(bytes, offset, length);
    }
    if (length < 20 || bytes[offset] >>> 4 !== 4) {
      counters[C.drop_not_ipv4]++;
      return 0;
    }
    const destination = readU32(bytes, offset + 16);
    const owner = peers.ownerOf(destination);
    if (owner === 0) {
      counters[C.drop_no_route]++;
      if (peers.inNetwork(destination)) {
        const reply = writeNetUnreachable(
          bytes,
          offset,
          length,
          config.icmpSourceIp,
          icmp,
          icmpHeadroom,
        );
        if (reply > 0 && icmpAllowed() && tun.write(icmpPointer, icmpHeadroom + reply)) {
          counters[C.icmp_unreachable_sent]++;
        }
      }
      return 0;
    }
    if (!decrementTtl(bytes, offset)) {
      counters[C.drop_ttl_expired]++;
      return 0;
    }
    return owner;
  }

  /** routeFromTun for an IPv6 packet: the IPv6 owner table, hop limit, ICMPv6 no-route. */
  function routeFromTun6(bytes: Uint8Array, offset: number, length: number): number {
    if (length < 40) {
      counters[C.drop_malformed_v6]++;
      return 0;
    }
    const owner = peers.ownerOf6(bytes, offset + 24);
    if (owner === 0) {
      counters[C.drop_no_route_v6]++;
      if (peers.inNetwork6(bytes, offset + 24)) {
        const reply = writeNoRoute6(bytes, offset, length, icmp6Source, icmp, icmpHeadroom);
        if (reply > 0 && icmpAllowed() && tun.write(icmpPointer, icmpHeadroom + reply)) {
          counters[C.icmp_unreachable_sent]++;
        }
      }
      return 0;
    }
    if (!decrementHopLimit(bytes, offset)) {
      counters[C.drop_hop_limit_expired]++;
      return 0;
    }
    return owner;
  }

  /**
   * Checks one inner packet from `sender`: exactly one valid IPv4 packet, from the
   * sender's own subnet, to ours, TTL left (then decremented). Counts every drop.
   */
  function acceptFromPeer(
    bytes: Uint8Array,
    offset: number,
    length: number,
    sender: number,
    now: number,
  ): boolean {
    if (ipv6 && length > 0 && bytes[offset] >>> 4 === 6) {
      return acceptFromPeer6(bytes, offset, length, sender, now);
    }
    if (length > config.mtu || validateIpv4(bytes, offset, length) !== PACKET_OK) {
      counters[peers.isPeer(sender) ? C.drop_malformed : C.drop_unknown_peer]++;
      return false;
    }
    const source = readU32(bytes, offset + 12);
    if (!peers.mayCarry(sender, source)) {
      counters[peers.isPeer(sender) ? C.drop_spoofed_source : C.drop_unknown_peer]++;
      return false;
    }
    peers.heardFrom(source, now);
    const destination = readU32(bytes, offset + 16);
    if (((destination & ownMask) >>> 0) !== ownNet) {
      counters[C.drop_not_for_us]++;
      return false;
    }
    if (!decrementTtl(bytes, offset)) {
      counters[C.drop_ttl_expired]++;
      return false;
    }
    counters[C.rx_packets]++;
    counters[C.rx_bytes] += length;
    return true;
  }

  /**
   * acceptFromPeer for an IPv6 packet: exactly one valid IPv6 packet, its source in the
   * sender's IPv6 subnet, its destination in ours, hop limit left (then decremented).
   */
  function acceptFromPeer6(
    bytes: Uint8Array,
    offset: number,
    length: number,
    sender: number,
    now: number,
  ): boolean {
    if (length > config.mtu || validateIpv6(bytes, offset, length) !== PACKET_OK) {
      counters[peers.isPeer(sender) ? C.drop_malformed_v6 : C.drop_unknown_peer]++;
      return false;
    }
    if (!peers.mayCarry6(sender, bytes, offset + 8)) {
      counters[peers.isPeer(sender) ? C.drop_spoofed_source_v6 : C.drop_unknown_peer]++;
      return false;
    }
    peers.heardFrom6(bytes, offset + 8, now);
    if (!ownNet6.contains(bytes, offset + 24)) {
      counters[C.drop_not_for_us_v6]++;
      return false;
    }
    if (!decrementHopLimit(bytes, offset)) {
      counters[C.drop_hop_limit_expired]++;
      return false;
    }
    counters[C.rx_packets]++;
    counters[C.rx_bytes] += length;
    return true;
  }

  /**
   * True when a read of `length` bytes into a `room`-byte buffer holds one whole packet. A
   * packet larger than the buffer (a device MTU raised past it) comes back cut short on this
   * kernel, and with its whole length on others: either way its bytes must not be sent.
   */
  function wholePacket(bytes: Uint8Array, offset: number, length: number, room: number) {
    if (length > room) return false;
    if (length < 6) return true; // routeFromTun counts it
    const version = bytes[offset] >>> 4;
    if (version === 4) return ((bytes[offset + 2] << 8) | bytes[offset + 3]) <= length;
    if (version === 6) return 40 + ((bytes[offset + 4] << 8) | bytes[offset + 5]) <= length;
    return true; // neither: routeFromTun counts it
  }

  /** Sends the first `accepted` batch slots with sendmmsg. */
  function sendBatch(accepted: number): void {
    let sent = 0;
    while (sent < accepted) {
      const n = tx.send(config.udpFd, sent, accepted - sent);
      if (n === SEND_BLOCKED) {
        counters[C.drop_queue_full] += accepted - sent;
        return;
      }
      if (n === SEND_FAILED) {
        // One bad destination fails the batch at that message: count it and go on.
        counters[C.send_errors]++;
        sent++;
        continue;
      }
      sent += n;
      counters[C.tx_packets] += n;
    }
  }

  /** TUN → peers, one packet per read. Returns the number of packets read. */
  function drainTun(): number {
    let accepted = 0;
    let read = 0;
    while (accepted < BATCH) {
      const offset = accepted * slotSize;
      const length = tun.read(txSlotPointers[accepted], slotSize);
      if (length === 0) break;
      read++;
      if (!wholePacket(txPackets, offset, length, slotSize)) {
        counters[C.drop_oversized]++;
        continue;
      }
      const owner = routeFromTun(txPackets, offset, length);
      if (owner === 0) continue;
      txAddress.setUint32(accepted * 16 + 4, owner, false);
      tx.setLength(accepted, length);
      counters[C.tx_bytes] += length;
      accepted++;
    }
    sendBatch(accepted);
    return read;
  }

  /**
   * TUN → peers with offloads: each read is a vnet header and a packet, possibly a TCP
   * super-packet that is cut into MTU-size segments and sent with one UDP_SEGMENT send
   * per ≤ 64 segments; ordinary packets gather in the sendmmsg batch.
   */
  function drainTunOffload(): number {
    let accepted = 0;
    let read = 0;
    while (read < BATCH) {
      const length = tun.read(readPointer, VNET_HDR_SIZE + 65_535);
      if (length === 0) break;
      read++;
      if (length > VNET_HDR_SIZE + 65_535 || length < VNET_HDR_SIZE) {
        counters[C.drop_oversized]++;
        continue;
      }
      const packet = readAt + VNET_HDR_SIZE;
      const packetLength = length - VNET_HDR_SIZE;
      readVnetHeader(txPackets, readAt, vnet);
      const gsoType = vnet.gsoType;
      if (gsoType === VNET_GSO_NONE || packetLength < 40) {
        if (vnet.flags & VNET_F_NEEDS_CSUM) {
          finishChecksum(txPackets, packet, packetLength, vnet.csumStart, vnet.csumOffset);
        }
        if (packetLength > slotSize) {
          counters[C.drop_oversized]++;
          continue;
        }
        const slot = accepted * slotSize;
        txPackets.copyWithin(slot, packet, packet + packetLength);
        const owner = routeFromTun(txPackets, slot, packetLength);
        if (owner === 0) continue;
        txAddress.setUint32(accepted * 16 + 4, owner, false);
        tx.setLength(accepted, packetLength);
        counters[C.tx_bytes] += packetLength;
        accepted++;
        if (accepted === BATCH) {
          sendBatch(accepted);
          accepted = 0;
        }
        continue;
      }
      const gsoSize = vnet.gsoSize;
      // A TCP super-packet whose IP version matches its GSO type, or a UDP one (USO) of
      // either version; anything else is not ours.
      const version = txPackets[packet] >>> 4;
      const tcpGso = (gsoType === VNET_GSO_TCPV4 && version === 4) ||
        (gsoType === VNET_GSO_TCPV6 && version === 6);
      const udpGso = gsoType === VNET_GSO_UDP_L4 && (version === 4 || version === 6);
      const owner = tcpGso || udpGso ? routeFromTun(txPackets, packet, packetLength) : 0;
      if (owner === 0) {
        if (!tcpGso && !udpGso) counters[version === 6 ? C.drop_malformed_v6 : C.drop_malformed]++;
        continue;
      }
      const segment = udpGso ? segmentUdp : segmentTcp;
      if (!segment(txPackets, packet, packetLength, gsoSize, segmentsAt, segmented)) {
        counters[version === 6 ? C.drop_malformed_v6 : C.drop_malformed]++;
        continue;
      }
      // Keep order with packets of the same flow already in the batch.
      sendBatch(accepted);
      accepted = 0;
      const perSend = Math.max(
        1,
        Math.min(MAX_GSO_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / segmented.segmentSize)),
      );
      for (let first = 0; first < segmented.count; first += perSend) {
        const count = Math.min(perSend, segmented.count - first);
        const offset = segmentsAt + first * segmented.segmentSize;
        const bytes = Math.min(
          count * segmented.segmentSize,
          segmented.total - first * segmented.segmentSize,
        );
        const result = segmenter!.send(owner, offset, bytes, segmented.segmentSize);
        if (result !== 0) {
          if (result === SEND_BLOCKED) counters[C.drop_queue_full] += count;
          else counters[C.send_errors]++;
          continue;
        }
        counters[C.tx_packets] += count;
      }
      counters[C.tx_bytes] += segmented.total;
    }
    sendBatch(accepted);
    return read;
  }

  /** Peers → TUN. Returns the number of datagrams received. */
  for (let i = 0; i < BATCH; i++) rx.prepareReceive(i);
  let rxUsed = 0;
  function drainUdp(): number {
    // recvmmsg rewrote the lengths of the slots it filled last time: reset just those.
    for (let i = 0; i < rxUsed; i++) rx.prepareReceive(i);
    const count = rx.receive(config.udpFd);
    rxUsed = count;
    const now = Date.now();
    for (let i = 0; i < count; i++) {
      const length = rx.receivedLength(i);
      const sender = rx.address(i);
      // A datagram larger than the slot arrives cut short (MSG_TRUNC): never a valid packet.
      if (rx.truncated(i) || length > rxSlot) {
        counters[C.drop_oversized]++;
        continue;
      }
      const offset = i * rxSlot;
      if (!coalescer) {
        if (!acceptFromPeer(rxPackets, offset, length, sender, now)) continue;
        if (!tun.write(rxSlotPointers[i], length)) counters[C.drop_queue_full]++;
        continue;
      }
      // GRO may have joined several datagrams of `segment` bytes each (the last may be
      // shorter); every one must hold exactly one inner packet, and counts once.
      const segment = rx.groSegmentSize(i) || length;
      const end = offset + length;
      for (let at = offset; at < end; at += segment) {
        const size = Math.min(segment, end - at);
        if (acceptFromPeer(rxPackets, at, size, sender, now)) coalescer.add(at, size);
      }
    }
    coalescer?.flush();
    return count;
  }

  const fromTun = offload ? drainTunOffload : drainTun;
  const poller = new Poller([config.tunFd, config.udpFd]);
  Atomics.store(control, CONTROL_STATE, DATA_PATH_RUNNING);
  const busyPoll = new BusyPoll(config.busyPollMs);
  while (Atomics.load(control, CONTROL_STOP) === 0) {
    const spinning = busyPoll.spinning(performance.now());
    const ready = poller.wait(spinning ? 0 : POLL_TIMEOUT_MS);
    if (ready === 0) {
      if (spinning) poller.pause();
      continue;
    }
    const bytesBefore = counters[C.tx_bytes] + counters[C.rx_bytes];
    // Under steady traffic this loop may never run dry: it looks at the stop flag each turn.
    let moved = 1;
    while (moved > 0 && Atomics.load(control, CONTROL_STOP) === 0) moved = fromTun() + drainUdp();
    busyPoll.burst(counters[C.tx_bytes] + counters[C.rx_bytes] - bytesBefore, performance.now());
  }
  // Keep the buffers the kernel wrote into alive until the very end.
  void tx.headers;
  void rx.headers;
}

// Worker entry point.
serveWorker(runDataPath);
