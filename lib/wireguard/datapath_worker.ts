/**
 * The userspace WireGuard data path, on a Worker of its own (as the udp backend's, see
 * lib/udp/datapath_worker.ts): a TUN device and a UDP socket, with the WireGuard Device
 * (lib/wireguard/device.ts) in between.
 *
 *   TUN → cryptokey routing (the peer whose AllowedIPs hold the destination) → encrypt in
 *         place (type-4 message) → UDP to the peer's endpoint
 *   UDP → Device.handleDatagram: handshakes answered, data decrypted in place, the inner
 *         source checked against the sender's AllowedIPs → TUN
 *
 * Loop: one blocking poll() on both descriptors, then drain both until they would block,
 * BATCH packets per sendmmsg()/recvmmsg(); the Device's timers (handshake retries,
 * rekeying, keepalives) tick every TICK_MS. Buffers, iovecs and pointers are made once:
 * the Device encrypts and decrypts in place, so nothing is allocated per packet.
 *
 * Slot layout (every batch slot): [16 B header room | inner packet ≤ MTU | 32 B tail room]:
 * the type-4 message is written over the whole slot from its first byte (Device module
 * comment has the arithmetic).
 *
 * With offloads (probed at start) the TUN hands over TCP super-packets (vnet header, TSO4):
 * each is cut into MTU-size segments, each segment encrypted into its own data message, and
 * the equal-size messages leave with one UDP_SEGMENT send per ≤ 64; GRO'd arrivals are split
 * at the kernel's segment size, decrypted one by one and joined again into one TUN write
 * (lib/udp/offload.ts). Every datagram on the wire is still one ordinary WireGuard message.
 *
 * The agent talks to the loop through shared memory only (the loop never yields to the
 * event loop): the peer set arrives in a Mailbox, counters and per-peer status go back.
 */
import {
  CONTROL_STATE,
  CONTROL_STOP,
  DATA_PATH_RUNNING,
  serveWorker,
} from "../udp/worker_control.ts";
import { pointerInto } from "../../ffi/memory.ts";
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
  TcpCoalescer,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_HDR_SIZE,
  type VnetHeader,
} from "../udp/offload.ts";
import { PACKET_OK, readU32, validateIpv4 } from "../udp/packet.ts";
import {
  COUNTER_NAMES,
  Device,
  RECEIVE_DELIVER,
  RECEIVE_REPLY,
  receiveResult,
  SEND_READY,
  sendResult,
  SLOT_HEADROOM,
  SLOT_TAILROOM,
} from "./device.ts";
import { BusyPoll } from "../udp/busy_poll.ts";
import { Mailbox } from "./mailbox.ts";
import { defaultCryptoProvider } from "./crypto.ts";

/** A peer as the agent wants it configured (the whole set is sent each time). */
export interface PeerConfig {
  readonly publicKey: string;
  /** Host-order IPv4 and port of `PublicIP:ListenPort`. */
  readonly endpointIp: number;
  readonly endpointPort: number;
  readonly allowedIps: string[];
  readonly presharedKey?: string;
  /** Seconds; 0: off. */
  readonly persistentKeepalive: number;
}

/** What the data path says about one peer. */
export interface PeerReport {
  /** Epoch ms of the last completed handshake; 0: none yet. */
  readonly lastHandshake: number;
  /** Epoch ms the last authenticated message came from the peer; 0: never. */
  readonly lastHeard: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly endpoint?: string;
}

export interface StatusReport {
  readonly peers: Record<string, PeerReport>;
  /** Peers heard from for the first time, ever (grows). */
  readonly firstContacts: number;
  /** Peers the Device refused (a key whose Diffie-Hellman with ours is zero). */
  readonly errors: string[];
}

/** What the agent hands the Worker. */
export interface WgDataPathConfig {
  readonly tunFd: number;
  readonly udpFd: number;
  /** Base64, as in the key file. */
  readonly privateKey: string;
  readonly mtu: number;
  readonly offload: boolean;
  /** Busy-poll window after traffic, ms (0: always sleep in poll). */
  readonly busyPollMs: number;
  /** Rekey time of sessions we initiate, ms (WireGuard's 120 s unless a test shortens it). */
  readonly rekeyAfterMs?: number;
  /** Float64 per name in WG_COUNTERS. */
  readonly counters: SharedArrayBuffer;
  /** Int32Array: [0] stop request, [1] state (DATA_PATH_* of lib/udp/datapath_worker.ts). */
  readonly control: SharedArrayBuffer;
  /** Mailbox: PeerConfig[] from the agent. */
  readonly peers: SharedArrayBuffer;
  /** Mailbox: StatusReport to the agent. */
  readonly status: SharedArrayBuffer;
}

/** The Device's drop reasons (its counters before "data_received"). */
const DEVICE_DROPS = COUNTER_NAMES.slice(0, COUNTER_NAMES.indexOf("data_received"))
  .filter((name) => name !== "cookie_sent");
/** The Device's traffic counters, shown as wg_<name>. */
const DEVICE_EVENTS = [
  ...COUNTER_NAMES.slice(COUNTER_NAMES.indexOf("data_received")),
  "cookie_sent",
] as const;

/**
 * The counters the agent reads: the data path's own, then the Device's drops as
 * drop_<reason> and its handshake and keepalive events as wg_<name>.
 */
export const WG_COUNTERS = [
  "tx_packets", // TUN → peers: data messages sent
  "tx_bytes", // inner bytes of those
  "rx_packets", // peers → TUN: inner packets delivered
  "rx_bytes",
  "drop_oversized", // larger than the buffer it was read into
  "drop_queue_full", // socket or TUN would block
  "drop_bad_inner", // decrypted, but not one valid IPv4 packet (bad header checksum)
  "send_errors",
  ...DEVICE_DROPS.map((name) => `drop_${name}`),
  ...DEVICE_EVENTS.map((name) => `wg_${name}`),
] as const;

const C = Object.fromEntries(WG_COUNTERS.map((name, i) => [name, i])) as Record<string, number>;

export {
  CONTROL_STATE,
  CONTROL_STOP,
  DATA_PATH_FAILED,
  DATA_PATH_RUNNING,
  DATA_PATH_STARTING,
  DATA_PATH_STOPPED,
} from "../udp/worker_control.ts";

const BATCH = 64;
const POLL_TIMEOUT_MS = 100;
/** How often the Device's timers run (WireGuard's own timers are ≥ 100 ms apart). */
const TICK_MS = 100;
const STATUS_EVERY_MS = 1_000;
const GRO_SLOT = 65_536;
const MAX_GSO_SEGMENTS = 64;
const MAX_UDP_PAYLOAD = 65_507;
/** Room for the messages of one UDP_SEGMENT send (≤ 65,507 bytes) plus one. */
const WIRE_REGION = 65_536 + 2_048;
/** Room for a super-packet's segments (≤ 64 KB of payload plus headers per segment). */
const SEGMENTS_REGION = 65_535 + 128 * 80;

/** Runs the loop until the stop flag is set. Throws on a fatal error. */
export function runWgDataPath(config: WgDataPathConfig): void {
  const tun = new TunQueue(config.tunFd);
  const control = new Int32Array(config.control);
  const counters = new Float64Array(config.counters);
  const peerBox = new Mailbox(config.peers);
  const statusBox = new Mailbox(config.status);
  const offload = config.offload;
  const mtu = config.mtu;
  const slotSize = Math.ceil((SLOT_HEADROOM + Math.max(mtu, 1500) + SLOT_TAILROOM + 16) / 64) *
    64;
  const readRoom = slotSize - SLOT_HEADROOM - SLOT_TAILROOM;

  // Control messages (handshakes, keepalives, cookie replies, held packets): one slot.
  const control1 = new MessageVector(1, slotSize + 256);
  const controlPackets = control1.packets;
  const transmit = (
    bytes: Uint8Array,
    offset: number,
    length: number,
    ip: number,
    port: number,
  ) => {
    if (length > controlPackets.length) {
      counters[C.drop_oversized]++;
      return;
    }
    controlPackets.set(bytes.subarray(offset, offset + length), 0);
    control1.setAddress(0, ip, port);
    control1.setLength(0, length);
    const sent = control1.send(config.udpFd, 0, 1);
    if (sent === SEND_BLOCKED) counters[C.drop_queue_full]++;
    else if (sent === SEND_FAILED) counters[C.send_errors]++;
  };
  const device = new Device({
    privateKey: config.privateKey,
    transmit,
    mtu,
    crypto: defaultCryptoProvider(),
    ...(config.rekeyAfterMs ? { rekeyAfterMs: config.rekeyAfterMs } : {}),
  });
  const send = sendResult();
  const receive = receiveResult();

  // Batches. tx: slots, then (offload) the super-packet read, the wire and segment regions.
  const readAt = BATCH * slotSize;
  const wireAt = readAt + VNET_HDR_SIZE + 65_535;
  const segmentsAt = wireAt + WIRE_REGION;
  const tx = new MessageVector(
    BATCH,
    slotSize,
    offload ? VNET_HDR_SIZE + 65_535 + WIRE_REGION + SEGMENTS_REGION : 0,
  );
  const rxSlot = offload ? GRO_SLOT : slotSize;
  const rx = new MessageVector(
    BATCH,
    rxSlot,
    offload ? VNET_HDR_SIZE + 65_535 : 0,
    offload ? 32 : 0,
  );
  const txPackets = tx.packets;
  const rxPackets = rx.packets;
  for (let i = 0; i < BATCH; i++) tx.setAddress(i, 0, 0);
  const txAddress = tx.addressView;
  const txReadPointers: Deno.PointerValue[] = [];
  const rxInnerPointers: Deno.PointerValue[] = [];
  for (let i = 0; i < BATCH; i++) {
    txReadPointers.push(pointerInto(txPackets, i * slotSize + SLOT_HEADROOM));
    rxInnerPointers.push(pointerInto(rxPackets, i * rxSlot + SLOT_HEADROOM));
  }
  const readPointer = offload ? pointerInto(txPackets, readAt) : null;
  const segmenter = offload ? new SegmentSender(config.udpFd, txPackets, 0) : undefined;
  const segmented: Segmented = { count: 0, segmentSize: 0, total: 0 };
  const vnet: VnetHeader = {
    flags: 0,
    gsoType: 0,
    headerLength: 0,
    gsoSize: 0,
    csumStart: 0,
    csumOffset: 0,
  };
  const runAt = BATCH * rxSlot;
  const runPointer = offload ? pointerInto(rxPackets, runAt) : null;
  const coalescer = offload
    ? new TcpCoalescer(rxPackets, runAt, (_start, length) => {
      if (!tun.write(runPointer, length)) counters[C.drop_queue_full]++;
    })
    : undefined;

  // ------------------------------------------------------------------ peers and status
  const applied = new Map<string, string>();
  const errors = new Map<string, string>();
  function applyPeers(list: PeerConfig[]): void {
    const wanted = new Set(list.map((peer) => peer.publicKey));
    for (const peer of [...device.peers()]) {
      if (!wanted.has(peer.name)) {
        device.removePeer(peer.publicKey);
        applied.delete(peer.name);
      }
    }
    for (const key of [...errors.keys()]) if (!wanted.has(key)) errors.delete(key);
    for (const peer of list) {
      const text = JSON.stringify(peer);
      if (applied.get(peer.publicKey) === text) continue;
      const known = device.peer(peer.publicKey) !== undefined;
      try {
        const added = device.addPeer({
          publicKey: peer.publicKey,
          endpoint: peer.endpointIp,
          endpointPort: peer.endpointPort,
          allowedIps: peer.allowedIps,
          // Absent means all zeros, as `wg set … preshared-key /dev/null` would make it.
          presharedKey: peer.presharedKey ?? new Uint8Array(32),
          persistentKeepalive: peer.persistentKeepalive,
        });
        applied.set(peer.publicKey, text);
        errors.delete(peer.publicKey);
        // A new peer gets a handshake at once, not at the first packet: after this agent
        // restarts, its peers still hold sessions it has forgotten, and would keep sending
        // on them (dropped here as unknown_index) until their own timers gave up (15 s).
        if (!known) device.initiateHandshake(added);
      } catch (error) {
        errors.set(peer.publicKey, `${peer.publicKey}: ${(error as Error).message}`);
      }
    }
  }

  const heard = new Map<string, { rx: number; at: number }>();
  let firstContacts = 0;
  function publishStatus(): void {
    const nowMs = Date.now();
    const nowClock = performance.now();
    const peers: Record<string, PeerReport> = {};
    for (const peer of device.peers()) {
      const stats = peer.stats;
      let seen = heard.get(peer.name);
      if (!seen) heard.set(peer.name, seen = { rx: 0, at: 0 });
      if (stats.rxBytes > seen.rx) {
        if (seen.at === 0) firstContacts++;
        seen.rx = stats.rxBytes;
        seen.at = nowMs;
      }
      const endpoint = device.endpointOf(peer);
      peers[peer.name] = {
        lastHandshake: Number.isFinite(stats.lastHandshake)
          ? Math.round(nowMs - (nowClock - stats.lastHandshake))
          : 0,
        lastHeard: seen.at,
        rxBytes: stats.rxBytes,
        txBytes: stats.txBytes,
        ...(endpoint ? { endpoint } : {}),
      };
    }
    for (const name of [...heard.keys()]) if (!device.peer(name)) heard.delete(name);
    statusBox.write({ peers, firstContacts, errors: [...errors.values()] } as StatusReport);
  }

  const deviceCounters = device.counters as Record<string, number>;
  function copyDeviceCounters(): void {
    for (const name of DEVICE_DROPS) counters[C[`drop_${name}`]] = deviceCounters[name];
    for (const name of DEVICE_EVENTS) counters[C[`wg_${name}`]] = deviceCounters[name];
  }

  // ------------------------------------------------------------------ TUN → peers

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
        counters[C.send_errors]++;
        sent++;
        continue;
      }
      sent += n;
      counters[C.tx_packets] += n;
    }
  }

  /**
   * Encrypts the packet at slot `accepted` (its inner packet at + SLOT_HEADROOM) and
   * readies it for the batch: true when it goes out with the batch.
   */
  function encryptSlot(accepted: number, length: number): boolean {
    const at = accepted * slotSize + SLOT_HEADROOM;
    if (device.encryptPacket(txPackets, at, length, send) !== SEND_READY) return false;
    const a = accepted * 16;
    txAddress.setUint16(a + 2, send.port, false);
    txAddress.setUint32(a + 4, send.ip, false);
    tx.setLength(accepted, send.length);
    counters[C.tx_bytes] += length;
    return true;
  }

  /** TUN → peers, one packet per read. Returns the number of packets read. */
  function drainTun(): number {
    let accepted = 0;
    let read = 0;
    while (accepted < BATCH) {
      const length = tun.read(txReadPointers[accepted], readRoom);
      if (length === 0) break;
      read++;
      if (
        length >= readRoom || !wholeIpv4(txPackets, accepted * slotSize + SLOT_HEADROOM, length)
      ) {
        counters[C.drop_oversized]++;
        continue;
      }
      if (encryptSlot(accepted, length)) accepted++;
    }
    sendBatch(accepted);
    return read;
  }

  /**
   * Sends the messages at [runStart, runEnd) of the wire region, each `size` bytes but
   * the last, to ip:port with one UDP_SEGMENT send.
   */
  function sendRun(
    runStart: number,
    runEnd: number,
    size: number,
    count: number,
    ip: number,
    port: number,
  ) {
    if (count === 0) return;
    const result = count === 1
      ? segmenter!.send(ip, runStart, runEnd - runStart, runEnd - runStart, port)
      : segmenter!.send(ip, runStart, runEnd - runStart, size, port);
    if (result === 0) counters[C.tx_packets] += count;
    else if (result === SEND_BLOCKED) counters[C.drop_queue_full] += count;
    else counters[C.send_errors]++;
  }

  /** TUN → peers with offloads: super-packets cut, encrypted per segment, sent with GSO. */
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
      if (vnet.gsoType === VNET_GSO_NONE || packetLength < 40) {
        if (vnet.flags & VNET_F_NEEDS_CSUM) {
          finishChecksum(txPackets, packet, packetLength, vnet.csumStart, vnet.csumOffset);
        }
        if (packetLength > readRoom) {
          counters[C.drop_oversized]++;
          continue;
        }
        txPackets.copyWithin(accepted * slotSize + SLOT_HEADROOM, packet, packet + packetLength);
        if (encryptSlot(accepted, packetLength)) accepted++;
        if (accepted === BATCH) {
          sendBatch(accepted);
          accepted = 0;
        }
        continue;
      }
      if (vnet.gsoType !== VNET_GSO_TCPV4 || txPackets[packet] >>> 4 !== 4) {
        deviceCounters.malformed++; // the Device's counter: copied out each tick
        continue;
      }
      const peer = device.route(readU32(txPackets, packet + 16));
      if (!peer) {
        deviceCounters.no_route++;
        continue;
      }
      if (!segmentTcp(txPackets, packet, packetLength, vnet.gsoSize, segmentsAt, segmented)) {
        deviceCounters.malformed++; // the Device's counter: copied out each tick
        continue;
      }
      // Keep order with packets of the same flow already in the batch.
      sendBatch(accepted);
      accepted = 0;
      counters[C.tx_bytes] += segmented.total;
      // Each segment becomes one message at its place in the wire region; runs of
      // equal-size messages to one endpoint leave in one UDP_SEGMENT send.
      const size = segmented.segmentSize;
      let from = segmentsAt;
      let cursor = wireAt;
      let runCount = 0;
      let runSize = 0;
      let runIp = 0;
      let runPort = 0;
      for (let i = 0; i < segmented.count; i++) {
        const segmentLength = Math.min(size, segmented.total - i * size);
        txPackets.copyWithin(cursor + SLOT_HEADROOM, from, from + segmentLength);
        from += segmentLength;
        const action = device.encryptTo(
          peer,
          txPackets,
          cursor + SLOT_HEADROOM,
          segmentLength,
          send,
        );
        if (action !== SEND_READY) {
          // Held for a handshake or dropped (counted): send what came before.
          sendRun(wireAt, cursor, runSize, runCount, runIp, runPort);
          cursor = wireAt;
          runCount = 0;
          continue;
        }
        if (runCount === 0) {
          runSize = send.length;
          runIp = send.ip;
          runPort = send.port;
        }
        cursor += send.length;
        runCount++;
        const full = runCount >= MAX_GSO_SEGMENTS ||
          cursor - wireAt + runSize > MAX_UDP_PAYLOAD || send.length !== runSize;
        if (full || i === segmented.count - 1) {
          sendRun(wireAt, cursor, runSize, runCount, runIp, runPort);
          cursor = wireAt;
          runCount = 0;
        }
      }
    }
    sendBatch(accepted);
    return read;
  }

  // ------------------------------------------------------------------ peers → TUN
  for (let i = 0; i < BATCH; i++) rx.prepareReceive(i);
  let rxUsed = 0;

  /** One datagram through the Device; a delivered packet goes to the TUN or the coalescer. */
  function handle(at: number, length: number, ip: number, port: number, slot: number): void {
    const action = device.handleDatagram(rxPackets, at, length, ip, port, receive);
    if (action === RECEIVE_DELIVER) {
      const inner = receive.offset;
      const innerLength = receive.length;
      if (validateIpv4(rxPackets, inner, innerLength) !== PACKET_OK) {
        counters[C.drop_bad_inner]++;
        return;
      }
      counters[C.rx_packets]++;
      counters[C.rx_bytes] += innerLength;
      if (coalescer) coalescer.add(inner, innerLength);
      else if (!tun.write(rxInnerPointers[slot], innerLength)) counters[C.drop_queue_full]++;
    } else if (action === RECEIVE_REPLY) {
      transmit(rxPackets, receive.offset, receive.length, receive.ip, receive.port);
    }
  }

  function drainUdp(): number {
    for (let i = 0; i < rxUsed; i++) rx.prepareReceive(i);
    const count = rx.receive(config.udpFd);
    rxUsed = count;
    const addresses = rx.addressView;
    for (let i = 0; i < count; i++) {
      const length = rx.receivedLength(i);
      if (rx.truncated(i) || length > rxSlot) {
        counters[C.drop_oversized]++;
        continue;
      }
      const ip = addresses.getUint32(i * 16 + 4, false);
      const port = addresses.getUint16(i * 16 + 2, false);
      const offset = i * rxSlot;
      if (!coalescer) {
        handle(offset, length, ip, port, i);
        continue;
      }
      const segment = rx.groSegmentSize(i) || length;
      const end = offset + length;
      for (let at = offset; at < end; at += segment) {
        handle(at, Math.min(segment, end - at), ip, port, i);
      }
    }
    coalescer?.flush();
    return count;
  }

  // ------------------------------------------------------------------ the loop
  const fromTun = offload ? drainTunOffload : drainTun;
  const poller = new Poller([config.tunFd, config.udpFd]);
  let nextTick = 0;
  let nextStatus = 0;
  applyPeers(peerBox.read<PeerConfig[]>() ?? []);
  publishStatus();
  Atomics.store(control, CONTROL_STATE, DATA_PATH_RUNNING);
  const busyPoll = new BusyPoll(config.busyPollMs);
  while (Atomics.load(control, CONTROL_STOP) === 0) {
    const now = performance.now();
    if (now >= nextTick) {
      nextTick = now + TICK_MS;
      const peers = peerBox.read<PeerConfig[]>();
      if (peers) applyPeers(peers);
      device.tick();
      copyDeviceCounters();
      if (now >= nextStatus) {
        nextStatus = now + STATUS_EVERY_MS;
        publishStatus();
      }
    }
    const spinning = busyPoll.spinning(now);
    const ready = poller.wait(spinning ? 0 : POLL_TIMEOUT_MS);
    if (ready === 0) {
      if (spinning) poller.pause();
      continue;
    }
    const bytesBefore = counters[C.tx_bytes] + counters[C.rx_bytes];
    let moved = 1;
    while (moved > 0 && Atomics.load(control, CONTROL_STOP) === 0) {
      moved = fromTun() + drainUdp();
      if (performance.now() >= nextTick) break; // timers and the peer set wait no longer
    }
    busyPoll.burst(counters[C.tx_bytes] + counters[C.rx_bytes] - bytesBefore, performance.now());
  }
  copyDeviceCounters();
  publishStatus();
  void tx.headers;
  void rx.headers;
  void control1.headers;
}

/** True when `length` bytes at `offset` hold one whole IPv4 packet (TUN reads are cut). */
function wholeIpv4(bytes: Uint8Array, offset: number, length: number): boolean {
  if (length < 20 || bytes[offset] >>> 4 !== 4) return true; // the Device counts it
  return ((bytes[offset + 2] << 8) | bytes[offset + 3]) <= length;
}

// Worker entry point.
serveWorker(runWgDataPath);
