/**
 * The wireguard backend, wire- and etcd-compatible with flannel's `backend/wireguard`:
 * every packet between hosts is encrypted with WireGuard, peer by peer.
 *
 * As flannel's: device `flannel-wg` with `<subnet.ip>/32`, a route `<Network> dev
 * flannel-wg`, MTU = underlay − 80; the lease carries `"BackendType":"wireguard"` and
 * `"BackendData":{"PublicKey":"<base64>","Port":<ListenPort>}` (flannel ≥ 0.21 writes the
 * Port too; older flannel ignores it, and a lease without it means our own ListenPort, as
 * flannel reads it); one WireGuard peer per lease: AllowedIPs = the peer's subnet, endpoint
 * `PublicIP:Port`, the config's PSK and PersistentKeepaliveInterval. The private key lives
 * in a key file (lib/wireguard/key_file.ts), made once and kept across restarts.
 *
 * Two paths carry the packets (lib/wireguard/device_path.ts): the kernel's WireGuard
 * module where the host has it, and WireGuard in the agent on a TUN device where it does
 * not (this sandbox's kernel has none). Peers cannot tell them apart.
 *
 * IPv4 inner packets over an IPv4 underlay. flannel's IPv6 side (`flannel-wg-v6`,
 * ListenPortV6, BackendV6Data, Mode auto/ipv6) is not carried: a network with IPv6 is
 * refused with a message saying so, and Mode is accepted but only IPv4 endpoints are used.
 */
import type {
  Backend,
  BackendContext,
  BackendObservation,
  BackendOwned,
  PeerDetails,
} from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { interfaceIndex } from "../../ffi/libc.ts";
import { Netlink } from "../../ffi/netlink.ts";
import { isWireguardKey, type NetworkConfig, type WireguardConfig } from "../config.ts";
import { OverlayError } from "../errors.ts";
import { goField } from "../go_json.ts";
import { formatIp4, formatIp4Net } from "../ip.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import type {
  KernelPathFactory,
  PeerConfig,
  WireguardDevicePath,
} from "../wireguard/device_path.ts";
import { keyFilePath, loadOrCreateKey, type WireguardKeys } from "../wireguard/key_file.ts";
import { TUN_TX_QUEUE_LENGTH, UserspaceWireguard } from "../wireguard/userspace_path.ts";
import { ensureOwnRoute, keepOwnRoutes } from "./kernel_state.ts";

export interface WireguardBackendOptions {
  /** Makes the kernel path when the module is there; default: none (userspace). */
  readonly kernel?: KernelPathFactory;
}

export class WireguardBackend implements Backend {
  readonly type = "wireguard" as const;
  readonly mtu: number;
  readonly hearsPeers = true;
  readonly device: string;
  readonly #config: NetworkConfig;
  readonly #wg: WireguardConfig;
  readonly #keyPath: string;
  #keys: WireguardKeys;
  readonly #path: WireguardDevicePath;
  /** Peers by lease subnet ("10.10.1.0/24"): what was configured for each. */
  readonly #peers = new Map<string, PeerConfig>();
  #started = false;
  /** Puts the Network route back when someone deletes it. */
  #routeKeeper: { stop(): void } | undefined;

  constructor(context: BackendContext, options: WireguardBackendOptions = {}) {
    const config = context.config;
    if (!config.enableIPv4 || config.ipv6) {
      throw new OverlayError(
        "wireguard backend carries IPv4 only (flannel-wg); flannel's IPv6 device flannel-wg-v6 " +
          'is not supported: set "EnableIPv6": false, or use vxlan or udp for a network with IPv6',
      );
    }
    const wg = config.backend.wireguard!;
    if (wg.mode === "ipv6") {
      throw new OverlayError(
        'wireguard backend: "Mode" "ipv6" needs an IPv6 underlay, which this backend does not ' +
          'use (use "separate", the default, or "ipv4")',
      );
    }
    this.#config = config;
    this.#wg = wg;
    this.mtu = deviceMtu(config.backend, context.underlay.mtu);
    this.device = context.device!;
    this.#keyPath = keyFilePath(context.stateDir);
    try {
      this.#keys = loadOrCreateKey(this.#keyPath);
    } catch (error) {
      throw new OverlayError(`wireguard backend: ${(error as Error).message}`, { cause: error });
    }
    if (this.#keys.created) log.info("wireguard: made a new private key", { file: this.#keyPath });
    const kernel = options.kernel?.();
    if (kernel) {
      this.#path = kernel;
    } else {
      log.info(
        "wireguard: kernel module not present; encrypting in the agent (userspace WireGuard)",
      );
      this.#path = new UserspaceWireguard();
    }
  }

  /** flannel's BackendData: the public key, and the port it listens on. */
  get backendData(): Record<string, unknown> {
    return { PublicKey: this.#keys.publicKey, Port: this.#wg.listenPort };
  }

  get dataPath(): string {
    return this.#path.description;
  }

  get ownClaims(): string[] {
    return [`PublicKey ${this.#keys.publicKey}`];
  }

  async start(own: Lease): Promise<void> {
    const network = this.#config.network;
    try {
      await this.#path.start({
        device: this.device,
        privateKey: this.#keys.privateKey,
        listenPort: this.#wg.listenPort,
        mtu: this.mtu,
      });
    } catch (error) {
      throw new OverlayError(`wireguard backend: ${(error as Error).message}`, { cause: error });
    }
    this.#started = true;
    const netlink = new Netlink();
    try {
      disableIpv6(this.device);
      const index = interfaceIndex(this.device);
      netlink.linkSetMtu(index, this.mtu);
      if (this.#path.kind === "tun") netlink.linkSetTxQueueLength(index, TUN_TX_QUEUE_LENGTH);
      netlink.addressReplace(index, own.subnet.ip, 32);
      netlink.linkSetUp(index);
      const route = { dst: network.ip, prefixLen: network.prefixLen, linkIndex: index };
      ensureOwnRoute(netlink, route);
      this.#routeKeeper = keepOwnRoutes(`wireguard ${this.device}`, [route]);
    } catch (error) {
      await this.stop();
      throw new OverlayError(`wireguard backend: ${(error as Error).message}`, { cause: error });
    } finally {
      netlink.close();
    }
    log.info("wireguard backend device up", {
      device: this.device,
      address: `${formatIp4(own.subnet.ip)}/32`,
      route: `${formatIp4Net(network)} dev ${this.device}`,
      mtu: this.mtu,
      listenPort: this.#wg.listenPort,
      publicKey: this.#keys.publicKey,
      keyFile: this.#keyPath,
      psk: this.#wg.psk !== undefined,
      persistentKeepalive: this.#wg.persistentKeepalive,
      dataPath: this.dataPath,
    });
  }

  /** A peer's PublicKey must be a WireGuard key, its Port (when given) a UDP port. */
  checkPeer(peer: Lease): string | undefined {
    const { key, port } = peerData(peer);
    if (typeof key !== "string" || !isWireguardKey(key)) {
      return "BackendData.PublicKey is not a WireGuard public key (44 characters of base64)";
    }
    if (
      port !== undefined && port !== null &&
      !(typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535)
    ) {
      return "BackendData.Port is not a UDP port";
    }
    if (peer.attrs.publicIp === 0) return "PublicIP is missing (the WireGuard endpoint)";
    return undefined;
  }

  /** A public key names one host: of two leases with one key, the older is used. */
  claims(peer: Lease): string[] {
    const { key } = peerData(peer);
    return typeof key === "string" ? [`PublicKey ${key}`] : [];
  }

  addPeer(peer: Lease): void {
    const subnet = formatIp4Net(peer.subnet);
    const data = peerData(peer);
    const port = typeof data.port === "number" && data.port > 0 ? data.port : this.#wg.listenPort;
    const config: PeerConfig = {
      publicKey: data.key as string,
      endpointIp: peer.attrs.publicIp,
      endpointPort: port,
      allowedIps: [subnet],
      ...(this.#wg.psk ? { presharedKey: this.#wg.psk } : {}),
      persistentKeepalive: this.#wg.persistentKeepalive,
    };
    const previous = this.#peers.get(subnet);
    if (previous && JSON.stringify(previous) === JSON.stringify(config)) return;
    if (previous && previous.publicKey !== config.publicKey) {
      this.#path.removePeer(previous.publicKey);
    }
    this.#peers.set(subnet, config);
    this.#path.setPeer(config);
    log.info("wireguard peer", {
      subnet,
      endpoint: `${formatIp4(config.endpointIp)}:${config.endpointPort}`,
      publicKey: config.publicKey,
    });
  }

  removePeer(peer: Lease): void {
    const subnet = formatIp4Net(peer.subnet);
    const previous = this.#peers.get(subnet);
    if (!previous) return;
    this.#peers.delete(subnet);
    this.#path.removePeer(previous.publicKey);
  }

  observe(): BackendObservation {
    const seen = this.#path.observe();
    return {
      healthy: seen.healthy,
      ...(seen.counters ? { counters: seen.counters } : {}),
      conflicts: [],
      firstContacts: seen.firstContacts,
    };
  }

  /** The last authenticated message (handshake, data or keepalive) from the peer. */
  lastHeard(peer: Lease): number {
    const config = this.#peers.get(formatIp4Net(peer.subnet));
    if (!config) return 0;
    return this.#path.observe().peers[config.publicKey]?.lastHeard ?? 0;
  }

  /** WireGuard's view of a peer, for status: last handshake, bytes, endpoint. */
  peerDetails(peer: Lease): PeerDetails | undefined {
    const config = this.#peers.get(formatIp4Net(peer.subnet));
    const report = config && this.#path.observe().peers[config.publicKey];
    if (!report) return undefined;
    return {
      lastHandshake: report.lastHandshake,
      rxBytes: report.rxBytes,
      txBytes: report.txBytes,
      ...(report.endpoint ? { endpoint: report.endpoint } : {}),
    };
  }

  /**
   * The device and the key file. The key is kept when overlay stops (a restart keeps the
   * host's PublicKey, as flanneld keeps /run/flannel/wgkey); `overlay cleanup` removes it
   * with everything else overlay made, so the next run makes a new key.
   */
  owned(): BackendOwned {
    return { device: { name: this.device, kind: this.#path.kind }, files: [this.#keyPath] };
  }

  /**
   * Another, older lease carries our PublicKey (a copied key file): make a new key. Only
   * before the device is up; a running device keeps its key until the agent restarts.
   */
  renewIdentity(): boolean {
    if (this.#started) {
      log.error(
        `wireguard: another host uses this host's key from ${this.#keyPath}; ` +
          "stop overlay, remove the key file and start it again to make a new one",
      );
      return false;
    }
    Deno.removeSync(this.#keyPath);
    this.#keys = loadOrCreateKey(this.#keyPath);
    log.warn("wireguard: made a new private key (the old one was another host's)", {
      publicKey: this.#keys.publicKey,
    });
    return true;
  }

  async stop(): Promise<void> {
    this.#routeKeeper?.stop();
    await this.#path.stop();
  }
}

/**
 * The device carries IPv4 only: IPv6 off keeps the kernel's IPv6 chatter (router
 * solicitations) out of it. A host without IPv6 has nothing to turn off.
 */
function disableIpv6(device: string): void {
  try {
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${device}/disable_ipv6`, "1");
  } catch {
    // IPv6 disabled or absent on this host.
  }
}

/** A peer's BackendData PublicKey and Port, keys in any case, as flanneld's decoder reads them. */
function peerData(peer: Lease): { key: unknown; port: unknown } {
  const data = peer.attrs.backendData;
  return {
    key: data && goField(data, "PublicKey"),
    port: data && goField(data, "Port"),
  };
}
