/**
 * The ipip backend, as flannel's: the kernel carries each container packet inside one
 * outer IPv4 header (protocol 4, no UDP, no inner Ethernet); the agent programs it
 * through netlink and gets out of the way.
 *
 * Device `flannel.ipip` (flanneld's name), one for all peers (remote any):
 *   ip link add flannel.ipip mtu <underlay − 20> type ipip local <underlay IP> dev <underlay> ttl inherit nopmtudisc
 * with `<subnet.ip>/32` and up. TTL inherit and no DF on the outer header are what
 * flanneld's netlink library sends (it leaves them at zero); `dev` binds the tunnel to the
 * underlay, as overlay's vxlan device is bound (flanneld's ipip device is not, and is
 * adopted as it is). `local` tells the device apart from the kernel's own `tunl0` (local
 * and remote any), which the ipip module makes in every namespace once loaded.
 * MTU = underlay MTU − 20 (the outer IPv4 header) unless the config sets MTU.
 * The lease carries `"BackendType":"ipip"` and no BackendData. Per peer:
 *   ip route replace <peer subnet> via <peer PublicIP> dev flannel.ipip onlink
 * (the route's gateway is the outer destination). With DirectRouting, a peer on our L2
 * segment gets `ip route replace <peer subnet> via <peer PublicIP> dev <underlay>`
 * instead, as host-gw.
 *
 * A kernel without ipip (no module, or not built) answers the device's creation with
 * EOPNOTSUPP ("Unknown device type"). The agent checks that before it leases anything
 * (ipipUnavailable, through the registry), waits, and says why in one line and in
 * `--health`: the module can be loaded, or the config changed, without a restart.
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { EEXIST, EOPNOTSUPP, interfaceIndex, SystemError } from "../../ffi/libc.ts";
import { type LinkInfo, Netlink, type Route } from "../../ffi/netlink.ts";
import type { NetworkConfig } from "../config.ts";
import { OverlayError } from "../errors.ts";
import { formatIp4, formatIp4Net, netContains, prefixMask } from "../ip.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import type { Underlay } from "../underlay.ts";
import {
  emptySnapshot,
  type KernelSnapshot,
  KernelState,
  routeEntry,
  snapshotRoutes,
} from "./kernel_state.ts";
import { isFlanneldRoute } from "../ownership.ts";

/** What the agent says, in the log and in `--health`, when the kernel has no ipip. */
export const IPIP_MISSING =
  "ipip: this kernel has no ipip device type (modprobe ipip; or use vxlan)";

/** The kernel calls the agent makes, replaced in tests by recorders. */
export interface IpipSystem {
  /** A new rtnetlink socket. */
  netlink(): Netlink;
  /** `if_nametoindex`: 0 when there is no such device. */
  interfaceIndex(name: string): number;
}

const SYSTEM: IpipSystem = { netlink: () => new Netlink(), interfaceIndex };

export class IpipBackend implements Backend {
  readonly type = "ipip" as const;
  readonly mtu: number;
  readonly hearsPeers = false;
  readonly device: string;
  readonly dataPath = "kernel ipip";
  /** ipip leases carry no BackendData (flanneld writes none). */
  readonly backendData = undefined;
  readonly ownClaims: string[] = [];
  readonly #config: NetworkConfig;
  readonly #underlay: Underlay;
  readonly #system: IpipSystem;
  #netlink: Netlink | undefined;
  #state: KernelState | undefined;
  #index = 0;
  #underlayIndex = 0;
  /** Taking over from flanneld: its routes via the underlay are adopted at the first look. */
  #adopting: boolean;

  constructor(context: BackendContext, system: IpipSystem = SYSTEM) {
    this.#adopting = context.takeover === true;
    this.#config = context.config;
    this.#underlay = context.underlay;
    this.#system = system;
    this.mtu = deviceMtu(context.config.backend, context.underlay.mtu);
    this.device = context.device!; // the registry gives flanneld's name by default
  }

  start(own: Lease): Promise<void> {
    const netlink = this.#system.netlink();
    this.#netlink = netlink;
    try {
      this.#underlayIndex = this.#system.interfaceIndex(this.#underlay.name);
      this.#index = this.#ensureDevice(netlink);
      netlink.linkSetMtu(this.#index, this.mtu);
      netlink.addressReplace(this.#index, own.subnet.ip, 32);
      netlink.linkSetUp(this.#index);
    } catch (error) {
      netlink.close();
      this.#netlink = undefined;
      const message = isMissingKind(error)
        ? IPIP_MISSING
        : `ipip backend: ${(error as Error).message}`;
      return Promise.reject(new OverlayError(message, { cause: error }));
    }
    this.#state = new KernelState(netlink, `ipip ${this.device}`, () => this.#snapshot());
    log.info("ipip device up", {
      device: this.device,
      local: formatIp4(this.#underlay.ip),
      mtu: this.mtu,
      directRouting: this.#config.backend.directRouting,
    });
    this.#state.startReconciling();
    return Promise.resolve();
  }

  /**
   * True when a link is an ipip device this backend can use as it is: local address the
   * underlay interface's, remote any (flanneld checks the same two; it leaves `dev` unset,
   * so any underlay link is accepted and its device is adopted on a takeover).
   */
  #fits(link: LinkInfo): boolean {
    return link.kind === "ipip" && link.iptun !== undefined &&
      link.iptun.local === this.#underlay.ip && link.iptun.remote === 0;
  }

  /** Creates the device, or adopts one that already fits; recreates a stale one. */
  #ensureDevice(netlink: Netlink): number {
    const existing = netlink.link(this.device);
    if (existing) {
      if (this.#fits(existing)) {
        log.info("adopting the existing ipip device", { device: this.device });
        return existing.index;
      }
      if (existing.kind !== "ipip") {
        throw new Error(
          `device ${this.device} exists and is not an ipip device (remove it, or choose another name with --device)`,
        );
      }
      log.warn("recreating the ipip device: its local or remote address differs from the config", {
        device: this.device,
        local: formatIp4(existing.iptun?.local ?? 0),
        remote: formatIp4(existing.iptun?.remote ?? 0),
      });
      netlink.linkDelete(existing.index);
    }
    try {
      netlink.linkCreate({
        name: this.device,
        kind: "ipip",
        mtu: this.mtu,
        iptun: { local: this.#underlay.ip, link: this.#underlayIndex, ttl: 0, pmtudisc: false },
      });
    } catch (error) {
      if (!(error instanceof SystemError && error.errno === EEXIST)) throw error;
      // The kernel allows one ipip device per local address, remote and underlay link.
      const clash = netlink.links().find((link) =>
        link.kind === "ipip" && link.iptun?.local === this.#underlay.ip &&
        link.iptun.remote === 0 && link.iptun.link === this.#underlayIndex
      );
      if (!clash) throw error;
      throw new Error(
        `device ${clash.name} is already the ipip tunnel from ${
          formatIp4(this.#underlay.ip)
        } on ${this.#underlay.name} (remove it, or give overlay that name with --device)`,
      );
    }
    const index = this.#system.interfaceIndex(this.device);
    if (index === 0) throw new Error(`device ${this.device} vanished right after it was created`);
    return index;
  }

  /** ipip leases carry no BackendData; whatever is there is not used. */
  checkPeer(_peer: Lease): string | undefined {
    return undefined;
  }

  claims(_peer: Lease): string[] {
    return [];
  }

  addPeer(peer: Lease): void {
    if (!this.#netlink) return;
    this.#state?.setPeer(formatIp4Net(peer.subnet), [routeEntry(this.#netlink, this.#route(peer))]);
  }

  removePeer(peer: Lease): void {
    this.#state?.removePeer(formatIp4Net(peer.subnet));
  }

  batchPeers(work: () => void): void {
    if (this.#state) this.#state.batch(work);
    else work();
  }

  /** A peer's route: through the tunnel, or with DirectRouting on our segment, straight. */
  #route(peer: Lease): Route {
    const publicIp = peer.attrs.publicIp;
    const subnet = { dst: peer.subnet.ip, prefixLen: peer.subnet.prefixLen, gateway: publicIp };
    if (this.#config.backend.directRouting && this.#onSegment(publicIp)) {
      return { ...subnet, linkIndex: this.#underlayIndex };
    }
    return { ...subnet, linkIndex: this.#index, onlink: true };
  }

  #onSegment(ip: number): boolean {
    const mask = prefixMask(this.#underlay.prefixLen);
    return ((ip & mask) >>> 0) === ((this.#underlay.ip & mask) >>> 0);
  }

  /**
   * What this backend owns in the kernel: routes with our mark to peer subnets (through
   * our device, or on the underlay with DirectRouting), routes through our device (from
   * before the mark, or flanneld's), and flanneld's underlay routes while taking over; and
   * the routes of others that sit where a peer route would go.
   */
  #snapshot(): KernelSnapshot {
    const adopting = this.#adopting;
    this.#adopting = false; // flanneld's underlay routes are taken over at the first look only
    return snapshotRoutes(
      this.#netlink!,
      emptySnapshot(),
      (route) =>
        route.prefixLen === this.#config.subnetLen && netContains(this.#config.network, route.dst),
      (route) =>
        route.linkIndex === this.#index ||
        (adopting && isFlanneldRoute(route, this.#underlayIndex)),
    );
  }

  stop(): Promise<void> {
    this.#state?.close();
    this.#netlink = undefined;
    this.#state = undefined;
    return Promise.resolve();
  }

  owned(): BackendOwned {
    return { device: { name: this.device, kind: "ipip" }, files: [] };
  }

  renewIdentity(): boolean {
    return false;
  }

  observe(): BackendObservation {
    return {
      healthy: this.#index === 0 || this.#system.interfaceIndex(this.device) === this.#index,
      conflicts: this.#state?.conflicts() ?? [],
    };
  }

  lastHeard(_peer: Lease): null {
    return null;
  }
}

/**
 * Why this kernel cannot make ipip devices (IPIP_MISSING), or undefined when it can. An
 * ipip link already here (the kernel's tunl0, or flannel.ipip) says it can; otherwise a
 * device `probe` is created and deleted at once: the kernel loads the module for it if it
 * has one, and answers EOPNOTSUPP if not. Any other answer means the kind is known (or
 * that something else is wrong, which the backend's start then reports).
 */
export function ipipUnavailable(
  system: IpipSystem = SYSTEM,
  probe = `ovlprobe${crypto.randomUUID().slice(0, 4)}`,
): string | undefined {
  let netlink: Netlink | undefined;
  try {
    netlink = system.netlink();
    if (netlink.links().some((link) => link.kind === "ipip")) return undefined;
    netlink.linkCreate({ name: probe, kind: "ipip" });
    const index = system.interfaceIndex(probe);
    if (index !== 0) netlink.linkDelete(index);
    return undefined;
  } catch (error) {
    return isMissingKind(error) ? IPIP_MISSING : undefined;
  } finally {
    netlink?.close();
  }
}

/** The kernel's answer to a link of a kind it does not know: EOPNOTSUPP, "Unknown device type". */
function isMissingKind(error: unknown): boolean {
  return error instanceof SystemError && error.errno === EOPNOTSUPP;
}
