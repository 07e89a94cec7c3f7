/**
 * WireGuard's generic netlink messages (family "wireguard", version 1): the encoders of
 * WG_CMD_SET_DEVICE (device keys and port, one peer, a peer's removal) and the parser of
 * WG_CMD_GET_DEVICE's dump. No socket here: lib/backends/wireguard_kernel.ts sends these
 * through ffi/genetlink.ts.
 *
 * Constants from the kernel's include/uapi/linux/wireguard.h (torvalds/linux, and this
 * machine's /usr/include/linux/wireguard.h: identical enums). Attribute order follows
 * wireguard-tools' kernel_set_device (src/ipc-linux.h), so `wg set` sends the same bytes.
 *
 * Layouts inside attributes (x86_64, host byte order unless said):
 *   sockaddr_in    16 B: u16 family (AF_INET 2), u16 port (big endian), u32 address (big
 *                        endian), 8 zero bytes
 *   sockaddr_in6   28 B: u16 family (AF_INET6 10), u16 port (big endian), u32 flowinfo,
 *                        16 address bytes, u32 scope id
 *   __kernel_timespec 16 B: i64 seconds, i64 nanoseconds (wall clock, 0 = never)
 * Nesting: WGDEVICE_A_PEERS holds one nested attribute per peer (type 0, an array index
 * the kernel ignores); a peer's WGPEER_A_ALLOWEDIPS holds one nested attribute per
 * allowed IP (type 0 too). Nested attributes carry NLA_F_NESTED (0x8000) in their type,
 * as libmnl's mnl_attr_nest_start sets it.
 */
import {
  type Address,
  AF_INET,
  AF_INET6,
  type Attr,
  cstringOf,
  type Message,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  parseAttrs,
  readAddress,
  type Request,
  stringAttr,
  u32Attr,
  u8Attr,
} from "./netlink_codec.ts";
import { GENL_HDRLEN, genlmsghdr } from "./genetlink_codec.ts";
import { ip6Bytes, ip6FromBytes } from "../lib/ip6.ts";

export const WG_GENL_NAME = "wireguard";
export const WG_GENL_VERSION = 1;
export const WG_KEY_LEN = 32;

export const WG_CMD_GET_DEVICE = 0;
export const WG_CMD_SET_DEVICE = 1;

export const WGDEVICE_F_REPLACE_PEERS = 1;

export const WGDEVICE_A_IFINDEX = 1;
export const WGDEVICE_A_IFNAME = 2;
export const WGDEVICE_A_PRIVATE_KEY = 3;
export const WGDEVICE_A_PUBLIC_KEY = 4;
export const WGDEVICE_A_FLAGS = 5;
export const WGDEVICE_A_LISTEN_PORT = 6;
export const WGDEVICE_A_FWMARK = 7;
export const WGDEVICE_A_PEERS = 8;

export const WGPEER_F_REMOVE_ME = 1;
export const WGPEER_F_REPLACE_ALLOWEDIPS = 2;
export const WGPEER_F_UPDATE_ONLY = 4;

export const WGPEER_A_PUBLIC_KEY = 1;
export const WGPEER_A_PRESHARED_KEY = 2;
export const WGPEER_A_FLAGS = 3;
export const WGPEER_A_ENDPOINT = 4;
export const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5;
export const WGPEER_A_LAST_HANDSHAKE_TIME = 6;
export const WGPEER_A_RX_BYTES = 7;
export const WGPEER_A_TX_BYTES = 8;
export const WGPEER_A_ALLOWEDIPS = 9;
export const WGPEER_A_PROTOCOL_VERSION = 10;

export const WGALLOWEDIP_A_FAMILY = 1;
export const WGALLOWEDIP_A_IPADDR = 2;
export const WGALLOWEDIP_A_CIDR_MASK = 3;

/** A UDP endpoint: IPv4 address as a number, IPv6 as a bigint. */
export interface Endpoint {
  readonly ip: Address;
  readonly port: number;
}

/** An allowed IP range of a peer (cryptokey routing): address and prefix length. */
export interface AllowedIp {
  readonly ip: Address;
  readonly prefixLen: number;
}

/** One peer in a WG_CMD_SET_DEVICE: only what is given is changed. */
export interface PeerConfig {
  readonly publicKey: Uint8Array;
  /** 32 bytes; all zeros removes the peer's preshared key. */
  readonly presharedKey?: Uint8Array;
  readonly endpoint?: Endpoint;
  /** Seconds; 0 turns persistent keepalives off. */
  readonly keepaliveSeconds?: number;
  /** Drop the peer's allowed IPs before adding `allowedIps` (`wg set … allowed-ips`). */
  readonly replaceAllowedIps?: boolean;
  /** Remove the peer (`wg set … peer KEY remove`). */
  readonly remove?: boolean;
  readonly allowedIps?: readonly AllowedIp[];
}

/** A WG_CMD_SET_DEVICE of the device named `name`: only what is given is changed. */
export interface DeviceConfig {
  readonly name: string;
  readonly privateKey?: Uint8Array;
  /** 0 lets the kernel choose. */
  readonly listenPort?: number;
  readonly fwmark?: number;
  /** Remove every peer before adding `peers` (`wg setconf`). */
  readonly replacePeers?: boolean;
  readonly peers?: readonly PeerConfig[];
}

/** A peer as WG_CMD_GET_DEVICE reports it. */
export interface PeerStatus {
  readonly publicKey: Uint8Array;
  readonly endpoint?: Endpoint;
  readonly keepaliveSeconds: number;
  /** Wall-clock time of the last handshake in ms since the epoch; 0 = never. */
  readonly lastHandshakeMs: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly allowedIps: AllowedIp[];
}

/** A device as WG_CMD_GET_DEVICE reports it (the private key is not kept). */
export interface DeviceStatus {
  readonly index: number;
  readonly name: string;
  readonly publicKey?: Uint8Array;
  readonly listenPort: number;
  readonly fwmark: number;
  readonly peers: PeerStatus[];
}

/** The WG_CMD_SET_DEVICE request for `config` to family `familyId`. */
export function setDeviceRequest(familyId: number, config: DeviceConfig): Request {
  const attrs: Attr[] = [stringAttr(WGDEVICE_A_IFNAME, config.name)];
  if (config.privateKey) attrs.push(keyAttr(WGDEVICE_A_PRIVATE_KEY, config.privateKey));
  if (config.listenPort !== undefined) {
    attrs.push(u16Attr(WGDEVICE_A_LISTEN_PORT, config.listenPort));
  }
  if (config.fwmark !== undefined) attrs.push(u32Attr(WGDEVICE_A_FWMARK, config.fwmark));
  if (config.replacePeers) attrs.push(u32Attr(WGDEVICE_A_FLAGS, WGDEVICE_F_REPLACE_PEERS));
  if (config.peers?.length) {
    attrs.push({ type: WGDEVICE_A_PEERS, value: config.peers.map(peerAttr) });
  }
  return {
    type: familyId,
    flags: NLM_F_REQUEST | NLM_F_ACK,
    header: genlmsghdr(WG_CMD_SET_DEVICE, WG_GENL_VERSION),
    attrs,
  };
}

/** The WG_CMD_GET_DEVICE dump request for the device named `name` (`wg show NAME`). */
export function getDeviceRequest(familyId: number, name: string): Request {
  return {
    type: familyId,
    flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
    header: genlmsghdr(WG_CMD_GET_DEVICE, WG_GENL_VERSION),
    attrs: [stringAttr(WGDEVICE_A_IFNAME, name)],
  };
}

/** One peer of WGDEVICE_A_PEERS (nested, type 0). */
function peerAttr(peer: PeerConfig): Attr {
  const attrs: Attr[] = [keyAttr(WGPEER_A_PUBLIC_KEY, peer.publicKey)];
  let flags = peer.remove ? WGPEER_F_REMOVE_ME : 0;
  if (peer.replaceAllowedIps) flags |= WGPEER_F_REPLACE_ALLOWEDIPS;
  if (peer.presharedKey) attrs.push(keyAttr(WGPEER_A_PRESHARED_KEY, peer.presharedKey));
  if (peer.endpoint) attrs.push({ type: WGPEER_A_ENDPOINT, value: sockaddr(peer.endpoint) });
  if (peer.keepaliveSeconds !== undefined) {
    attrs.push(u16Attr(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, peer.keepaliveSeconds));
  }
  if (flags) attrs.push(u32Attr(WGPEER_A_FLAGS, flags));
  if (peer.allowedIps?.length) {
    attrs.push({ type: WGPEER_A_ALLOWEDIPS, value: peer.allowedIps.map(allowedIpAttr) });
  }
  return { type: 0, value: attrs };
}

/** One allowed IP of WGPEER_A_ALLOWEDIPS (nested, type 0): family, address, prefix. */
function allowedIpAttr(allowed: AllowedIp): Attr {
  const v6 = typeof allowed.ip === "bigint";
  if (allowed.prefixLen < 0 || allowed.prefixLen > (v6 ? 128 : 32)) {
    throw new RangeError(`Invalid allowed IP prefix length ${allowed.prefixLen}`);
  }
  return {
    type: 0,
    value: [
      u16Attr(WGALLOWEDIP_A_FAMILY, v6 ? AF_INET6 : AF_INET),
      { type: WGALLOWEDIP_A_IPADDR, value: addressBytes(allowed.ip) },
      u8Attr(WGALLOWEDIP_A_CIDR_MASK, allowed.prefixLen),
    ],
  };
}

/** A struct sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) of an endpoint. */
export function sockaddr(endpoint: Endpoint): Uint8Array {
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) {
    throw new RangeError(`Invalid endpoint port ${endpoint.port}`);
  }
  const v6 = typeof endpoint.ip === "bigint";
  const bytes = new Uint8Array(v6 ? 28 : 16);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
  view.setUint16(2, endpoint.port, false);
  bytes.set(addressBytes(endpoint.ip), v6 ? 8 : 4);
  return bytes;
}

/** The endpoint in sockaddr_in / sockaddr_in6 bytes; undefined for anything else. */
export function parseSockaddr(view: DataView): Endpoint | undefined {
  if (view.byteLength < 2) return undefined;
  const family = view.getUint16(0, true);
  if (family === AF_INET && view.byteLength === 16) {
    return { ip: view.getUint32(4, false), port: view.getUint16(2, false) };
  }
  if (family === AF_INET6 && view.byteLength === 28) {
    const ip = ip6FromBytes(new Uint8Array(view.buffer, view.byteOffset + 8, 16));
    return { ip, port: view.getUint16(2, false) };
  }
  return undefined;
}

/**
 * The device of a WG_CMD_GET_DEVICE dump (its messages in order). The kernel splits a
 * large device over several messages: later ones repeat the name and carry more peers,
 * and a peer whose allowed IPs did not fit repeats with its public key and the rest of
 * them; those are merged here, as wireguard-tools' coalesce_peers does. Peers without a
 * 32-byte public key are skipped. Undefined when no message describes a device.
 */
export function parseDevice(messages: readonly Message[]): DeviceStatus | undefined {
  let device: DeviceStatus | undefined;
  for (const message of messages) {
    if (message.body.byteLength < GENL_HDRLEN) continue;
    const attrs = parseAttrs(message.body, GENL_HDRLEN);
    const peers = parsePeers(attrs.get(WGDEVICE_A_PEERS));
    if (!device) {
      const publicKey = keyOf(attrs.get(WGDEVICE_A_PUBLIC_KEY));
      const name = attrs.get(WGDEVICE_A_IFNAME);
      device = {
        index: u32Of(attrs.get(WGDEVICE_A_IFINDEX)),
        name: name ? cstringOf(name) : "",
        ...(publicKey ? { publicKey } : {}),
        listenPort: u16Of(attrs.get(WGDEVICE_A_LISTEN_PORT)),
        fwmark: u32Of(attrs.get(WGDEVICE_A_FWMARK)),
        peers: [],
      };
    }
    for (const peer of peers) {
      const last = device.peers[device.peers.length - 1];
      if (last && sameKey(last.publicKey, peer.publicKey)) last.allowedIps.push(...peer.allowedIps);
      else device.peers.push(peer);
    }
  }
  return device;
}

function parsePeers(view: DataView | undefined): PeerStatus[] {
  if (!view) return [];
  const peers: PeerStatus[] = [];
  for (const entry of parseAttrList(view)) {
    const attrs = parseAttrs(entry, 0);
    const publicKey = keyOf(attrs.get(WGPEER_A_PUBLIC_KEY));
    if (!publicKey) continue;
    const endpointView = attrs.get(WGPEER_A_ENDPOINT);
    const endpoint = endpointView ? parseSockaddr(endpointView) : undefined;
    peers.push({
      publicKey,
      ...(endpoint ? { endpoint } : {}),
      keepaliveSeconds: u16Of(attrs.get(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL)),
      lastHandshakeMs: timespecMs(attrs.get(WGPEER_A_LAST_HANDSHAKE_TIME)),
      rxBytes: u64Of(attrs.get(WGPEER_A_RX_BYTES)),
      txBytes: u64Of(attrs.get(WGPEER_A_TX_BYTES)),
      allowedIps: parseAllowedIps(attrs.get(WGPEER_A_ALLOWEDIPS)),
    });
  }
  return peers;
}

function parseAllowedIps(view: DataView | undefined): AllowedIp[] {
  if (!view) return [];
  const allowed: AllowedIp[] = [];
  for (const entry of parseAttrList(view)) {
    const attrs = parseAttrs(entry, 0);
    const family = u16Of(attrs.get(WGALLOWEDIP_A_FAMILY));
    const ip = readAddress(attrs.get(WGALLOWEDIP_A_IPADDR));
    const mask = attrs.get(WGALLOWEDIP_A_CIDR_MASK);
    if (ip === undefined || !mask || mask.byteLength < 1) continue;
    const prefixLen = mask.getUint8(0);
    const v6 = typeof ip === "bigint";
    if (family !== (v6 ? AF_INET6 : AF_INET) || prefixLen > (v6 ? 128 : 32)) continue;
    allowed.push({ ip, prefixLen });
  }
  return allowed;
}

/** The values of a netlink array (every entry has type 0, so a Map would keep one). */
function parseAttrList(view: DataView): DataView[] {
  const entries: DataView[] = [];
  let offset = 0;
  while (offset + 4 <= view.byteLength) {
    const length = view.getUint16(offset, true);
    if (length < 4 || offset + length > view.byteLength) break;
    entries.push(new DataView(view.buffer, view.byteOffset + offset + 4, length - 4));
    offset += (length + 3) & ~3;
  }
  return entries;
}

function keyAttr(type: number, key: Uint8Array): Attr {
  if (key.length !== WG_KEY_LEN) {
    throw new RangeError(`Invalid WireGuard key: ${key.length} bytes (32 expected)`);
  }
  return { type, value: key.slice() };
}

function u16Attr(type: number, value: number): Attr {
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setUint16(0, value, true);
  return { type, value: bytes };
}

function addressBytes(ip: Address): Uint8Array {
  if (typeof ip === "bigint") return ip6Bytes(ip);
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, ip, false);
  return bytes;
}

function keyOf(view: DataView | undefined): Uint8Array | undefined {
  if (view?.byteLength !== WG_KEY_LEN) return undefined;
  return new Uint8Array(view.buffer, view.byteOffset, WG_KEY_LEN).slice();
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function u16Of(view: DataView | undefined): number {
  return view && view.byteLength >= 2 ? view.getUint16(0, true) : 0;
}

function u32Of(view: DataView | undefined): number {
  return view && view.byteLength >= 4 ? view.getUint32(0, true) : 0;
}

function u64Of(view: DataView | undefined): number {
  return view && view.byteLength >= 8 ? Number(view.getBigUint64(0, true)) : 0;
}

/** A __kernel_timespec (16 bytes; 8 bytes on old 32-bit kernels) in ms; 0 = never. */
function timespecMs(view: DataView | undefined): number {
  if (view?.byteLength === 16) {
    const seconds = Number(view.getBigInt64(0, true));
    const nanoseconds = Number(view.getBigInt64(8, true));
    return seconds > 0 ? seconds * 1000 + Math.floor(nanoseconds / 1e6) : 0;
  }
  if (view?.byteLength === 8) {
    const seconds = view.getInt32(0, true);
    return seconds > 0 ? seconds * 1000 + Math.floor(view.getInt32(4, true) / 1e6) : 0;
  }
  return 0;
}
