/**
 * The udp data path's peer table, shared between the agent (writer, on lease events)
 * and the data-path Worker (reader, per packet) through SharedArrayBuffers:
 *
 * - owners: one u32 per subnet of the Network, the owning peer's public IP (0 = none),
 *   indexed by (address − network) >> (32 − SubnetLen): one array read per packet.
 * - peer set: the public IPs of all peers in an open-addressing hash table, double
 *   buffered (the writer fills the idle half, then flips), used to tell an unknown
 *   sender from a peer sending a spoofed source.
 *
 * Aligned 32-bit stores are atomic on the platforms Deno runs on, so a reader sees
 * either the old or the new owner of a subnet, never a torn value.
 */

/** Largest Network/SubnetLen combination the direct-index owner table accepts (64 MiB). */
export const MAX_SUBNETS = 1 << 24;

export interface PeerTableBuffers {
  readonly owners: SharedArrayBuffer;
  /** Per subnet: epoch ms of the last datagram accepted from its owner (float64). */
  readonly heard: SharedArrayBuffer;
  /** One i32 counting first contacts (a peer heard from after never): status refreshes on it. */
  readonly firstHeard: SharedArrayBuffer;
  readonly set: SharedArrayBuffer;
  readonly networkIp: number;
  readonly networkPrefixLen: number;
  readonly subnetLen: number;
  readonly setBits: number;
}

export class PeerTable {
  readonly buffers: PeerTableBuffers;
  readonly #owners: Uint32Array;
  readonly #heard: Float64Array;
  readonly #firstHeard: Int32Array;
  readonly #set: Uint32Array;
  readonly #active: Int32Array;
  readonly #networkIp: number;
  readonly #networkMask: number;
  readonly #shift: number;
  readonly #setSize: number;
  readonly #setMask: number;
  readonly #hashShift: number;

  /** Allocates tables for a Network and SubnetLen. Throws when the network is too large. */
  static create(networkIp: number, networkPrefixLen: number, subnetLen: number): PeerTable {
    const subnets = 2 ** (subnetLen - networkPrefixLen);
    if (subnets > MAX_SUBNETS) {
      throw new Error(
        `udp backend: ${subnets} subnets of /${subnetLen} in a /${networkPrefixLen} are more than ` +
          `${MAX_SUBNETS} (use a longer Network prefix or a shorter SubnetLen)`,
      );
    }
    const setBits = Math.min(20, Math.max(8, Math.ceil(Math.log2(subnets)) + 1));
    return new PeerTable({
      owners: new SharedArrayBuffer(subnets * 4),
      heard: new SharedArrayBuffer(subnets * 8),
      firstHeard: new SharedArrayBuffer(4),
      // Two halves of 2^setBits slots, then one i32 naming the active half.
      set: new SharedArrayBuffer(2 * (1 << setBits) * 4 + 4),
      networkIp,
      networkPrefixLen,
      subnetLen,
      setBits,
    });
  }

  /** Attaches to tables made by another thread. */
  constructor(buffers: PeerTableBuffers) {
    this.buffers = buffers;
    this.#owners = new Uint32Array(buffers.owners);
    this.#heard = new Float64Array(buffers.heard);
    this.#firstHeard = new Int32Array(buffers.firstHeard);
    this.#setSize = 1 << buffers.setBits;
    this.#set = new Uint32Array(buffers.set, 0, 2 * this.#setSize);
    this.#active = new Int32Array(buffers.set, 2 * this.#setSize * 4, 1);
    this.#networkIp = buffers.networkIp;
    this.#networkMask = buffers.networkPrefixLen === 0
      ? 0
      : (0xffffffff << (32 - buffers.networkPrefixLen)) >>> 0;
    this.#shift = 32 - buffers.subnetLen;
    this.#setMask = this.#setSize - 1;
    this.#hashShift = 32 - buffers.setBits;
  }

  /** The public IP of the peer owning `ip`'s subnet, or 0. Hot path: no allocation. */
  ownerOf(ip: number): number {
    if (((ip & this.#networkMask) >>> 0) !== this.#networkIp) return 0;
    return this.#owners[(ip - this.#networkIp) >>> this.#shift];
  }

  /**
   * True when `sender` may carry an inner packet from `source`: the sender holds a lease and
   * `source` lies inside a subnet it leases. Hot path: one array read. (An unowned subnet
   * has owner 0, which no sender may match, not even a datagram claiming to be from 0.0.0.0.)
   */
  mayCarry(sender: number, source: number): boolean {
    const owner = this.ownerOf(source);
    return owner !== 0 && owner === sender;
  }

  /** Notes that the owner of `ip`'s subnet was heard from at `now` (epoch ms). */
  heardFrom(ip: number, now: number): void {
    const slot = (ip - this.#networkIp) >>> this.#shift;
    if (this.#heard[slot] === 0) Atomics.add(this.#firstHeard, 0, 1);
    this.#heard[slot] = now;
  }

  /** How many times a peer was heard from for the first time (since it was set). */
  get firstContacts(): number {
    return Atomics.load(this.#firstHeard, 0);
  }

  /** Epoch ms of the last datagram from the owner of `subnetIp`; 0 when never. */
  lastHeard(subnetIp: number): number {
    if (!this.inNetwork(subnetIp)) return 0;
    return this.#heard[(subnetIp - this.#networkIp) >>> this.#shift];
  }

  /** True when `ip` lies in the Network. */
  inNetwork(ip: number): boolean {
    return ((ip & this.#networkMask) >>> 0) === this.#networkIp;
  }

  /** True when `ip` is the public IP of some peer. */
  isPeer(ip: number): boolean {
    if (ip === 0) return false;
    const base = Atomics.load(this.#active, 0) * this.#setSize;
    let slot = Math.imul(ip, 0x9e3779b1) >>> this.#hashShift;
    for (let probes = 0; probes < this.#setSize; probes++) {
      const value = this.#set[base + slot];
      if (value === ip) return true;
      if (value === 0) return false;
      slot = (slot + 1) & this.#setMask;
    }
    return false;
  }

  /** Sets or clears (publicIp 0) the owner of a subnet base address. */
  setOwner(subnetIp: number, publicIp: number): void {
    if (!this.inNetwork(subnetIp)) return;
    this.#owners[(subnetIp - this.#networkIp) >>> this.#shift] = publicIp;
    this.#heard[(subnetIp - this.#networkIp) >>> this.#shift] = 0;
  }

  /** Replaces the peer set: fills the idle half, then makes it the active one. */
  setPeers(publicIps: Iterable<number>): void {
    const next = 1 - Atomics.load(this.#active, 0);
    const base = next * this.#setSize;
    this.#set.fill(0, base, base + this.#setSize);
    let inserted = 0;
    for (const ip of publicIps) {
      // The set only classifies drops; past capacity, extra peers are merely unclassified.
      if (ip === 0 || inserted >= this.#setSize - 1) continue;
      inserted++;
      let slot = Math.imul(ip, 0x9e3779b1) >>> this.#hashShift;
      while (this.#set[base + slot] !== 0 && this.#set[base + slot] !== ip) {
        slot = (slot + 1) & this.#setMask;
      }
      this.#set[base + slot] = ip;
    }
    Atomics.store(this.#active, 0, next);
  }
}
