/**
 * The host-gw backend, as flannel's: no encapsulation; every peer's subnet is routed
 * via the peer's public IP on the underlay:
 *   ip route replace <peer subnet> via <peer PublicIP> dev <underlay>
 * That only works between hosts on one L2 segment: the agent refuses to start when the
 * public IP is not on the underlay interface, and a peer outside the segment gets a
 * warning and no route (a route to an unreachable gateway would only blackhole traffic).
 * Device MTU = underlay MTU.
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { interfaceIndex } from "../../ffi/libc.ts";
import { Netlink } from "../../ffi/netlink.ts";
import type { NetworkConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import { formatIp4, formatIp4Net, netContains, prefixMask } from "../ip.ts";
import { describeLease, type Lease } from "../lease.ts";
import { log } from "../log.ts";
import type { Underlay } from "../underlay.ts";
import { emptySnapshot, KernelState, routeEntry, snapshotRoutes } from "./kernel_state.ts";
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
    if (!context.underlay.addresses.includes(context.underlay.publicIp)) {
      throw new UsageError(
        `host-gw: public IP ${formatIp4(context.underlay.publicIp)} is not on interface ` +
          `${context.underlay.name} (host-gw routes peers straight to it; drop --public-ip or pick the interface that has it with --iface)`,
      );
    }
  }

  start(_own: Lease): Promise<void> {
    this.#netlink = new Netlink();
    this.#index = interfaceIndex(this.#underlay.name);
    this.#state = new KernelState(
      this.#netlink,
      `host-gw routes on ${this.device}`,
      () => {
        const adopting = this.#adopting;
        this.#adopting = false; // flanneld's routes are taken over at the first look only
        return snapshotRoutes(
          this.#netlink!,
          emptySnapshot(),
          (route) =>
            route.prefixLen === this.#config.subnetLen &&
            netContains(this.#config.network, route.dst),
          (route) => adopting && isFlanneldRoute(route, this.#index),
        );
      },
    );
    this.#state.startReconciling();
    return Promise.resolve();
  }

  addPeer(peer: Lease): void {
    const key = formatIp4Net(peer.subnet);
    const mask = prefixMask(this.#underlay.prefixLen);
    if (((peer.attrs.publicIp & mask) >>> 0) !== ((this.#underlay.ip & mask) >>> 0)) {
      if (!this.#offSegment.has(key)) {
        log.warn(
          "host-gw peer is not on this host's L2 segment: no route to it (use vxlan for such peers)",
          {
            peer: describeLease(peer),
            segment: `${formatIp4(this.#underlay.ip)}/${this.#underlay.prefixLen}`,
          },
        );
      }
      this.#offSegment.add(key);
      this.#state?.removePeer(key);
      return;
    }
    this.#offSegment.delete(key);
    this.#state?.setPeer(key, [routeEntry(this.#netlink!, {
      dst: peer.subnet.ip,
      prefixLen: peer.subnet.prefixLen,
      linkIndex: this.#index,
      gateway: peer.attrs.publicIp,
    })]);
  }

  removePeer(peer: Lease): void {
    const key = formatIp4Net(peer.subnet);
    this.#offSegment.delete(key);
    this.#state?.removePeer(key);
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
