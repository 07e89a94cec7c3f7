/**
 * A WireGuard device as a transport-agnostic state machine: peers by public key,
 * cryptokey routing, handshakes, sessions, timers and DoS defences. It owns no socket,
 * no TUN and no timer: the caller feeds it datagrams and inner packets, sends what it
 * says to send, and calls `tick()` now and then (every 100–250 ms is plenty).
 *
 * Buffer layout for the data path (no copy, nothing allocated per packet):
 *
 *   outbound:  [ 16 B headroom | inner packet (length) | ≤ 15 B padding + 16 B tag room ]
 *              ^ offset − 16     ^ offset
 *   encryptTo() writes the type-4 header into the headroom, pads and encrypts in place
 *   and appends the tag: the message is buf[offset − 16 .. offset − 16 + result.length].
 *   So a slot needs 16 bytes in front of the packet and 32 after it (TRANSPORT_OVERHEAD
 *   + PADDING_MULTIPLE − 1 in all, see SLOT_HEADROOM and SLOT_TAILROOM).
 *
 *   inbound:   [ type-4 message: 16 B header | ciphertext | 16 B tag ]
 *   handleDatagram() decrypts in place; the inner packet is buf[result.offset ..
 *   result.offset + result.length] (result.offset = offset + 16), trimmed to the IPv4
 *   total length, so padding never reaches the TUN.
 *
 * Unsolicited messages (handshake initiations and retries, keepalives, packets held
 * during a handshake) go out through `options.transmit`, synchronously, from inside
 * encryptTo(), handleDatagram() or tick(). The underlay is IPv4: addresses are 32-bit
 * numbers in host order, as ffi/socket.ts uses them.
 */
import { AllowedIps, parsePrefix } from "./allowed_ips.ts";
import {
  KEEPALIVE_TIMEOUT,
  MAX_STAGED_PACKETS,
  MAX_TIMER_HANDSHAKES,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  UNDER_LOAD_AFTER_TIME,
} from "./constants.ts";
import { CookieChecker } from "./cookie.ts";
import { type CryptoProvider, defaultCryptoProvider, TAG_SIZE } from "./crypto.ts";
import { encodeKey, parseKey } from "./keys.ts";
import {
  COOKIE_RECEIVER,
  COOKIE_REPLY_SIZE,
  INITIATION_SENDER,
  INITIATION_SIZE,
  KEEPALIVE_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  paddingFor,
  readCounter,
  readU32Le,
  RESPONSE_RECEIVER,
  RESPONSE_SIZE,
  TRANSPORT_COUNTER,
  TRANSPORT_HEADER_SIZE,
  TRANSPORT_RECEIVER,
  writeCounter,
  writeU32Le,
} from "./messages.ts";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  type Handshake,
  INITIATION_BAD_STATIC,
  INITIATION_BAD_TIMESTAMP,
  INITIATION_FLOOD,
  INITIATION_OK,
  INITIATION_REPLAY,
  type InitiationResult,
  StaticIdentity,
  TIMESTAMP_SIZE,
  writeTai64n,
} from "./noise.ts";
import { Keypair, Peer } from "./peer.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { formatIp4, parseIp4 } from "../ip.ts";

/** Room a caller leaves in front of an inner packet for the type-4 header. */
export const SLOT_HEADROOM = TRANSPORT_HEADER_SIZE;
/** Room a caller leaves after an inner packet: up to 15 bytes of padding and the tag. */
export const SLOT_TAILROOM = 15 + TAG_SIZE;
/** Bytes a data message adds to its (padded) inner packet: header and tag. */
export const TRANSPORT_OVERHEAD = TRANSPORT_HEADER_SIZE + TAG_SIZE;

/** handleDatagram: nothing to do for the caller (consumed, or output went via transmit). */
export const RECEIVE_DONE = 0;
/** handleDatagram: write buf[result.offset, +result.length] (an inner IP packet) to the TUN. */
export const RECEIVE_DELIVER = 1;
/** handleDatagram: send buf[result.offset, +result.length] to result.ip:result.port. */
export const RECEIVE_REPLY = 2;
/** handleDatagram / encryptTo: dropped; result.reason says why (and it was counted). */
export const DROP = -1;
/** encryptTo: send buf[result.offset, +result.length] to result.ip:result.port. */
export const SEND_READY = 1;
/** encryptTo: held (copied) until the handshake that was started completes. */
export const SEND_QUEUED = 2;

/** Everything the device counts; drop reasons first. */
export const COUNTER_NAMES = [
  // Drops (each also sets result.reason):
  "malformed",
  "bad_mac",
  "unknown_index",
  "key_expired",
  "decrypt_failed",
  "replayed",
  "not_allowed_source",
  "unknown_peer",
  "handshake_failed",
  "handshake_rate_limited",
  "cookie_sent",
  "no_endpoint",
  "no_route",
  "no_room",
  "staged_overflow",
  "handshake_timeout",
  // Traffic:
  "data_received",
  "data_sent",
  "keepalives_received",
  "keepalives_sent",
  "initiations_sent",
  "responses_sent",
  "handshakes_completed",
  "cookie_replies_received",
  "endpoint_changes",
] as const;
export type CounterName = typeof COUNTER_NAMES[number];
/** A drop reason: one of the counters before "data_received". */
export type DropReason = CounterName;

/** Where handleDatagram() puts its answer. Reuse one per loop: it is overwritten each call. */
export interface ReceiveResult {
  /** RECEIVE_DONE, RECEIVE_DELIVER, RECEIVE_REPLY or DROP (also the return value). */
  action: number;
  offset: number;
  length: number;
  /** Destination of a reply (host-order IPv4 and port). */
  ip: number;
  port: number;
  /** The authenticated sender, when known. */
  peer: Peer | undefined;
  reason: DropReason | undefined;
}

/** Where encryptTo() puts its answer. */
export interface SendResult {
  /** SEND_READY, SEND_QUEUED or DROP (also the return value). */
  action: number;
  offset: number;
  length: number;
  ip: number;
  port: number;
  reason: DropReason | undefined;
}

/** A fresh ReceiveResult to reuse. */
export function receiveResult(): ReceiveResult {
  return { action: 0, offset: 0, length: 0, ip: 0, port: 0, peer: undefined, reason: undefined };
}

/** A fresh SendResult to reuse. */
export function sendResult(): SendResult {
  return { action: 0, offset: 0, length: 0, ip: 0, port: 0, reason: undefined };
}

/** Sends one datagram; `bytes` is only valid during the call (copy it to keep it). */
export type Transmit = (
  bytes: Uint8Array,
  offset: number,
  length: number,
  ip: number,
  port: number,
) => void;

export interface DeviceOptions {
  /** Our private key: 32 bytes or base64 (as `wg genkey` writes it). */
  privateKey: Uint8Array | string;
  /** Sends control messages and held packets (handshakes, keepalives). */
  transmit: Transmit;
  /** Monotonic milliseconds; default performance.now. Tests drive time through it. */
  clock?: () => number;
  /**
   * Milliseconds since the Unix epoch for TAI64N timestamps; default: the wall clock at
   * construction advanced by `clock`, so a driven clock moves timestamps too.
   */
  wallClock?: () => number;
  crypto?: CryptoProvider;
  /** The TUN MTU: padding never takes a packet past it (default 1420). */
  mtu?: number;
  /**
   * Handshake messages (types 1 and 2) per second beyond which the device counts as
   * under load and demands cookies (mac2) for the next second. Default 128.
   */
  underLoadThreshold?: number;
  /**
   * Milliseconds after which the initiator of a session starts a new handshake; default
   * WireGuard's REKEY_AFTER_TIME (120 s). Shorter only to exercise rekeying in tests.
   */
  rekeyAfterMs?: number;
}

export interface PeerOptions {
  /** The peer's public key: 32 bytes or base64. */
  publicKey: Uint8Array | string;
  /** Optional preshared key (32 bytes or base64); none means all zeros, as in WireGuard. */
  presharedKey?: Uint8Array | string;
  /** "192.0.2.1:51820" or a host-order IPv4 number with `endpointPort`. */
  endpoint?: string | number;
  endpointPort?: number;
  /** Inner source/destination prefixes this peer owns, "10.10.1.0/24". */
  allowedIps?: string[];
  /** Seconds between keepalives sent even when idle (0 or absent: off). */
  persistentKeepalive?: number;
}

interface IndexEntry {
  readonly peer: Peer;
  /** Set once the index names a session; undefined while it names a handshake. */
  keypair: Keypair | undefined;
}

/** A WireGuard device: see the module comment for how a data path drives it. */
export class Device {
  readonly crypto: CryptoProvider;
  readonly identity: StaticIdentity;
  /** Counters by name; drops by reason. Read freely; the device only increments them. */
  readonly counters: Record<CounterName, number>;
  readonly allowedIps: AllowedIps<Peer> = new AllowedIps<Peer>();

  readonly #transmit: Transmit;
  readonly #clock: () => number;
  readonly #rekeyAfterMs: number;
  readonly #wallClock: () => number;
  readonly #mtu: number;
  readonly #underLoadThreshold: number;
  readonly #checker: CookieChecker;
  readonly #limiter = new RateLimiter();
  readonly #peers = new Map<string, Peer>();
  /** Receiver index (as a signed 32-bit number) → what it names. */
  readonly #indices = new Map<number, IndexEntry>();

  #underLoadUntil = -Infinity;
  #loadWindowStart = -Infinity;
  #loadWindowCount = 0;
  #lastSweep = -Infinity;
  #lastTimestampMs = -Infinity;

  // Scratch, made once.
  readonly #handshakeOut = new Uint8Array(INITIATION_SIZE);
  readonly #stagedOut = new Uint8Array(SLOT_HEADROOM + 65_535 + SLOT_TAILROOM);
  readonly #timestamp = new Uint8Array(TIMESTAMP_SIZE);
  readonly #source = new Uint8Array(6);
  readonly #index = new Uint8Array(4);
  readonly #initiation: InitiationResult = { status: 0, handshake: undefined };
  readonly #ownerOf = new Map<Handshake, Peer>();

  constructor(options: DeviceOptions) {
    this.crypto = options.crypto ?? defaultCryptoProvider();
    this.identity = new StaticIdentity(this.crypto, parseKey(options.privateKey, "private key"));
    this.#transmit = options.transmit;
    this.#clock = options.clock ?? (() => performance.now());
    this.#rekeyAfterMs = options.rekeyAfterMs ?? REKEY_AFTER_TIME;
    const wallStart = Date.now();
    const clockStart = this.#clock();
    this.#wallClock = options.wallClock ?? (() => wallStart + (this.#clock() - clockStart));
    this.#mtu = options.mtu ?? 1420;
    this.#underLoadThreshold = options.underLoadThreshold ?? 128;
    this.#checker = new CookieChecker(this.crypto, this.identity.publicKey);
    this.counters = Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as Record<
      CounterName,
      number
    >;
  }

  /** Our public key, base64. */
  get publicKey(): string {
    return encodeKey(this.identity.publicKey);
  }

  /**
   * Adds a peer, or reconfigures the one with that key (given fields only; a given
   * allowedIps list replaces the old one), and returns it. Throws on invalid keys,
   * endpoints or prefixes, naming the value.
   */
  addPeer(options: PeerOptions): Peer {
    const publicKey = parseKey(options.publicKey, "peer public key");
    const name = encodeKey(publicKey);
    let peer = this.#peers.get(name);
    if (!peer) {
      peer = new Peer(this.crypto, this.identity, publicKey, name);
      if (!peer.handshake.staticStaticValid) {
        throw new Error(
          `Peer public key ${name} is not usable (its Diffie-Hellman with ours is zero): ` +
            "check the key",
        );
      }
      this.#peers.set(name, peer);
      this.#ownerOf.set(peer.handshake, peer);
    }
    if (options.presharedKey !== undefined) {
      peer.handshake.presharedKey.set(parseKey(options.presharedKey, "preshared key"));
    }
    if (options.endpoint !== undefined) {
      this.setEndpoint(peer, options.endpoint, options.endpointPort);
    }
    if (options.allowedIps) {
      // As `wg set … allowed-ips`: the list replaces the peer's previous one.
      const nets = options.allowedIps.map(parsePrefix);
      this.allowedIps.removeValue(peer);
      for (const net of nets) this.allowedIps.insert(net.ip, net.prefixLen, peer);
    }
    if (options.persistentKeepalive !== undefined) {
      peer.persistentKeepalive = Math.max(0, options.persistentKeepalive) * 1000;
      if (peer.persistentKeepalive > 0) {
        peer.persistentKeepaliveAt = this.#clock() + peer.persistentKeepalive;
      }
    }
    return peer;
  }

  /** Removes a peer, its routes, sessions and held packets. */
  removePeer(publicKey: Uint8Array | string): boolean {
    const name = encodeKey(parseKey(publicKey, "peer public key"));
    const peer = this.#peers.get(name);
    if (!peer) return false;
    this.#zeroAll(peer);
    this.allowedIps.removeValue(peer);
    this.#peers.delete(name);
    this.#ownerOf.delete(peer.handshake);
    return true;
  }

  /** The peer with this public key. */
  peer(publicKey: Uint8Array | string): Peer | undefined {
    return this.#peers.get(encodeKey(parseKey(publicKey, "peer public key")));
  }

  /** Every peer. */
  peers(): IterableIterator<Peer> {
    return this.#peers.values();
  }

  /** Sets where a peer is reached: "ip:port", or a host-order IPv4 number and a port. */
  setEndpoint(peer: Peer, endpoint: string | number, port?: number): void {
    if (typeof endpoint === "number") {
      peer.endpointIp = endpoint >>> 0;
      peer.endpointPort = port ?? 51820;
      return;
    }
    const colon = endpoint.lastIndexOf(":");
    const ip = parseIp4(colon < 0 ? endpoint : endpoint.slice(0, colon));
    const portNumber = colon < 0 ? (port ?? 51820) : Number(endpoint.slice(colon + 1));
    if (ip === undefined || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
      throw new Error(`Invalid endpoint "${endpoint}": expected IPv4:port such as 192.0.2.1:51820`);
    }
    peer.endpointIp = ip;
    peer.endpointPort = portNumber;
  }

  /** "ip:port" of a peer's endpoint, or undefined. */
  endpointOf(peer: Peer): string | undefined {
    return peer.hasEndpoint ? `${formatIp4(peer.endpointIp)}:${peer.endpointPort}` : undefined;
  }

  /** The peer whose allowed IPs hold `destination` (host-order IPv4), by longest prefix. */
  route(destination: number): Peer | undefined {
    return this.allowedIps.lookup(destination);
  }

  /** Whether the device currently demands cookies from handshake senders. */
  underLoad(now = this.#clock()): boolean {
    return this.#underLoadUntil > now;
  }

  // ---------------------------------------------------------------- outbound data

  /**
   * Routes the IPv4 packet at buf[offset, +length] by its destination and encrypts it
   * (see encryptTo). Drops with "no_route" when no peer's allowed IPs hold it.
   */
  encryptPacket(buf: Uint8Array, offset: number, length: number, result: SendResult): number {
    if (length < 20 || buf[offset] >>> 4 !== 4) return this.#dropSend(result, "malformed");
    const destination = ((buf[offset + 16] << 24) | (buf[offset + 17] << 16) |
      (buf[offset + 18] << 8) | buf[offset + 19]) >>> 0;
    const peer = this.allowedIps.lookup(destination);
    if (!peer) return this.#dropSend(result, "no_route");
    return this.encryptTo(peer, buf, offset, length, result);
  }

  /**
   * Encrypts the inner packet at buf[offset, +length] for `peer`, in place: the type-4
   * message is written at buf[offset − 16, +result.length] (needs SLOT_HEADROOM bytes
   * before the packet and SLOT_TAILROOM after). Returns SEND_READY (send it to
   * result.ip:result.port), SEND_QUEUED (no session yet: the packet was copied and a
   * handshake started) or DROP (result.reason).
   */
  encryptTo(
    peer: Peer,
    buf: Uint8Array,
    offset: number,
    length: number,
    result: SendResult,
  ): number {
    const padding = paddingFor(length, this.#mtu);
    if (offset < SLOT_HEADROOM || offset + length + padding + TAG_SIZE > buf.length) {
      return this.#dropSend(result, "no_room");
    }
    const now = this.#clock();
    const keypair = peer.current;
    if (
      keypair === undefined || keypair.sendCounter >= REJECT_AFTER_MESSAGES ||
      now - keypair.created >= REJECT_AFTER_TIME
    ) {
      this.#stage(peer, buf.slice(offset, offset + length));
      this.#sendInitiation(peer, false, now);
      result.action = SEND_QUEUED;
      result.reason = undefined;
      return SEND_QUEUED;
    }
    if (!peer.hasEndpoint) return this.#dropSend(result, "no_endpoint");
    const total = this.#seal(peer, keypair, buf, offset, length, padding, now);
    result.action = SEND_READY;
    result.offset = offset - TRANSPORT_HEADER_SIZE;
    result.length = total;
    result.ip = peer.endpointIp;
    result.port = peer.endpointPort;
    result.reason = undefined;
    this.#keepKeyFreshSending(peer, keypair, now);
    return SEND_READY;
  }

  /** Writes header, padding and ciphertext; updates counters and timers. Returns the size. */
  #seal(
    peer: Peer,
    keypair: Keypair,
    buf: Uint8Array,
    offset: number,
    length: number,
    padding: number,
    now: number,
  ): number {
    const start = offset - TRANSPORT_HEADER_SIZE;
    writeU32Le(buf, start, MESSAGE_TRANSPORT);
    writeU32Le(buf, start + TRANSPORT_RECEIVER, keypair.remoteIndex);
    const counter = keypair.sendCounter++;
    writeCounter(buf, start + TRANSPORT_COUNTER, counter);
    if (padding > 0) buf.fill(0, offset + length, offset + length + padding);
    this.crypto.sealInPlace(keypair.send, counter, buf, offset, length + padding);
    const total = TRANSPORT_OVERHEAD + length + padding;
    peer.stats.txBytes += total;
    // Timers: any authenticated packet traversal/sent; data sent.
    if (peer.persistentKeepalive > 0) peer.persistentKeepaliveAt = now + peer.persistentKeepalive;
    peer.sendKeepaliveAt = Infinity;
    if (length > 0) {
      this.counters.data_sent++;
      if (peer.newHandshakeAt === Infinity) {
        peer.newHandshakeAt = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter();
      }
    } else {
      this.counters.keepalives_sent++;
    }
    return total;
  }

  #dropSend(result: SendResult, reason: DropReason): number {
    this.counters[reason]++;
    result.action = DROP;
    result.reason = reason;
    return DROP;
  }

  #stage(peer: Peer, packet: Uint8Array): void {
    if (peer.staged.length >= MAX_STAGED_PACKETS) {
      peer.staged.shift();
      this.counters.staged_overflow++;
    }
    peer.staged.push(packet);
  }

  /** Sends the held packets when a session allows, else (re)starts a handshake. */
  #sendStaged(peer: Peer, now: number): void {
    if (peer.staged.length === 0) return;
    const keypair = peer.current;
    if (
      keypair === undefined || keypair.sendCounter >= REJECT_AFTER_MESSAGES ||
      now - keypair.created >= REJECT_AFTER_TIME
    ) {
      this.#sendInitiation(peer, false, now);
      return;
    }
    if (!peer.hasEndpoint) return;
    const out = this.#stagedOut;
    for (const packet of peer.staged.splice(0)) {
      out.set(packet, SLOT_HEADROOM);
      const padding = paddingFor(packet.length, this.#mtu);
      const total = this.#seal(peer, keypair, out, SLOT_HEADROOM, packet.length, padding, now);
      this.#transmit(out, 0, total, peer.endpointIp, peer.endpointPort);
    }
    this.#keepKeyFreshSending(peer, keypair, now);
  }

  #sendKeepalive(peer: Peer, now: number): void {
    if (peer.staged.length === 0) peer.staged.push(new Uint8Array(0));
    this.#sendStaged(peer, now);
  }

  #keepKeyFreshSending(peer: Peer, keypair: Keypair, now: number): void {
    if (
      keypair.sendCounter > REKEY_AFTER_MESSAGES ||
      (keypair.isInitiator && now - keypair.created > this.#rekeyAfterMs)
    ) {
      this.#sendInitiation(peer, false, now);
    }
  }

  // ---------------------------------------------------------------- handshakes out

  #sendInitiation(peer: Peer, isRetry: boolean, now: number): void {
    if (!isRetry) peer.handshakeAttempts = 0;
    const hs = peer.handshake;
    if (now - hs.lastSentHandshake < REKEY_TIMEOUT) return;
    if (!peer.hasEndpoint) {
      this.counters.no_endpoint++;
      return;
    }
    hs.lastSentHandshake = now;
    this.#releaseHandshakeIndex(peer);
    const index = this.#newIndex(peer);
    const out = this.#handshakeOut;
    if (!createInitiation(this.crypto, this.identity, hs, index, this.#nextTimestamp(), out)) {
      this.#indices.delete(index | 0);
      return;
    }
    peer.cookieGenerator.addMacs(out, 0, INITIATION_SIZE, now);
    if (peer.persistentKeepalive > 0) peer.persistentKeepaliveAt = now + peer.persistentKeepalive;
    peer.sendKeepaliveAt = Infinity;
    this.#transmit(out, 0, INITIATION_SIZE, peer.endpointIp, peer.endpointPort);
    peer.stats.txBytes += INITIATION_SIZE;
    this.counters.initiations_sent++;
    peer.retransmitHandshakeAt = now + REKEY_TIMEOUT + jitter();
  }

  /** A TAI64N timestamp strictly after the previous one this device sent. */
  #nextTimestamp(): Uint8Array {
    // The whitened timestamp moves in ~16.8 ms steps: keep successive ones apart.
    const ms = Math.max(this.#wallClock(), this.#lastTimestampMs + 17);
    this.#lastTimestampMs = ms;
    return writeTai64n(this.#timestamp, ms);
  }

  /** A random non-zero receiver index not in use, registered for `peer`'s handshake. */
  #newIndex(peer: Peer): number {
    while (true) {
      this.crypto.randomBytes(this.#index);
      const index = readU32Le(this.#index, 0);
      if (index !== 0 && !this.#indices.has(index | 0)) {
        this.#indices.set(index | 0, { peer, keypair: undefined });
        return index;
      }
    }
  }

  #releaseHandshakeIndex(peer: Peer): void {
    const index = peer.handshake.localIndex;
    if (index === 0) return;
    const entry = this.#indices.get(index | 0);
    if (entry && entry.keypair === undefined && entry.peer === peer) {
      this.#indices.delete(index | 0);
    }
    peer.handshake.localIndex = 0;
  }

  /** Turns the finished handshake into a session and rotates the peer's keypairs. */
  #beginSession(peer: Peer, now: number): Keypair | undefined {
    const hs = peer.handshake;
    const keys = deriveSession(hs);
    if (!keys) return undefined;
    const keypair = new Keypair(
      this.crypto.transportKey(keys.send),
      this.crypto.transportKey(keys.receive),
      now,
      keys.isInitiator,
      keys.localIndex,
      keys.remoteIndex,
    );
    keys.send.fill(0);
    keys.receive.fill(0);
    this.#indices.set(keys.localIndex | 0, { peer, keypair });
    hs.localIndex = 0;
    const { previous, current, next } = peer;
    if (keys.isInitiator) {
      if (next) {
        peer.next = undefined;
        peer.previous = next;
        this.#deleteKeypair(current);
      } else {
        peer.previous = current;
      }
      this.#deleteKeypair(previous);
      peer.current = keypair;
    } else {
      peer.next = keypair;
      this.#deleteKeypair(next);
      peer.previous = undefined;
      this.#deleteKeypair(previous);
    }
    // Timers: session derived.
    peer.zeroKeyMaterialAt = now + REJECT_AFTER_TIME * 3;
    return keypair;
  }

  #deleteKeypair(keypair: Keypair | undefined): void {
    if (!keypair) return;
    const entry = this.#indices.get(keypair.localIndex | 0);
    if (entry?.keypair === keypair) this.#indices.delete(keypair.localIndex | 0);
    keypair.wipe();
  }

  #handshakeComplete(peer: Peer, now: number): void {
    peer.retransmitHandshakeAt = Infinity;
    peer.handshakeAttempts = 0;
    peer.sentLastMinuteHandshake = false;
    peer.stats.lastHandshake = now;
    peer.stats.handshakes++;
    this.counters.handshakes_completed++;
  }

  #zeroAll(peer: Peer): void {
    this.#deleteKeypair(peer.previous);
    this.#deleteKeypair(peer.current);
    this.#deleteKeypair(peer.next);
    peer.previous = peer.current = peer.next = undefined;
    this.#releaseHandshakeIndex(peer);
    peer.handshake.clear();
    peer.staged.length = 0;
  }

  // ---------------------------------------------------------------- inbound

  /**
   * Handles one UDP datagram from `fromIp:fromPort` at buf[offset, +length]. Returns
   * (and sets result.action to) RECEIVE_DELIVER, RECEIVE_REPLY, RECEIVE_DONE or DROP;
   * see those constants. Never throws on datagram content: every bad datagram is a
   * counted drop. A reply is written in place over the datagram (it always fits).
   */
  handleDatagram(
    buf: Uint8Array,
    offset: number,
    length: number,
    fromIp: number,
    fromPort: number,
    result: ReceiveResult,
  ): number {
    result.peer = undefined;
    result.reason = undefined;
    if (length < 4 || offset < 0 || offset + length > buf.length) {
      return this.#drop(result, "malformed");
    }
    const type = readU32Le(buf, offset);
    switch (type) {
      case MESSAGE_TRANSPORT:
        return this.#receiveTransport(buf, offset, length, fromIp, fromPort, result);
      case MESSAGE_INITIATION:
        if (length !== INITIATION_SIZE) return this.#drop(result, "malformed");
        return this.#receiveHandshake(buf, offset, length, fromIp, fromPort, result);
      case MESSAGE_RESPONSE:
        if (length !== RESPONSE_SIZE) return this.#drop(result, "malformed");
        return this.#receiveHandshake(buf, offset, length, fromIp, fromPort, result);
      case MESSAGE_COOKIE_REPLY:
        if (length !== COOKIE_REPLY_SIZE) return this.#drop(result, "malformed");
        return this.#receiveCookieReply(buf, offset, result);
      default:
        return this.#drop(result, "malformed");
    }
  }

  #drop(result: ReceiveResult, reason: DropReason): number {
    this.counters[reason]++;
    result.action = DROP;
    result.reason = reason;
    return DROP;
  }

  #done(result: ReceiveResult): number {
    result.action = RECEIVE_DONE;
    return RECEIVE_DONE;
  }

  #reply(result: ReceiveResult, offset: number, length: number, ip: number, port: number) {
    result.action = RECEIVE_REPLY;
    result.offset = offset;
    result.length = length;
    result.ip = ip;
    result.port = port;
    return RECEIVE_REPLY;
  }

  #receiveTransport(
    buf: Uint8Array,
    offset: number,
    length: number,
    fromIp: number,
    fromPort: number,
    result: ReceiveResult,
  ): number {
    if (length < KEEPALIVE_SIZE) return this.#drop(result, "malformed");
    const entry = this.#indices.get(readU32Le(buf, offset + TRANSPORT_RECEIVER) | 0);
    const keypair = entry?.keypair;
    if (entry === undefined || keypair === undefined) return this.#drop(result, "unknown_index");
    const peer = entry.peer;
    const now = this.#clock();
    if (now - keypair.created >= REJECT_AFTER_TIME) return this.#drop(result, "key_expired");
    const counter = readCounter(buf, offset + TRANSPORT_COUNTER);
    // Refuse replays before paying for the decryption; record only after it authenticates.
    if (counter < 0 || !keypair.replay.check(counter, REJECT_AFTER_MESSAGES)) {
      return this.#drop(result, "replayed");
    }
    const sealedAt = offset + TRANSPORT_HEADER_SIZE;
    if (!this.crypto.openInPlace(keypair.receive, counter, buf, sealedAt, length - 16)) {
      return this.#drop(result, "decrypt_failed");
    }
    if (!keypair.replay.validate(counter, REJECT_AFTER_MESSAGES)) {
      return this.#drop(result, "replayed");
    }
    result.peer = peer;
    const plainLength = length - TRANSPORT_OVERHEAD;

    if (keypair === peer.next) {
      // Key confirmation: the initiator used the session we derived as responder.
      const old = peer.previous;
      peer.previous = peer.current;
      this.#deleteKeypair(old);
      peer.current = keypair;
      peer.next = undefined;
      this.#handshakeComplete(peer, now);
      this.#sendStaged(peer, now);
    }
    this.#updateEndpoint(peer, fromIp, fromPort);
    peer.stats.rxBytes += length;
    this.#keepKeyFreshReceiving(peer, now);
    // Timers: any authenticated packet traversal/received.
    if (peer.persistentKeepalive > 0) peer.persistentKeepaliveAt = now + peer.persistentKeepalive;
    peer.newHandshakeAt = Infinity;

    if (plainLength === 0) {
      this.counters.keepalives_received++;
      return this.#done(result);
    }
    // Timers: data received — answer within KEEPALIVE_TIMEOUT even if we have nothing to say.
    if (peer.sendKeepaliveAt === Infinity) peer.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT;
    else peer.needAnotherKeepalive = true;

    // The inner packet: IPv4, trimmed to its total length, from an address the peer owns.
    if (plainLength < 20 || buf[sealedAt] >>> 4 !== 4) return this.#drop(result, "malformed");
    const totalLength = (buf[sealedAt + 2] << 8) | buf[sealedAt + 3];
    if (totalLength < 20 || totalLength > plainLength) return this.#drop(result, "malformed");
    const source = ((buf[sealedAt + 12] << 24) | (buf[sealedAt + 13] << 16) |
      (buf[sealedAt + 14] << 8) | buf[sealedAt + 15]) >>> 0;
    if (this.allowedIps.lookup(source) !== peer) return this.#drop(result, "not_allowed_source");
    this.counters.data_received++;
    result.action = RECEIVE_DELIVER;
    result.offset = sealedAt;
    result.length = totalLength;
    return RECEIVE_DELIVER;
  }

  /** Roaming: the endpoint follows the source of the latest authenticated message. */
  #updateEndpoint(peer: Peer, ip: number, port: number): void {
    if (peer.endpointIp === ip && peer.endpointPort === port) return;
    if (peer.hasEndpoint) this.counters.endpoint_changes++;
    peer.endpointIp = ip;
    peer.endpointPort = port;
  }

  #keepKeyFreshReceiving(peer: Peer, now: number): void {
    if (peer.sentLastMinuteHandshake) return;
    const keypair = peer.current;
    // The initiator rekeys before the responder's key would expire under it.
    if (
      keypair !== undefined && keypair.isInitiator &&
      now - keypair.created > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    ) {
      peer.sentLastMinuteHandshake = true;
      this.#sendInitiation(peer, false, now);
    }
  }

  #noteHandshakeLoad(now: number): boolean {
    if (now - this.#loadWindowStart >= 1000) {
      this.#loadWindowStart = now;
      this.#loadWindowCount = 0;
    }
    if (++this.#loadWindowCount > this.#underLoadThreshold) {
      this.#underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
    }
    return this.#underLoadUntil > now;
  }

  #receiveHandshake(
    buf: Uint8Array,
    offset: number,
    length: number,
    fromIp: number,
    fromPort: number,
    result: ReceiveResult,
  ): number {
    const now = this.#clock();
    const loaded = this.#noteHandshakeLoad(now);
    if (!this.#checker.checkMac1(buf, offset, length)) return this.#drop(result, "bad_mac");
    if (loaded) {
      const source = this.#source;
      source[0] = fromIp >>> 24;
      source[1] = (fromIp >>> 16) & 255;
      source[2] = (fromIp >>> 8) & 255;
      source[3] = fromIp & 255;
      source[4] = fromPort >>> 8;
      source[5] = fromPort & 255;
      if (!this.#checker.checkMac2(buf, offset, length, source, now)) {
        // Answer with a cookie instead of spending Curve25519 work on an unproven source.
        const sender = readU32Le(buf, offset + INITIATION_SENDER);
        this.#checker.createReply(buf, offset, length, sender, source, now, buf, offset);
        this.counters.cookie_sent++;
        result.reason = "cookie_sent";
        return this.#reply(result, offset, COOKIE_REPLY_SIZE, fromIp, fromPort);
      }
      if (!this.#limiter.allow(fromIp, now)) return this.#drop(result, "handshake_rate_limited");
    }
    const message = buf.subarray(offset, offset + length);
    return buf[offset] === MESSAGE_INITIATION
      ? this.#receiveInitiation(buf, message, offset, fromIp, fromPort, now, result)
      : this.#receiveResponse(buf, message, offset, fromIp, fromPort, now, result);
  }

  #receiveInitiation(
    buf: Uint8Array,
    message: Uint8Array,
    offset: number,
    fromIp: number,
    fromPort: number,
    now: number,
    result: ReceiveResult,
  ): number {
    const outcome = consumeInitiation(
      this.crypto,
      this.identity,
      message,
      now,
      (publicKey) => this.#peers.get(encodeKey(publicKey))?.handshake,
      this.#initiation,
    );
    switch (outcome.status) {
      case INITIATION_OK:
        break;
      case INITIATION_BAD_STATIC:
      case INITIATION_BAD_TIMESTAMP:
        return this.#drop(result, "handshake_failed");
      case INITIATION_REPLAY:
        return this.#drop(result, "replayed");
      case INITIATION_FLOOD:
        return this.#drop(result, "handshake_rate_limited");
      default:
        return this.#drop(result, "unknown_peer");
    }
    const peer = this.#ownerOf.get(outcome.handshake!)!;
    result.peer = peer;
    if (peer.persistentKeepalive > 0) peer.persistentKeepaliveAt = now + peer.persistentKeepalive;
    peer.newHandshakeAt = Infinity;
    this.#updateEndpoint(peer, fromIp, fromPort);
    peer.stats.rxBytes += INITIATION_SIZE;

    // The response, written over the initiation (it is shorter).
    peer.handshake.lastSentHandshake = now;
    this.#releaseHandshakeIndex(peer);
    const index = this.#newIndex(peer);
    if (!createResponse(this.crypto, peer.handshake, index, message)) {
      this.#indices.delete(index | 0);
      return this.#drop(result, "handshake_failed");
    }
    peer.cookieGenerator.addMacs(buf, offset, RESPONSE_SIZE, now);
    if (!this.#beginSession(peer, now)) return this.#drop(result, "handshake_failed");
    peer.sendKeepaliveAt = Infinity;
    peer.stats.txBytes += RESPONSE_SIZE;
    this.counters.responses_sent++;
    return this.#reply(result, offset, RESPONSE_SIZE, fromIp, fromPort);
  }

  #receiveResponse(
    buf: Uint8Array,
    message: Uint8Array,
    offset: number,
    fromIp: number,
    fromPort: number,
    now: number,
    result: ReceiveResult,
  ): number {
    const receiver = readU32Le(buf, offset + RESPONSE_RECEIVER);
    const entry = this.#indices.get(receiver | 0);
    if (!entry || entry.keypair !== undefined || entry.peer.handshake.localIndex !== receiver) {
      return this.#drop(result, "unknown_index");
    }
    const peer = entry.peer;
    if (!consumeResponse(this.crypto, this.identity, peer.handshake, message)) {
      return this.#drop(result, "handshake_failed");
    }
    result.peer = peer;
    this.#updateEndpoint(peer, fromIp, fromPort);
    peer.stats.rxBytes += RESPONSE_SIZE;
    if (peer.persistentKeepalive > 0) peer.persistentKeepaliveAt = now + peer.persistentKeepalive;
    peer.newHandshakeAt = Infinity;
    const keypair = this.#beginSession(peer, now);
    if (!keypair) return this.#drop(result, "handshake_failed");
    this.#handshakeComplete(peer, now);
    if (peer.staged.length > 0) {
      // Held packets confirm the session as well as a keepalive would.
      this.#sendStaged(peer, now);
      return this.#done(result);
    }
    // Confirm the session with a keepalive, written over the response.
    const start = offset + TRANSPORT_HEADER_SIZE;
    const total = this.#seal(peer, keypair, buf, start, 0, 0, now);
    return this.#reply(result, offset, total, peer.endpointIp, peer.endpointPort);
  }

  #receiveCookieReply(buf: Uint8Array, offset: number, result: ReceiveResult): number {
    const entry = this.#indices.get(readU32Le(buf, offset + COOKIE_RECEIVER) | 0);
    if (!entry) return this.#drop(result, "unknown_index");
    if (!entry.peer.cookieGenerator.consumeReply(buf, offset, this.#clock())) {
      return this.#drop(result, "bad_mac");
    }
    this.counters.cookie_replies_received++;
    return this.#done(result);
  }

  // ---------------------------------------------------------------- timers

  /**
   * Runs the timers that are due: handshake retries and give-up, keepalives, rekeying
   * after silence, persistent keepalives and erasing old keys. Output goes via transmit.
   */
  tick(): void {
    const now = this.#clock();
    for (const peer of this.#peers.values()) {
      if (now >= peer.retransmitHandshakeAt) {
        peer.retransmitHandshakeAt = Infinity;
        if (peer.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
          // Give up: drop what waited, keep no keepalive pending, erase keys later.
          peer.sendKeepaliveAt = Infinity;
          this.counters.handshake_timeout += peer.staged.length;
          peer.staged.length = 0;
          if (peer.zeroKeyMaterialAt === Infinity) {
            peer.zeroKeyMaterialAt = now + REJECT_AFTER_TIME * 3;
          }
        } else {
          peer.handshakeAttempts++;
          this.#sendInitiation(peer, true, now);
        }
      }
      if (now >= peer.sendKeepaliveAt) {
        peer.sendKeepaliveAt = Infinity;
        this.#sendKeepalive(peer, now);
        if (peer.needAnotherKeepalive) {
          peer.needAnotherKeepalive = false;
          peer.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT;
        }
      }
      if (now >= peer.newHandshakeAt) {
        // We sent data and heard nothing back for KEEPALIVE + REKEY_TIMEOUT.
        peer.newHandshakeAt = Infinity;
        this.#sendInitiation(peer, false, now);
      }
      if (now >= peer.zeroKeyMaterialAt) {
        peer.zeroKeyMaterialAt = Infinity;
        this.#zeroAll(peer);
      }
      if (now >= peer.persistentKeepaliveAt) {
        peer.persistentKeepaliveAt = Infinity;
        if (peer.persistentKeepalive > 0) this.#sendKeepalive(peer, now);
      }
    }
    if (now - this.#lastSweep >= 1000) {
      this.#lastSweep = now;
      this.#limiter.sweep(now);
    }
  }

  /** The earliest timer deadline (device clock, ms), or Infinity: when tick() is next due. */
  nextDeadline(): number {
    let next = Infinity;
    for (const peer of this.#peers.values()) {
      next = Math.min(
        next,
        peer.retransmitHandshakeAt,
        peer.sendKeepaliveAt,
        peer.newHandshakeAt,
        peer.zeroKeyMaterialAt,
        peer.persistentKeepaliveAt,
      );
    }
    return next;
  }

  /** Starts a handshake with `peer` now (rate-limited to one per REKEY_TIMEOUT). */
  initiateHandshake(peer: Peer): void {
    this.#sendInitiation(peer, false, this.#clock());
  }

  /** Receiver indices in use (handshakes and sessions): for tests and status. */
  get indexCount(): number {
    return this.#indices.size;
  }
}

/** Random extra delay for handshake timers, so peers do not retry in lockstep. */
function jitter(): number {
  return Math.random() * REKEY_TIMEOUT_JITTER_MAX;
}
