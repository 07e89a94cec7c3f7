/**
 * The network config, in flannel's JSON at `<prefix>/config`:
 * `{"Network":"10.10.0.0/16","SubnetLen":24,"Backend":{"Type":"udp","Port":8285}}`.
 * Parsing validates everything and fills flannel's defaults; the original JSON object
 * is kept so fields we do not know survive a read-modify-write.
 */
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

export const BACKEND_TYPES = ["udp", "vxlan", "host-gw", "ipip"] as const;
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
}

export interface NetworkConfig {
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

  if (obj.Network === undefined) {
    throw new ConfigError(`"Network" is missing (add e.g. "Network":"10.10.0.0/16")`);
  }
  if (typeof obj.Network !== "string") throw new ConfigError(`"Network" must be a string CIDR`);
  const network = parseIp4Net(obj.Network, { strict: true });
  if (!network) {
    const loose = parseIp4Net(obj.Network);
    throw new ConfigError(
      loose
        ? `"Network" ${quote(obj.Network)} has host bits set (use ${quote(formatIp4Net(loose))})`
        : `"Network" ${quote(obj.Network)} is not an IPv4 CIDR (use e.g. "10.10.0.0/16")`,
    );
  }
  const reserved = RESERVED_RANGES.find((range) => netsOverlap(range.net, network));
  if (reserved) {
    throw new ConfigError(
      `"Network" ${quote(obj.Network)} overlaps ${
        formatIp4Net(reserved.net)
      } (${reserved.what}), ` +
        `which no overlay may take (use a private range such as "10.10.0.0/16")`,
    );
  }
  if (network.prefixLen > 28) {
    throw new ConfigError(`"Network" ${quote(obj.Network)} is too small (use a /28 or larger)`);
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

  if (obj.EnableIPv6 === true) {
    throw new ConfigError(`"EnableIPv6" is not supported yet (remove it or set it to false)`);
  }

  return { network, subnetLen, subnetMin, subnetMax, backend: parseBackend(obj.Backend), raw: obj };
}

function parseBackend(value: unknown): BackendConfig {
  if (value === undefined) {
    return { type: "udp", port: DEFAULT_PORTS.udp, vni: 1, directRouting: false };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`"Backend" must be an object like {"Type":"udp"}`);
  }
  const obj = value as Record<string, unknown>;
  const typeText = obj.Type ?? "udp";
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
  if (obj.DirectRouting !== undefined && typeof obj.DirectRouting !== "boolean") {
    throw new ConfigError(`"Backend.DirectRouting" must be true or false`);
  }
  return {
    type,
    port: port === 0 ? DEFAULT_PORTS[type] : port,
    vni,
    directRouting: obj.DirectRouting === true,
    ...(mtu ? { mtu } : {}),
  };
}

function optionalInteger(
  obj: Record<string, unknown>,
  field: string,
  path = "",
): number | undefined {
  const value = obj[field];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new ConfigError(`"${path}${field}" must be an integer, not ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalSubnetBound(
  obj: Record<string, unknown>,
  field: "SubnetMin" | "SubnetMax",
  network: Ip4Net,
  subnetLen: number,
): number | undefined {
  const value = obj[field];
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

/** Number of subnets between SubnetMin and SubnetMax. */
export function subnetCount(config: NetworkConfig): number {
  return (config.subnetMax - config.subnetMin) / prefixSize(config.subnetLen) + 1;
}

function quote(text: string): string {
  return JSON.stringify(text);
}
