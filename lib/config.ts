/**
 * The network config, in flannel's JSON at `<prefix>/config`:
 * `{"Network":"10.10.0.0/16","SubnetLen":24,"Backend":{"Type":"udp","Port":8285}}`.
 * Parsing validates everything and fills flannel's defaults; the original JSON object
 * is kept so fields we do not know survive a read-modify-write. Fields are looked up as
 * flanneld's Go decoder matches keys, in any case (goField): `{"network":…}` is a Network.
 */
import { goField } from "./go_json.ts";
import {
  formatIp4,
  formatIp4Net,
  type Ip4Net,
  netContains,
  netsOverlap,
  parseIp4,
  parseIp4Net,
  prefixSize,
} from "./ip.ts";
import {
  formatIp6,
  formatIp6Net,
  type Ip6Net,
  net6Contains,
  nets6Overlap,
  parseIp6,
  parseIp6Net,
  prefixMask6,
  prefixSize6,
  RESERVED_RANGES6,
} from "./ip6.ts";

export const BACKEND_TYPES = ["udp", "vxlan", "host-gw", "ipip", "wireguard"] as const;
export type BackendType = typeof BACKEND_TYPES[number];

/** The Backend object of the config, with flannel's defaults applied. */
export interface BackendConfig {
  readonly type: BackendType;
  /** UDP port: udp 8285, vxlan 8472 (flannel's Port 0 means the kernel default 8472). */
  readonly port: number;
  /** VXLAN network identifier (vxlan only). */
  readonly vni: number;
  /** vxlan, ipip: route directly to peers on the same L2 segment. */
  readonly directRouting: boolean;
  /** vxlan: device MTU override. */
  readonly mtu?: number;
  /** wireguard only: flannel's fields with flannel's defaults. */
  readonly wireguard?: WireguardConfig;
}

/** The wireguard backend's fields, as flannel's `backend/wireguard` reads them. */
export interface WireguardConfig {
  /** `ListenPort`: UDP port of the IPv4 device (default 51820). */
  readonly listenPort: number;
  /** `ListenPortV6`: UDP port of flannel's IPv6 device `flannel-wg-v6` (default 51821). */
  readonly listenPortV6: number;
  /** `PSK`: a preshared key for every peer, base64 of 32 bytes as `wg genpsk` writes it. */
  readonly psk?: string;
  /** `PersistentKeepaliveInterval`, in seconds (flannel multiplies the number by 1 s); 0: off. */
  readonly persistentKeepalive: number;
  /** `Mode`: separate (default), auto, ipv4 or ipv6; see WIREGUARD_MODES. */
  readonly mode: WireguardMode;
}

/**
 * flannel's Mode: which device and underlay family carry which inner family. separate:
 * IPv4 in `flannel-wg` over IPv4, IPv6 in `flannel-wg-v6` over IPv6; auto, ipv4, ipv6: one
 * device carrying both, to the peer's IPv4 or IPv6 endpoint. In an IPv4-only network all
 * four carry IPv4 in `flannel-wg` to `PublicIP:ListenPort` (ipv6 needs an IPv6 underlay).
 */
export const WIREGUARD_MODES = ["separate", "auto", "ipv4", "ipv6"] as const;
export type WireguardMode = typeof WIREGUARD_MODES[number];

/** flannel's IPv6 fields: IPv6Network, IPv6SubnetLen, IPv6SubnetMin/Max. */
export interface Ip6Pool {
  readonly network: Ip6Net;
  readonly subnetLen: number;
  /** First and last subnet base addresses that may be leased. */
  readonly subnetMin: bigint;
  readonly subnetMax: bigint;
}

export interface NetworkConfig {
  /**
   * False in an IPv6-only network (`"EnableIPv4": false`): then, as in flannel, the IPv4
   * fields are empty (network 0.0.0.0/0, subnetLen 0) and leases carry 0.0.0.0-0 as key.
   */
  readonly enableIPv4: boolean;
  /** Set when `"EnableIPv6": true`. */
  readonly ipv6?: Ip6Pool;
  readonly network: Ip4Net;
  readonly subnetLen: number;
  /** First and last subnet base addresses that may be leased. */
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly backend: BackendConfig;
  /** The JSON object as read, unknown fields included. */
  readonly raw: Record<string, unknown>;
}

/** A config that does not validate; the message names the field and the fix. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

const DEFAULT_PORTS: Record<BackendType, number> = {
  "udp": 8285,
  "vxlan": 8472,
  "host-gw": 0,
  "ipip": 0,
  "wireguard": 51820,
};

/** Ranges an overlay Network must not touch (0.0.0.0/0 overlaps them all). */
const RESERVED_RANGES = [
  { net: { ip: 0x00000000, prefixLen: 8 }, what: '"this network"' },
  { net: { ip: 0x7f000000, prefixLen: 8 }, what: "loopback" },
  { net: { ip: 0xa9fe0000, prefixLen: 16 }, what: "link-local" },
  { net: { ip: 0xe0000000, prefixLen: 3 }, what: "multicast and reserved" },
];

/** Parses and validates config JSON text. Throws ConfigError. */
export function parseNetworkConfig(text: string): NetworkConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`not valid JSON (${(error as Error).message})`);
  }
  return validateNetworkConfig(raw);
}

/** Validates a parsed config object and fills defaults. Throws ConfigError. */
export function validateNetworkConfig(raw: unknown): NetworkConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`must be a JSON object like {"Network":"10.10.0.0/16"}`);
  }
  const obj = raw as Record<string, unknown>;
  const enableIPv4 = optionalBoolean(obj, "EnableIPv4") ?? true;
  const enableIPv6 = optionalBoolean(obj, "EnableIPv6") ?? false;
  if (!enableIPv4 && !enableIPv6) {
    throw new ConfigError(
      `"EnableIPv4" and "EnableIPv6" are both false (enable at least one family)`,
    );
  }
  const ipv4 = enableIPv4 ? parseIp4Pool(obj) : EMPTY_IP4_POOL;
  const ipv6 = enableIPv6 ? parseIp6Pool(obj) : undefined;
  const backend = parseBackend(goField(obj, "Backend"));
  const familyProblem = BACKEND_FAMILIES[backend.type]?.({ enableIPv4, enableIPv6 });
  if (familyProblem) throw new ConfigError(familyProblem);
  return { enableIPv4, ...ipv4, ...(ipv6 ? { ipv6 } : {}), backend, raw: obj };
}

/** Backends that cannot carry a family the config asks for, and what to use instead. */
const BACKEND_FAMILIES: Partial<
  Record<
    BackendType,
    (families: { enableIPv4: boolean; enableIPv6: boolean }) => string | undefined
  >
> = {
  "udp": ({ enableIPv4 }) =>
    enableIPv4 ? undefined : `"Backend.Type" "udp" needs IPv4 ("EnableIPv4":false is an ` +
      `IPv6-only network: use vxlan or host-gw)`,
  "wireguard": ({ enableIPv4, enableIPv6 }) =>
    enableIPv4 && !enableIPv6 ? undefined : `"Backend.Type" "wireguard" carries IPv4 only here ` +
      `(flannel's IPv6 device flannel-wg-v6 is not built): set "EnableIPv6": false, or use ` +
      `vxlan or host-gw for a network with IPv6`,
  "ipip": ({ enableIPv4, enableIPv6 }) =>
    enableIPv4 && !enableIPv6 ? undefined : `"Backend.Type" "ipip" carries IPv4 only, as ` +
      `flannel's (for a network with IPv6 use vxlan or host-gw)`,
};

interface Ip4Pool {
  readonly network: Ip4Net;
  readonly subnetLen: number;
  readonly subnetMin: number;
  readonly subnetMax: number;
}

/** flannel's empty IPv4 side of an IPv6-only network: nothing fits it but 0.0.0.0/0. */
const EMPTY_IP4_POOL: Ip4Pool = {
  network: { ip: 0, prefixLen: 0 },
  subnetLen: 0,
  subnetMin: 0,
  subnetMax: 0,
};

function parseIp4Pool(obj: Record<string, unknown>): Ip4Pool {
  const text = goField(obj, "Network");
  if (text === undefined) {
    throw new ConfigError(
      `"Network" is missing (add e.g. "Network":"10.10.0.0/16", or "EnableIPv4":false ` +
        `for an IPv6-only network)`,
    );
  }
  if (typeof text !== "string") throw new ConfigError(`"Network" must be a string CIDR`);
  const network = parseIp4Net(text, { strict: true });
  if (!network) {
    const loose = parseIp4Net(text);
    throw new ConfigError(
      loose
        ? `"Network" ${quote(text)} has host bits set (use ${quote(formatIp4Net(loose))})`
        : `"Network" ${quote(text)} is not an IPv4 CIDR (use e.g. "10.10.0.0/16")`,
    );
  }
  const reserved = RESERVED_RANGES.find((range) => netsOverlap(range.net, network));
  if (reserved) {
    throw new ConfigError(
      `"Network" ${quote(text)} overlaps ${formatIp4Net(reserved.net)} (${reserved.what}), ` +
        `which no overlay may take (use a private range such as "10.10.0.0/16")`,
    );
  }
  if (network.prefixLen > 28) {
    throw new ConfigError(`"Network" ${quote(text)} is too small (use a /28 or larger)`);
  }

  const defaultSubnetLen = network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
  const subnetLen = optionalInteger(obj, "SubnetLen") ?? defaultSubnetLen;
  if (subnetLen <= network.prefixLen || subnetLen > 30) {
    throw new ConfigError(
      `"SubnetLen" ${subnetLen} is out of range for ${formatIp4Net(network)} ` +
        `(use ${network.prefixLen + 1}..30, e.g. ${defaultSubnetLen})`,
    );
  }
  const step = prefixSize(subnetLen);
  const lastSubnet = network.ip + prefixSize(network.prefixLen) - step;
  const subnetMin = optionalSubnetBound(obj, "SubnetMin", network, subnetLen) ??
    network.ip + step;
  const subnetMax = optionalSubnetBound(obj, "SubnetMax", network, subnetLen) ?? lastSubnet;
  if (subnetMin > subnetMax) {
    throw new ConfigError(
      `"SubnetMin" ${formatIp4(subnetMin)} is above "SubnetMax" ${formatIp4(subnetMax)} ` +
        `(swap them or widen the range)`,
    );
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

/**
 * flannel's IPv6 rules: IPv6SubnetLen defaults to 64 (prefix + 2 for networks longer
 * than /62), must leave room for four subnets (≥ prefix + 2) and at most /126; the first
 * subnet is skipped by default, as for IPv4.
 */
function parseIp6Pool(obj: Record<string, unknown>): Ip6Pool {
  const text = goField(obj, "IPv6Network");
  if (text === undefined) {
    throw new ConfigError(
      `"EnableIPv6" is true but "IPv6Network" is missing (add e.g. "IPv6Network":"fd10::/48")`,
    );
  }
  if (typeof text !== "string") throw new ConfigError(`"IPv6Network" must be a string CIDR`);
  const network = parseIp6Net(text, { strict: true });
  if (!network) {
    const loose = parseIp6Net(text);
    throw new ConfigError(
      loose
        ? `"IPv6Network" ${quote(text)} has host bits set (use ${quote(formatIp6Net(loose))})`
        : `"IPv6Network" ${quote(text)} is not an IPv6 CIDR (use e.g. "fd10::/48")`,
    );
  }
  const reserved = RESERVED_RANGES6.find((range) => nets6Overlap(range.net, network));
  if (reserved) {
    throw new ConfigError(
      `"IPv6Network" ${quote(text)} overlaps ${formatIp6Net(reserved.net)} (${reserved.what}), ` +
        `which no overlay may take (use a unique local range such as "fd10::/48")`,
    );
  }
  if (network.prefixLen > 124) {
    throw new ConfigError(`"IPv6Network" ${quote(text)} is too small (use a /124 or larger)`);
  }
  const defaultSubnetLen = network.prefixLen <= 62 ? 64 : network.prefixLen + 2;
  const subnetLen = optionalInteger(obj, "IPv6SubnetLen") || defaultSubnetLen;
  if (subnetLen < network.prefixLen + 2 || subnetLen > 126) {
    throw new ConfigError(
      `"IPv6SubnetLen" ${subnetLen} is out of range for ${formatIp6Net(network)} ` +
        `(use ${network.prefixLen + 2}..126, e.g. ${defaultSubnetLen})`,
    );
  }
  const step = prefixSize6(subnetLen);
  const subnetMin = optionalSubnetBound6(obj, "IPv6SubnetMin", network, subnetLen) ??
    network.ip + step;
  const subnetMax = optionalSubnetBound6(obj, "IPv6SubnetMax", network, subnetLen) ??
    network.ip + prefixSize6(network.prefixLen) - step;
  if (subnetMin > subnetMax) {
    throw new ConfigError(
      `"IPv6SubnetMin" ${formatIp6(subnetMin)} is above "IPv6SubnetMax" ${
        formatIp6(subnetMax)
      } (swap them or widen the range)`,
    );
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

function parseBackend(value: unknown): BackendConfig {
  if (value === undefined) {
    return { type: "udp", port: DEFAULT_PORTS.udp, vni: 1, directRouting: false };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`"Backend" must be an object like {"Type":"udp"}`);
  }
  const obj = value as Record<string, unknown>;
  const typeText = goField(obj, "Type") ?? "udp";
  if (typeof typeText !== "string" || !(BACKEND_TYPES as readonly string[]).includes(typeText)) {
    throw new ConfigError(
      `"Backend.Type" ${quote(String(typeText))} is not supported (use one of ${
        BACKEND_TYPES.join(", ")
      })`,
    );
  }
  const type = typeText as BackendType;
  const port = optionalInteger(obj, "Port", "Backend.") ?? 0;
  if (port < 0 || port > 65535) {
    throw new ConfigError(`"Backend.Port" ${port} is not a UDP port (use 1..65535)`);
  }
  const vni = optionalInteger(obj, "VNI", "Backend.") ?? 1;
  if (vni < 0 || vni > 0xffffff) {
    throw new ConfigError(`"Backend.VNI" ${vni} is out of range (use 0..16777215)`);
  }
  const mtu = optionalInteger(obj, "MTU", "Backend.");
  if (mtu !== undefined && mtu !== 0 && (mtu < 576 || mtu > 65535)) {
    throw new ConfigError(`"Backend.MTU" ${mtu} is out of range (use 576..65535, or leave it out)`);
  }
  const directRouting = goField(obj, "DirectRouting");
  if (directRouting !== undefined && typeof directRouting !== "boolean") {
    throw new ConfigError(`"Backend.DirectRouting" must be true or false`);
  }
  const wireguard = type === "wireguard" ? parseWireguard(obj) : undefined;
  return {
    type,
    port: wireguard ? wireguard.listenPort : port === 0 ? DEFAULT_PORTS[type] : port,
    vni,
    directRouting: directRouting === true,
    ...(mtu ? { mtu } : {}),
    ...(wireguard ? { wireguard } : {}),
  };
}

/** flannel's wireguard fields and defaults; PSK must be a key `wg` would accept. */
function parseWireguard(obj: Record<string, unknown>): WireguardConfig {
  const port = (field: string, fallback: number) => {
    const value = optionalInteger(obj, field, "Backend.") ?? 0;
    if (value < 0 || value > 65535) {
      throw new ConfigError(`"Backend.${field}" ${value} is not a UDP port (use 1..65535)`);
    }
    return value === 0 ? fallback : value;
  };
  const listenPort = port("ListenPort", 51820);
  const listenPortV6 = port("ListenPortV6", 51821);
  const keepalive = optionalInteger(obj, "PersistentKeepaliveInterval", "Backend.") ?? 0;
  if (keepalive < 0 || keepalive > 65535) {
    throw new ConfigError(
      `"Backend.PersistentKeepaliveInterval" ${keepalive} is out of range ` +
        `(seconds, 0..65535; 0 turns keepalives off, 25 is usual behind NAT)`,
    );
  }
  let psk: string | undefined;
  const pskText = goField(obj, "PSK");
  if (pskText !== undefined && pskText !== "") {
    if (typeof pskText !== "string" || !isWireguardKey(pskText)) {
      throw new ConfigError(
        `"Backend.PSK" must be 44 characters of base64 for 32 bytes (make one with: wg genpsk)`,
      );
    }
    psk = pskText;
  }
  const modeText = goField(obj, "Mode") ?? "separate";
  if (
    typeof modeText !== "string" || !(WIREGUARD_MODES as readonly string[]).includes(modeText)
  ) {
    throw new ConfigError(
      `"Backend.Mode" ${quote(String(modeText))} is not a wireguard mode ` +
        `(use one of ${WIREGUARD_MODES.join(", ")})`,
    );
  }
  return {
    listenPort,
    listenPortV6,
    ...(psk ? { psk } : {}),
    persistentKeepalive: keepalive,
    mode: modeText as WireguardMode,
  };
}

/** True for base64 of exactly 32 bytes, as `wg genkey` and `wg genpsk` print them. */
export function isWireguardKey(text: string): boolean {
  return /^[A-Za-z0-9+/]{43}=$/.test(text);
}

function optionalInteger(
  obj: Record<string, unknown>,
  field: string,
  path = "",
): number | undefined {
  const value = goField(obj, field);
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new ConfigError(`"${path}${field}" must be an integer, not ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalBoolean(obj: Record<string, unknown>, field: string): boolean | undefined {
  const value = goField(obj, field);
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") {
    throw new ConfigError(`"${field}" must be true or false, not ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalSubnetBound6(
  obj: Record<string, unknown>,
  field: "IPv6SubnetMin" | "IPv6SubnetMax",
  network: Ip6Net,
  subnetLen: number,
): bigint | undefined {
  const value = goField(obj, field);
  if (value === undefined || value === "" || value === null) return undefined;
  const ip = typeof value === "string" ? parseIp6(value) : undefined;
  if (ip === undefined) {
    throw new ConfigError(`"${field}" ${JSON.stringify(value)} is not an IPv6 address`);
  }
  if (!net6Contains(network, ip)) {
    throw new ConfigError(
      `"${field}" ${quote(value as string)} is outside "IPv6Network" ${formatIp6Net(network)}`,
    );
  }
  const aligned = ip & prefixMask6(subnetLen);
  if (aligned !== ip) {
    throw new ConfigError(
      `"${field}" ${quote(value as string)} is not on a /${subnetLen} boundary ` +
        `(use ${quote(formatIp6(aligned))})`,
    );
  }
  return ip;
}

function optionalSubnetBound(
  obj: Record<string, unknown>,
  field: "SubnetMin" | "SubnetMax",
  network: Ip4Net,
  subnetLen: number,
): number | undefined {
  const value = goField(obj, field);
  if (value === undefined || value === "") return undefined;
  const ip = typeof value === "string" ? parseIp4(value) : undefined;
  if (ip === undefined) {
    throw new ConfigError(`"${field}" ${JSON.stringify(value)} is not an IPv4 address`);
  }
  if (!netContains(network, ip)) {
    throw new ConfigError(
      `"${field}" ${quote(value as string)} is outside "Network" ${formatIp4Net(network)}`,
    );
  }
  const aligned = ip - (ip - network.ip) % prefixSize(subnetLen);
  if (aligned !== ip) {
    throw new ConfigError(
      `"${field}" ${quote(value as string)} is not on a /${subnetLen} boundary ` +
        `(use ${quote(formatIp4(aligned))})`,
    );
  }
  return ip;
}

/**
 * True when a host may keep `subnet` under this config: right size, inside Network.
 * As in flannel, SubnetMin/SubnetMax only bound new allocations.
 */
export function fitsNetwork(config: NetworkConfig, subnet: Ip4Net): boolean {
  return subnet.prefixLen === config.subnetLen && netContains(config.network, subnet.ip);
}

/** True when `subnet` could be newly allocated: it fits and lies in [SubnetMin, SubnetMax]. */
export function fitsRange(config: NetworkConfig, subnet: Ip4Net): boolean {
  return fitsNetwork(config, subnet) && subnet.ip >= config.subnetMin &&
    subnet.ip <= config.subnetMax;
}

/** The IPv6 counterpart of fitsNetwork: right size, inside IPv6Network. */
export function fitsNetwork6(pool: Ip6Pool, subnet: Ip6Net): boolean {
  return subnet.prefixLen === pool.subnetLen && net6Contains(pool.network, subnet.ip);
}

/** The IPv6 counterpart of fitsRange. */
export function fitsRange6(pool: Ip6Pool, subnet: Ip6Net): boolean {
  return fitsNetwork6(pool, subnet) && subnet.ip >= pool.subnetMin && subnet.ip <= pool.subnetMax;
}

/** Number of subnets between SubnetMin and SubnetMax. */
export function subnetCount(config: NetworkConfig): number {
  return (config.subnetMax - config.subnetMin) / prefixSize(config.subnetLen) + 1;
}

function quote(text: string): string {
  return JSON.stringify(text);
}
