/**
 * A backend carries traffic between hosts. The agent gives it the underlay and the
 * config, tells it our lease and every peer lease as they come and go; the backend
 * knows nothing of etcd. Each type lives in its own file under lib/backends/.
 *
 * MTU terms: the underlay MTU is the wire MTU of the host interface; the device MTU is
 * what containers see, underlay MTU minus the encapsulation overhead:
 *   udp   28 = 20 (outer IPv4) + 8 (UDP)
 *   vxlan 50 = 20 (outer IPv4) + 8 (UDP) + 8 (VXLAN) + 14 (inner Ethernet)
 *   vxlan over an IPv6 underlay (flannel-v6.<VNI>) 70 = 40 (outer IPv6) + 8 + 8 + 14
 *   host-gw 0 (no encapsulation)
 *   ipip  20 = 20 (outer IPv4; the inner packet follows it as is, protocol 4)
 *   wireguard 80, flannel's figure for either underlay family: 40 (outer IPv6, or IPv4's 20
 *     with room to spare) + 8 (UDP) + 16 (type, receiver index, counter) + 16 (tag)
 */
import type { BackendConfig, BackendType, NetworkConfig } from "./config.ts";
import type { PeerStatus } from "./health.ts";
import type { Lease } from "./lease.ts";
import type { Underlay } from "./underlay.ts";

export const ENCAPSULATION_OVERHEAD: Record<BackendType, number> = {
  "udp": 28,
  "vxlan": 50,
  "host-gw": 0,
  "ipip": 20,
  "wireguard": 80,
};

/** vxlan's overhead over an IPv6 underlay: 40 (outer IPv6) + 8 (UDP) + 8 + 14. */
export const VXLAN6_OVERHEAD = 70;

export interface Backend {
  readonly type: BackendType;
  /** The device MTU published in the subnet file. */
  readonly mtu: number;
  /** The lease's BackendData; undefined when the type carries none (udp). */
  readonly backendData?: Record<string, unknown>;
  /** The lease's BackendV6Data in a network with IPv6 (vxlan's v6 device); undefined: none. */
  readonly backendV6Data?: Record<string, unknown>;
  /** This host's own claims (see claims()): what no other lease may carry. */
  readonly ownClaims: string[];
  /** The device this backend owns, which --health checks is present. */
  readonly device?: string;
  /** Which data path is active, for health and status ("kernel vxlan", "udp: …", …). */
  readonly dataPath: string;
  /** True when the data path stamps when it last heard from each peer (lastHeard). */
  readonly hearsPeers: boolean;
  /** Sets up forwarding for our own lease. */
  start(own: Lease): Promise<void>;
  /** Why this backend cannot use a peer's BackendData, or undefined when it can. */
  checkPeer(peer: Lease): string | undefined;
  /**
   * What a peer's lease claims that no other lease may share ("VtepMAC 02:…": vxlan's
   * FDB is keyed by MAC). Of two leases with one claim, the older is used.
   */
  claims(peer: Lease): string[];
  /** A peer's lease appeared or changed (it passed checkPeer and holds its claims). */
  addPeer(peer: Lease): void;
  /** A peer's lease was deleted, expired or is no longer usable. */
  removePeer(peer: Lease): void;
  /**
   * Runs `work` (addPeer and removePeer calls) with what it changes sent to the data path
   * together: the kernel backends make one netlink batch of it, not one per peer.
   */
  batchPeers?(work: () => void): void;
  /** Stops forwarding. */
  stop(): Promise<void>;
  /** The data path's condition, read on every heartbeat. */
  observe(): BackendObservation;
  /** Epoch ms the data path last heard from a peer: 0 when never, null when it cannot tell. */
  lastHeard(peer: Lease): number | null;
  /** More of a peer's state for status, where the backend has it (wireguard's handshake). */
  peerDetails?(peer: Lease): PeerDetails | undefined;
  /** What this backend makes on the host, recorded for `overlay cleanup` (lib/inventory.ts). */
  owned(): BackendOwned;
  /**
   * Picks a new identity when another lease claims this host's (a VtepMAC copied with a
   * cloned state folder): a new MAC on the device, then `backendData` says it. Returns
   * false when the backend has no identity to change.
   */
  renewIdentity(): boolean;
}

/** The optional per-peer fields of PeerStatus (lib/health.ts). */
export type PeerDetails = Pick<PeerStatus, "lastHandshake" | "rxBytes" | "txBytes" | "endpoint">;

export interface BackendOwned {
  /** Its device and the device kind (`ip -d link` shows it): "tun", "vxlan", "ipip". */
  readonly device?: { readonly name: string; readonly kind: string };
  /** Further devices it makes (vxlan's IPv6 device `flannel-v6.<VNI>` beside `device`). */
  readonly moreDevices?: { readonly name: string; readonly kind: string }[];
  /** Files it keeps in the state folder. */
  readonly files: string[];
}

export interface BackendObservation {
  /** False when the data path has failed (health turns not-ready). */
  readonly healthy: boolean;
  /** Packet and drop counters of a userspace data path. */
  readonly counters?: Record<string, number>;
  /** Entries the backend wants that someone else's entry holds (see lib/ownership.ts). */
  readonly conflicts: string[];
  /** Grows when a peer is heard from for the first time (hearsPeers backends). */
  readonly firstContacts?: number;
}

export interface BackendContext {
  readonly config: NetworkConfig;
  readonly underlay: Underlay;
  /** The device's name: --device, else the type's default (lib/backends/registry.ts). */
  readonly device?: string;
  /** The agent's state folder, for what a backend keeps across restarts (the VtepMAC). */
  readonly stateDir: string;
  /** Taking over from flanneld: adopt its routes at the first reconcile (lib/flanneld.ts). */
  readonly takeover?: boolean;
}

/** The device MTU for a backend on an underlay. */
export function deviceMtu(backend: BackendConfig, underlayMtu: number): number {
  return backend.mtu ?? underlayMtu - ENCAPSULATION_OVERHEAD[backend.type];
}
