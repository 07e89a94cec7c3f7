/**
 * A WireGuard peer as the device keeps it: its keys, endpoint, sessions (keypairs),
 * packets held while a handshake is under way, timer deadlines and counters.
 *
 * Sessions rotate as in the whitepaper §6.3: `current` sends and receives; `previous`
 * still receives for a while after a rekey; `next` is a session the responder derived
 * but may not send on until the initiator proves it has it (its first data message).
 */
import type { TransportKey } from "./crypto.ts";
import { CookieGenerator } from "./cookie.ts";
import type { CryptoProvider } from "./crypto.ts";
import { Handshake, type StaticIdentity } from "./noise.ts";
import { ReplayFilter } from "./replay.ts";

/** One session's transport keys and counters. */
export class Keypair {
  readonly send: TransportKey;
  readonly receive: TransportKey;
  /** Device clock (ms) when the session was derived. */
  readonly created: number;
  readonly isInitiator: boolean;
  /** The index the peer puts in messages to us (our receiver index). */
  readonly localIndex: number;
  /** The index we put in messages to the peer. */
  readonly remoteIndex: number;
  /** The next counter to send with. */
  sendCounter = 0;
  readonly replay: ReplayFilter = new ReplayFilter();

  constructor(
    send: TransportKey,
    receive: TransportKey,
    created: number,
    isInitiator: boolean,
    localIndex: number,
    remoteIndex: number,
  ) {
    this.send = send;
    this.receive = receive;
    this.created = created;
    this.isInitiator = isInitiator;
    this.localIndex = localIndex;
    this.remoteIndex = remoteIndex;
  }

  /** Overwrites both keys. */
  wipe(): void {
    this.send.wipe();
    this.receive.wipe();
  }
}

/** Per-peer traffic counters. */
export interface PeerStats {
  /** Bytes of authenticated WireGuard messages received from the peer (all types). */
  rxBytes: number;
  /** Bytes of WireGuard messages sent to the peer. */
  txBytes: number;
  /** Device clock (ms) of the last completed handshake, or -Infinity. */
  lastHandshake: number;
  handshakes: number;
}

/** A configured peer. Fields are the device's; read them, change them through the Device. */
export class Peer {
  readonly publicKey: Uint8Array;
  /** The public key as `wg` prints it (base64). */
  readonly name: string;
  readonly handshake: Handshake;
  readonly cookieGenerator: CookieGenerator;

  /** Where to send (IPv4, host order; port); 0/0 until configured or first heard from. */
  endpointIp = 0;
  endpointPort = 0;
  /** Persistent keepalive interval in ms (0: off). */
  persistentKeepalive = 0;

  current: Keypair | undefined;
  previous: Keypair | undefined;
  next: Keypair | undefined;

  /** Inner packets (copies) waiting for a session; an empty one stands for a keepalive. */
  readonly staged: Uint8Array[] = [];

  // Timer deadlines on the device clock (ms); Infinity when not pending.
  retransmitHandshakeAt = Infinity;
  sendKeepaliveAt = Infinity;
  newHandshakeAt = Infinity;
  zeroKeyMaterialAt = Infinity;
  persistentKeepaliveAt = Infinity;
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;

  readonly stats: PeerStats = { rxBytes: 0, txBytes: 0, lastHandshake: -Infinity, handshakes: 0 };

  constructor(
    crypto: CryptoProvider,
    identity: StaticIdentity,
    publicKey: Uint8Array,
    name: string,
  ) {
    this.publicKey = new Uint8Array(publicKey);
    this.name = name;
    this.handshake = new Handshake(crypto, identity, publicKey);
    this.cookieGenerator = new CookieGenerator(crypto, publicKey);
  }

  /** Whether an endpoint is known. */
  get hasEndpoint(): boolean {
    return this.endpointPort !== 0;
  }
}
