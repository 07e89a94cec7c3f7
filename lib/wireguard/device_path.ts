/**
 * How the wireguard backend drives a WireGuard device, whoever implements it: the kernel
 * module (configured over rtnetlink and WireGuard's generic netlink family) where the host
 * has it, or the agent itself on a TUN device (lib/wireguard/userspace_path.ts) where it
 * does not. The backend does the rest the same way for both: the device's address, MTU,
 * route and the peers from the leases.
 */
import type { PeerConfig, PeerReport } from "./datapath_worker.ts";

export type { PeerConfig, PeerReport };

/** What a path needs to make its device. */
export interface DeviceSetup {
  /** The device's name, `flannel-wg` by default. */
  readonly device: string;
  /** Base64, as in the key file. */
  readonly privateKey: string;
  /** UDP port the device listens on (`ListenPort`). */
  readonly listenPort: number;
  /** The device MTU (underlay − 80). */
  readonly mtu: number;
}

export interface DevicePathObservation {
  /** False when the data path has failed. */
  readonly healthy: boolean;
  /** Packet, drop and handshake counters (the userspace path). */
  readonly counters?: Record<string, number>;
  /** Per peer, by public key. */
  readonly peers: Record<string, PeerReport>;
  /** Grows when a peer is heard from for the first time. */
  readonly firstContacts: number;
}

export interface WireguardDevicePath {
  /** Which path runs, for the log, `overlay status` and /metrics. */
  readonly description: string;
  /** The device kind `ip -d link` shows, for `overlay cleanup`: "wireguard" or "tun". */
  readonly kind: string;
  /** Makes the device (present, not yet addressed or up) and starts carrying packets. */
  start(setup: DeviceSetup): Promise<void>;
  /** Adds or reconfigures one peer (as `wg set <dev> peer …`). */
  setPeer(peer: PeerConfig): void;
  /** Removes one peer (as `wg set <dev> peer <key> remove`). */
  removePeer(publicKey: string): void;
  /** Stops carrying packets; the device stays for the next run, as flannel's does. */
  stop(): Promise<void>;
  observe(): DevicePathObservation;
}

/**
 * Makes the kernel path when the host has the WireGuard module; undefined when it does
 * not. The lead wires lib/backends/wireguard_kernel.ts in here.
 */
export type KernelPathFactory = () => WireguardDevicePath | undefined;
