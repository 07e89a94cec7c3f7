/**
 * The host-gw backend, as flannel's: no encapsulation; every peer's subnet is routed
 * via the peer's public IP on the underlay:
 *   ip route replace <peer subnet> via <peer PublicIP> dev <underlay>
 * That only works between hosts on one L2 segment: the agent refuses to start when the
 * public IP is not on the underlay interface, and a peer outside the segment gets a
 * warning and no route (a route to an unreachable gateway would only blackhole traffic).
 * Device MTU = underlay MTU.
 *
 * With IPv6 in the network config (flannel's dual stack), each peer's IPv6 subnet is
 * routed the same way via its PublicIPv6:
 *   ip -6 route replace <peer ipv6 subnet> via <peer PublicIPv6> dev <underlay>
 * for peers on our IPv6 segment (the interface's first global IPv6 prefix); this host
 * needs a PublicIPv6 on the interface. In an IPv6-only network (`EnableIPv4: false`) no
 * IPv4 route is made at all: every lease's IPv4 subnet is the empty 0.0.0.0/0 there.
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { interfaceIndex } from "../../ffi/libc.ts";
import { Netlink } from "../../ffi/netlink.ts";
import type { NetworkConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import { formatIp4, netContains, prefixMask } from "../ip.ts";
import { formatIp6, net6Contains, prefixMask6 } from "../ip6.ts";
import { describeLease, type Lease } from "../lease.ts";
import { log } from "../log.ts";
import type { Underlay } from "../underlay.ts";
import {
  emptySnapshot,
  type KernelEntry,
  type KernelSnapshot,
  KernelState,
  peerKey,
  routeEntry,
  snapshotRoutes,
  snapshotRoutes6,
} from "./kernel_state.ts";
import { isFlanneldRoute } from "../ownership.ts";

export class HostGwBackend implements Backend {
  readonly type = "host-gw" as const;
  readonly mtu: number;
  readonly hearsPeers = false;
  readonly device: string;
  readonly dataPath = "kernel routing";
  readonly #config: NetworkConfig;
  readonly #underlay: Underlay;
  readonly #offSegment = new Set<string>();
  #netlink: Netlink | undefined;
  #state: KernelState | undefined;
  #index = 0;
  /** Taking over from flanneld: its routes are adopted at the first look. */
  #adopting: boolean;

  constructor(context: BackendContext) {
    this.#adopting = context.takeover === true;
    this.#config = context.config;
    this.#underlay = context.underlay;
    this.mtu = deviceMtu(context.config.backend, context.underlay.mtu);
    this.device = context.underlay.name;
    const underlay = context.underlay;
    if (context.config.enableIPv4 && !underlay.addresses.includes(underlay.publicIp)) {
      throw new UsageError(
        `host-gw: public IP ${formatIp4(underlay.publicIp)} is not on interface ` +
          `${underlay.name} (host-gw routes peers straight to it; drop --public-ip or pick the interface that has it with --iface)`,
      );
    }
    if (context.config.ipv6) {
      const v6 = underlay.publicIpv6;
      if (v6 === undefined || !(underlay.ipv6Addresses ?? []).includes(v6)) {
        throw new UsageError(
          `host-gw: the network has IPv6 but ${
            v6 === undefined ? "this host has no public IPv6" : `public IPv6 ${formatIp6(v6)}`
          } ${v6 === undefined ? "on" : "is not on"} interface ${underlay.name} ` +
            `(host-gw routes peers straight to it; give the interface a global IPv6 address, or pick one that has it with --iface)`,
        );
      }
    }
  }

  start(_own: Lease): Promise<void> {
    this.#netlink = new Netlink();
    this.#index = interfaceIndex(this.#underlay.name);
    this.#state = new KernelState(
      this.#netlink,
      `host-gw routes on ${this.device}`,
      () => this.#snapshot(),
    );
    this.#state.startReconciling();
    return Promise.resolve();
  }

  /** Our routes to peer subnets (IPv4 and IPv6), and others' routes where ours would go. */
  #snapshot(): KernelSnapshot {
    const netlink = this.#netlink!;
    const config = this.#config;
    const adopting = this.#adopting;
    this.#adopting = false; // flanneld's routes are taken over at the first look only
    const flanneld = (route: { linkIndex: number; gateway?: number | bigint; protocol?: number }) =>
      adopting && isFlanneldRoute(route, this.#index);
    const snapshot = emptySnapshot();
    if (config.enableIPv4) {
      snapshotRoutes(
        netlink,
        snapshot,
        (route) => route.prefixLen === config.subnetLen && netContains(config.network, route.dst),
        flanneld,
      );
    }
    const v6 = config.ipv6;
    if (v6) {
      snapshotRoutes6(
        netlink,
        snapshot,
        (route) => route.prefixLen === v6.subnetLen && net6Contains(v6.network, route.dst),
        flanneld,
      );
    }
    return snapshot;
  }

  addPeer(peer: Lease): void {
    const key = peerKey(peer);
    const entries = [...this.#entries4(peer, key), ...this.#entries6(peer, key)];
    if (entries.length === 0) {
      this.#state?.removePeer(key);
      return;
    }
    this.#state?.setPeer(key, entries);
  }

  /** `<peer subnet> via <peer PublicIP>`, when IPv4 is on and the peer is on our segment. */
  #entries4(peer: Lease, key: string): KernelEntry[] {
    if (!this.#config.enableIPv4 || peer.subnet.prefixLen === 0) return [];
    const mask = prefixMask(this.#underlay.prefixLen);
    const onSegment = ((peer.attrs.publicIp & mask) >>> 0) === ((this.#underlay.ip & mask) >>> 0);
    if (
      !this.#segment(
        key,
        onSegment,
        peer,
        `${formatIp4(this.#underlay.ip)}/${this.#underlay.prefixLen}`,
      )
    ) {
      return [];
    }
    return [routeEntry(this.#netlink!, {
      dst: peer.subnet.ip,
      prefixLen: peer.subnet.prefixLen,
      linkIndex: this.#index,
      gateway: peer.attrs.publicIp,
    })];
  }

  /** `<peer ipv6 subnet> via <peer PublicIPv6>`, when both sides have IPv6 on one segment. */
  #entries6(peer: Lease, key: string): KernelEntry[] {
    const subnet = peer.ipv6Subnet;
    const gateway = peer.attrs.publicIpv6;
    const own = this.#underlay.ipv6Addresses?.[0];
    if (!this.#config.ipv6 || !subnet || gateway === undefined || own === undefined) return [];
    const prefixLen = this.#underlay.ipv6PrefixLen ?? 128;
    const mask = prefixMask6(prefixLen);
    if (
      !this.#segment(
        `${key} v6`,
        (gateway & mask) === (own & mask),
        peer,
        `${formatIp6(own)}/${prefixLen}`,
      )
    ) {
      return [];
    }
    return [routeEntry(this.#netlink!, {
      dst: subnet.ip,
      prefixLen: subnet.prefixLen,
      linkIndex: this.#index,
      gateway,
    })];
  }

  /** True when the peer is on our segment; warns once per peer (and family) when not. */
  #segment(key: string, onSegment: boolean, peer: Lease, segment: string): boolean {
    if (onSegment) {
      this.#offSegment.delete(key);
      return true;
    }
    if (!this.#offSegment.has(key)) {
      log.warn(
        "host-gw peer is not on this host's L2 segment: no route to it (use vxlan for such peers)",
        { peer: describeLease(peer), segment },
      );
    }
    this.#offSegment.add(key);
    return false;
  }

  removePeer(peer: Lease): void {
    const key = peerKey(peer);
    this.#offSegment.delete(key);
    this.#offSegment.delete(`${key} v6`);
    this.#state?.removePeer(key);
  }

  batchPeers(work: () => void): void {
    if (this.#state) this.#state.batch(work);
    else work();
  }

  /** host-gw leases carry no BackendData. */
  checkPeer(_peer: Lease): string | undefined {
    return undefined;
  }

  claims(_peer: Lease): string[] {
    return [];
  }

  /** Routes only, and those carry the agent's mark. */
  owned(): BackendOwned {
    return { files: [] };
  }

  readonly ownClaims: string[] = [];

  renewIdentity(): boolean {
    return false;
  }

  observe(): BackendObservation {
    return { healthy: true, conflicts: this.#state?.conflicts() ?? [] };
  }

  lastHeard(_peer: Lease): null {
    return null;
  }

  stop(): Promise<void> {
    this.#state?.close();
    this.#netlink = undefined;
    this.#state = undefined;
    return Promise.resolve();
  }
}
