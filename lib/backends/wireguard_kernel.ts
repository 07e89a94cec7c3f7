/**
 * The wireguard backend's kernel path: a WireGuard device made and configured through
 * rtnetlink and WireGuard's generic netlink family, as flanneld's backend does through
 * wgctrl, without the `ip` or `wg` binaries. The backend (lib/backends/wireguard.ts)
 * picks this path when kernelWireguardAvailable() says so, else its userspace path; it
 * owns addresses, routes and leases, this class only the device and its peers.
 *
 * Tested here by message encoding (tests/wireguard_codec_test.ts: every message against
 * what wireguard-tools' `wg` sends for the same command) and by the probe's answer on a
 * kernel without the module; the end-to-end test runs only where the module exists.
 */
import { SystemError } from "../../ffi/libc.ts";
import { GenericNetlink } from "../../ffi/genetlink.ts";
import { type Address, Netlink } from "../../ffi/netlink.ts";
import { formatAddress, type Request } from "../../ffi/netlink_codec.ts";
import {
  getDeviceRequest,
  parseDevice,
  type PeerStatus,
  setDeviceRequest,
  WG_GENL_NAME,
  WG_KEY_LEN,
} from "../../ffi/wireguard_codec.ts";
import { OverlayError } from "../errors.ts";
import { parseIp4Net } from "../ip.ts";
import { parseIp6Net } from "../ip6.ts";
import type {
  DevicePathObservation,
  DeviceSetup,
  KernelPathFactory,
  PeerConfig,
  PeerReport,
  WireguardDevicePath,
} from "../wireguard/device_path.ts";
import { encodeKey, parseKey } from "../wireguard/keys.ts";

export type { PeerStatus } from "../../ffi/wireguard_codec.ts";

/** The one line an operator sees when the kernel path is asked for on a kernel without it. */
export const NO_KERNEL_MODULE =
  "wireguard: this kernel has no wireguard module (modprobe wireguard; the agent falls back to userspace)";

/** The link kind (`ip link add … type wireguard`). */
export const WIREGUARD_KIND = "wireguard";

const EOPNOTSUPP = 95;

/**
 * True when this kernel can run WireGuard devices. Creates nothing: `/sys/module/wireguard`
 * exists when the module is loaded (or built in); else the generic netlink family
 * "wireguard" is looked up, which makes the kernel load the module when it is installed
 * but not loaded yet (the module alias `net-pf-16-proto-16-family-wireguard`), as
 * `ip link add … type wireguard` would. A throwaway device in the host's namespace was
 * the alternative, and is what this avoids: the agent never makes a device only to ask.
 */
export function kernelWireguardAvailable(): boolean {
  try {
    if (Deno.statSync("/sys/module/wireguard").isDirectory) return true;
  } catch {
    // Not loaded (or no sysfs): ask generic netlink.
  }
  let genl: GenericNetlink | undefined;
  try {
    genl = new GenericNetlink();
    return genl.familyId(WG_GENL_NAME) !== undefined;
  } catch {
    return false; // no NETLINK_GENERIC socket: no way to configure a device either
  } finally {
    genl?.close();
  }
}

/** A peer as the backend gives it: one lease of the network. */
export interface KernelPeer {
  /** 32 bytes. */
  readonly publicKey: Uint8Array;
  /** 32 bytes; absent means none (the peer's preshared key is cleared). */
  readonly psk?: Uint8Array;
  /** `PublicIP:ListenPort` of the lease: IPv4 as a number, IPv6 as a bigint. */
  readonly endpoint: { readonly ip: Address; readonly port: number };
  /** Persistent keepalive in seconds; 0 = off. */
  readonly keepaliveSeconds: number;
  /** The lease's subnet(s); they replace whatever the peer had. */
  readonly allowedIps: readonly { readonly ip: Address; readonly prefixLen: number }[];
}

/**
 * A kernel WireGuard device of one name (`flannel-wg`). Not thread-safe; each call is
 * synchronous (one netlink round trip) and throws OverlayError naming what failed.
 */
export class KernelWireguard {
  readonly device: string;
  readonly #netlink = new Netlink();
  readonly #genl = new GenericNetlink();
  #familyId = 0;

  constructor(device: string) {
    this.device = device;
  }

  /**
   * Makes the device, or adopts a wireguard device of that name (a restart), and sets
   * its MTU, private key and listen port, fwmark 0 and no peers (as `ip link add NAME
   * mtu MTU type wireguard; wg setconf NAME` with only an [Interface] section), then sets
   * it up. Throws OverlayError NO_KERNEL_MODULE when the kernel has no WireGuard, and
   * when a device of that name is of another kind.
   *
   * flanneld (pkg/backend/wireguard/device.go) configures the same (ReplacePeers, key,
   * port) but deletes and re-creates a device it finds; adopting it instead keeps its
   * index, addresses and routes across a restart, and replacing the peers makes the
   * result the same.
   */
  create(mtu: number, privateKey: Uint8Array, listenPort: number): void {
    checkKey(privateKey, "private key");
    const familyId = this.#family();
    const existing = this.#netlink.link(this.device);
    if (existing && existing.kind !== WIREGUARD_KIND) {
      throw new OverlayError(
        `wireguard: device "${this.device}" exists and is ${
          existing.kind ? `a ${existing.kind}` : "not a wireguard"
        } device (delete it: ip link del ${this.device})`,
      );
    }
    try {
      if (!existing) this.#netlink.linkCreate({ name: this.device, kind: WIREGUARD_KIND, mtu });
      else if (existing.mtu !== mtu) this.#netlink.linkSetMtu(existing.index, mtu);
    } catch (error) {
      if (error instanceof SystemError && error.errno === EOPNOTSUPP) {
        throw new OverlayError(NO_KERNEL_MODULE, { cause: error });
      }
      throw this.#failure(error);
    }
    this.#set(
      setDeviceRequest(familyId, {
        name: this.device,
        privateKey,
        listenPort,
        fwmark: 0,
        replacePeers: true,
      }),
      `set ${this.device} private-key … listen-port ${listenPort}`,
    );
    const index = this.#netlink.link(this.device)?.index;
    if (!index) throw new OverlayError(`wireguard: device "${this.device}" vanished`);
    try {
      this.#netlink.linkSetUp(index);
    } catch (error) {
      throw this.#failure(error);
    }
  }

  /**
   * Adds the peer or updates it to exactly this (`wg set NAME peer KEY preshared-key …
   * endpoint IP:PORT persistent-keepalive N allowed-ips …`): its allowed IPs replace the
   * old ones, and no psk clears the old one (flanneld leaves it out; on a new peer the
   * two are the same). flanneld then removes other peers at the same endpoint IP (a
   * host that came back with a new key): the backend does that with peers() and
   * removePeer().
   */
  setPeer(peer: KernelPeer): void {
    checkKey(peer.publicKey, "peer public key");
    if (peer.psk) checkKey(peer.psk, "preshared key");
    this.#set(
      setDeviceRequest(this.#family(), {
        name: this.device,
        peers: [{
          publicKey: peer.publicKey,
          presharedKey: peer.psk ?? new Uint8Array(WG_KEY_LEN),
          endpoint: peer.endpoint,
          keepaliveSeconds: peer.keepaliveSeconds,
          replaceAllowedIps: true,
          allowedIps: peer.allowedIps,
        }],
      }),
      `set ${this.device} peer ${base64(peer.publicKey)}`,
    );
  }

  /** Removes the peer (`wg set NAME peer KEY remove`); an unknown peer is fine. */
  removePeer(publicKey: Uint8Array): void {
    checkKey(publicKey, "peer public key");
    this.#set(
      setDeviceRequest(this.#family(), {
        name: this.device,
        peers: [{ publicKey, remove: true }],
      }),
      `set ${this.device} peer ${base64(publicKey)} remove`,
    );
  }

  /**
   * The device's peers with last handshake (ms since the epoch, 0 = never), bytes
   * received and sent, endpoint and allowed IPs (`wg show NAME dump`).
   */
  peers(): PeerStatus[] {
    try {
      return parseDevice(this.#genl.dump(getDeviceRequest(this.#family(), this.device)))
        ?.peers ?? [];
    } catch (error) {
      throw this.#failure(error);
    }
  }

  /** Deletes the device (`ip link del NAME`); absent is fine. */
  delete(): void {
    const link = this.#netlink.link(this.device);
    if (link?.kind === WIREGUARD_KIND) this.#netlink.linkDelete(link.index);
  }

  /** Closes the netlink sockets (the device stays). */
  close(): void {
    this.#netlink.close();
    this.#genl.close();
  }

  /** The family id of "wireguard", looked up once; NO_KERNEL_MODULE when there is none. */
  #family(): number {
    if (this.#familyId) return this.#familyId;
    const id = this.#genl.familyId(WG_GENL_NAME);
    if (id === undefined) throw new OverlayError(NO_KERNEL_MODULE);
    this.#familyId = id;
    return id;
  }

  #set(request: Request, what: string): void {
    try {
      this.#genl.request(request, `wireguard ${what}`);
    } catch (error) {
      throw this.#failure(error);
    }
  }

  #failure(error: unknown): OverlayError {
    return new OverlayError(`wireguard: ${(error as Error).message}`, { cause: error });
  }
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== WG_KEY_LEN) {
    throw new RangeError(`Invalid WireGuard ${what}: ${key.length} bytes (32 expected)`);
  }
}

/** A key as `wg` prints it (base64), for messages. */
function base64(key: Uint8Array): string {
  return btoa(String.fromCharCode(...key));
}

// The kernel path of the wireguard backend (lib/wireguard/device_path.ts): the module
// drives the device, so packets never enter the agent. Chosen when the module is present;
// this development machine's kernel has none, so here the factory answers undefined and
// the userspace path runs.

/** The kernel path where the module is present, else undefined (see KernelPathFactory). */
export const kernelPath: KernelPathFactory = () =>
  kernelWireguardAvailable() ? new KernelPath() : undefined;

class KernelPath implements WireguardDevicePath {
  readonly description = "kernel wireguard";
  readonly kind = WIREGUARD_KIND;
  #device: KernelWireguard | undefined;
  /** Peers that completed a handshake at some look: firstContacts counts them. */
  readonly #contacted = new Set<string>();

  start(setup: DeviceSetup): Promise<void> {
    const device = new KernelWireguard(setup.device);
    this.#device = device;
    device.create(setup.mtu, parseKey(setup.privateKey, "private key"), setup.listenPort);
    return Promise.resolve();
  }

  setPeer(peer: PeerConfig): void {
    this.#device?.setPeer({
      publicKey: parseKey(peer.publicKey, "peer public key"),
      ...(peer.presharedKey ? { psk: parseKey(peer.presharedKey, "PSK") } : {}),
      endpoint: { ip: peer.endpointIp, port: peer.endpointPort },
      keepaliveSeconds: peer.persistentKeepalive,
      allowedIps: peer.allowedIps.map(parseAllowedIp),
    });
  }

  removePeer(publicKey: string): void {
    this.#device?.removePeer(parseKey(publicKey, "peer public key"));
  }

  stop(): Promise<void> {
    // The device stays with its peers for the next run, as flannel's does.
    this.#device?.close();
    this.#device = undefined;
    return Promise.resolve();
  }

  observe(): DevicePathObservation {
    const peers: Record<string, PeerReport> = {};
    for (const status of this.#device?.peers() ?? []) {
      const key = encodeKey(status.publicKey);
      if (status.lastHandshakeMs > 0) this.#contacted.add(key);
      peers[key] = {
        lastHandshake: status.lastHandshakeMs,
        // The kernel reports handshakes, not each message: a live session handshakes
        // at least every 2 minutes.
        lastHeard: status.lastHandshakeMs,
        rxBytes: status.rxBytes,
        txBytes: status.txBytes,
        ...(status.endpoint
          ? { endpoint: `${formatAddress(status.endpoint.ip)}:${status.endpoint.port}` }
          : {}),
      };
    }
    return { healthy: this.#device !== undefined, peers, firstContacts: this.#contacted.size };
  }
}

function parseAllowedIp(cidr: string): { ip: number | bigint; prefixLen: number } {
  const net = parseIp4Net(cidr) ?? parseIp6Net(cidr);
  if (!net) throw new Error(`allowed IP ${JSON.stringify(cidr)} is not a CIDR`);
  return net;
}
