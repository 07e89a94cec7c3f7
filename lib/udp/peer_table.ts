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
 * - owners6 (dual-stack networks): the same for the subnets of the IPv6 Network, indexed
 *   by the bits between the IPv6 Network prefix and the IPv6 SubnetLen, read as one 32-bit
 *   word from the address bytes (at most 24 bits, MAX_SUBNETS): no bigint per packet.
 *   Peers are still known by their IPv4 public IP: the underlay stays IPv4.
 *
 * Aligned 32-bit stores are atomic on the platforms Deno runs on, so a reader sees
 * either the old or the new owner of a subnet, never a torn value.
 */

/** Largest Network/SubnetLen combination the direct-index owner table accepts (64 MiB). */
import type { Ip6Net } from "../ip6.ts";
import { ip6Bytes } from "../ip6.ts";
import { Ip6Prefix, readU32 } from "./packet.ts";

export const MAX_SUBNETS = 1 << 24;

/** The IPv6 Network's side of the table, in a dual-stack network. */
export interface PeerTable6Buffers {
  /** One u32 per IPv6 subnet: the owner's IPv4 public IP (0 = none). */
  readonly owners: SharedArrayBuffer;
  /** Per IPv6 subnet: epoch ms of the last datagram accepted from its owner (float64). */
  readonly heard: SharedArrayBuffer;
  readonly networkIp: bigint;
  readonly networkPrefixLen: number;
  readonly subnetLen: number;
}

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
  readonly ipv6?: PeerTable6Buffers;
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
  // The IPv6 side (owners6 empty when the network has no IPv6).
  readonly #owners6: Uint32Array;
  readonly #heard6: Float64Array;
  readonly #network6: Ip6Prefix | undefined;
  readonly #subnetLen6: number;
  /** Byte of the address where the 32-bit word holding the subnet bits starts. */
  readonly #word6: number;
  readonly #shift6: number;
  readonly #mask6: number;

  /**
   * Allocates tables for a Network and SubnetLen, and with `ipv6` for the IPv6 Network
   * and its SubnetLen. Throws when a network holds more than MAX_SUBNETS subnets.
   */
  static create(
    networkIp: number,
    networkPrefixLen: number,
    subnetLen: number,
    options: { ipv6?: { network: Ip6Net; subnetLen: number } } = {},
  ): PeerTable {
    const subnets = 2 ** (subnetLen - networkPrefixLen);
    if (subnets > MAX_SUBNETS) {
      throw new Error(
        `udp backend: ${subnets} subnets of /${subnetLen} in a /${networkPrefixLen} are more than ` +
          `${MAX_SUBNETS} (use a longer Network prefix or a shorter SubnetLen)`,
      );
    }
    let ipv6: PeerTable6Buffers | undefined;
    if (options.ipv6) {
      const { network, subnetLen: subnetLen6 } = options.ipv6;
      if (subnetLen6 < network.prefixLen || subnetLen6 > 128) {
        throw new Error(
          `udp backend: IPv6SubnetLen ${subnetLen6} does not fit the IPv6Network /${network.prefixLen}`,
        );
      }
      const subnets6 = 2 ** (subnetLen6 - network.prefixLen);
      if (subnets6 > MAX_SUBNETS) {
        throw new Error(
          `udp backend: 2^${
            subnetLen6 - network.prefixLen
          } subnets of /${subnetLen6} in the IPv6Network /${network.prefixLen} are more than ` +
            `${MAX_SUBNETS} (use a longer IPv6Network prefix or a shorter IPv6SubnetLen)`,
        );
      }
      ipv6 = {
        owners: new SharedArrayBuffer(subnets6 * 4),
        heard: new SharedArrayBuffer(subnets6 * 8),
        networkIp: network.ip,
        networkPrefixLen: network.prefixLen,
        subnetLen: subnetLen6,
      };
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
      ipv6,
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
    const v6 = buffers.ipv6;
    this.#owners6 = new Uint32Array(v6 ? v6.owners : new SharedArrayBuffer(0));
    this.#heard6 = new Float64Array(v6 ? v6.heard : new SharedArrayBuffer(0));
    this.#network6 = v6 ? new Ip6Prefix(v6.networkIp, v6.networkPrefixLen) : undefined;
    this.#subnetLen6 = v6?.subnetLen ?? 128;
    // The subnet bits [prefix, subnetLen) span at most 24 bits, so they lie inside the
    // 32-bit word that starts at the prefix's byte (moved back to byte 12 near the end).
    const prefix6 = v6?.networkPrefixLen ?? 128;
    this.#word6 = Math.min(prefix6 >>> 3, 12);
    this.#shift6 = 32 - (this.#subnetLen6 - 8 * this.#word6);
    this.#mask6 = 2 ** (this.#subnetLen6 - prefix6) - 1;
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

  /**
   * How many times a peer was heard from for the first time (since it was set); a
   * dual-stack peer counts once per family. Status only watches it change.
   */
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

  /** True when the table has an IPv6 side (a dual-stack network). */
  get hasIpv6(): boolean {
    return this.#network6 !== undefined;
  }

  /** True when the IPv6 address at `offset` of `bytes` lies in the IPv6 Network. */
  inNetwork6(bytes: Uint8Array, offset: number): boolean {
    return this.#network6 !== undefined && this.#network6.contains(bytes, offset);
  }

  /** The slot of the IPv6 address at `offset`, assuming it lies in the IPv6 Network. */
  #slot6(bytes: Uint8Array, offset: number): number {
    return (readU32(bytes, offset + this.#word6) >>> this.#shift6) & this.#mask6;
  }

  /**
   * The IPv4 public IP of the peer owning the subnet of the IPv6 address at `offset` of
   * `bytes`, or 0. Hot path: four word compares and one array read, nothing allocated.
   */
  ownerOf6(bytes: Uint8Array, offset: number): number {
    if (!this.inNetwork6(bytes, offset)) return 0;
    return this.#owners6[this.#slot6(bytes, offset)];
  }

  /** As mayCarry, for the IPv6 source address at `offset` of `bytes`. */
  mayCarry6(sender: number, bytes: Uint8Array, offset: number): boolean {
    const owner = this.ownerOf6(bytes, offset);
    return owner !== 0 && owner === sender;
  }

  /** Notes that the owner of the IPv6 address at `offset` was heard from at `now`. */
  heardFrom6(bytes: Uint8Array, offset: number, now: number): void {
    const slot = this.#slot6(bytes, offset);
    if (this.#heard6[slot] === 0) Atomics.add(this.#firstHeard, 0, 1);
    this.#heard6[slot] = now;
  }

  /** The slot of an IPv6 subnet base address (agent side, bigint), or -1 outside. */
  #slotOf6(subnetIp: bigint): number {
    if (this.#network6 === undefined) return -1;
    const bytes = ip6Bytes(subnetIp);
    return this.#network6.contains(bytes, 0) ? this.#slot6(bytes, 0) : -1;
  }

  /**
   * Sets or clears (publicIp 0) the owner of an IPv6 subnet base address; an address
   * outside the IPv6 Network (or no IPv6 side) changes nothing.
   */
  setOwner6(subnetIp: bigint, publicIp: number): void {
    const slot = this.#slotOf6(subnetIp);
    if (slot < 0) return;
    this.#owners6[slot] = publicIp;
    this.#heard6[slot] = 0;
  }

  /** Epoch ms of the last datagram from the owner of the IPv6 subnet; 0 when never. */
  lastHeard6(subnetIp: bigint): number {
    const slot = this.#slotOf6(subnetIp);
    return slot < 0 ? 0 : this.#heard6[slot];
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
