/**
 * A subnet lease in flannel's schema:
 *   key   `<prefix>/subnets/10.10.16.0-24` (dual stack: `…/10.10.16.0-24&fd10:0:0:1::-64`)
 *   value `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{…}}`
 *         (with IPv6: `"PublicIPv6":"2001:db8::1"` and `"BackendV6Data":{…}`)
 * udp leases carry no BackendType (absent means udp). Values written by other hosts
 * are untrusted input: decoding never throws, it reports why a value was skipped. Keys
 * match in any case, as flanneld's Go decoder reads them (goField).
 */
import { goField } from "./go_json.ts";
import { formatIp4, formatIp4Net, type Ip4Net, parseIp4, parseIp4Net } from "./ip.ts";
import { formatIp6, formatIp6Net, type Ip6Net, parseIp6, parseIp6Net } from "./ip6.ts";

/** What a host publishes about itself in its lease value. */
export interface LeaseAttrs {
  /** 0 (flannel's "0.0.0.0") in an IPv6-only network. */
  readonly publicIp: number;
  /** PublicIPv6: the host's IPv6 underlay address, when it has one in a network with IPv6. */
  readonly publicIpv6?: bigint;
  /** "udp" when the value has no BackendType, as flannel's udp backend writes it. */
  readonly backendType: string;
  readonly backendData?: Record<string, unknown>;
  /** BackendV6Data: what the backend's IPv6 side publishes (vxlan's v6 VtepMAC). */
  readonly backendV6Data?: Record<string, unknown>;
}

export interface Lease {
  /** The IPv4 subnet; 0.0.0.0/0 (flannel's empty subnet) in an IPv6-only network. */
  readonly subnet: Ip4Net;
  /** The IPv6 subnet, in a network with IPv6 (the key's `&fd10:0:0:1::-64`). */
  readonly ipv6Subnet?: Ip6Net;
  readonly attrs: LeaseAttrs;
  /** etcd lease ID as a decimal string; "0" for a reservation (an admin's permanent key). */
  readonly etcdLeaseId: string;
  readonly modRevision: string;
  /** The revision that created the key: of two leases that collide, the older one wins. */
  readonly createRevision: string;
}

/** The largest lease value we accept; anything bigger is not a lease. */
export const MAX_LEASE_VALUE_BYTES = 4096;

export function isReservation(lease: Lease): boolean {
  return lease.etcdLeaseId === "0" || lease.etcdLeaseId === "";
}

/** `<prefix>/subnets/` */
export function subnetsPrefix(prefix: string): string {
  return `${prefix}/subnets/`;
}

/** The subnets a lease key names: IPv4 always (0.0.0.0/0 in an IPv6-only network), IPv6 in a network with IPv6. */
export interface LeaseSubnets {
  readonly subnet: Ip4Net;
  readonly ipv6Subnet?: Ip6Net;
}

/**
 * `<prefix>/subnets/10.10.16.0-24`, with IPv6 `<prefix>/subnets/10.10.16.0-24&fd10:0:0:1::-64`
 * (flannel's MakeSubnetKey; an IPv6-only lease is `0.0.0.0-0&fd10:0:0:1::-64`). A bare
 * Ip4Net names an IPv4-only lease.
 */
export function leaseKey(prefix: string, lease: LeaseSubnets | Ip4Net): string {
  const subnets = "subnet" in lease ? lease : { subnet: lease };
  const v4 = `${formatIp4(subnets.subnet.ip)}-${subnets.subnet.prefixLen}`;
  const v6 = subnets.ipv6Subnet
    ? `&${formatIp6(subnets.ipv6Subnet.ip)}-${subnets.ipv6Subnet.prefixLen}`
    : "";
  return `${subnetsPrefix(prefix)}${v4}${v6}`;
}

/**
 * Parses the subnets out of a lease key; undefined when the key is not one. Only the
 * spelling leaseKey writes is accepted (canonical addresses, host bits zero), so no two
 * keys name the same subnets.
 */
export function parseLeaseKey(prefix: string, key: string): LeaseSubnets | undefined {
  const head = subnetsPrefix(prefix);
  if (!key.startsWith(head)) return undefined;
  const [name4, name6, ...rest] = key.slice(head.length).split("&");
  if (rest.length > 0) return undefined;
  const subnet = parseKeyPart(name4, (text) => parseIp4Net(text, { strict: true }));
  if (!subnet) return undefined;
  if (name6 === undefined) return { subnet };
  const ipv6Subnet = parseKeyPart(name6, (text) => parseIp6Net(text, { strict: true }));
  if (!ipv6Subnet) return undefined;
  if (`${formatIp6(ipv6Subnet.ip)}-${ipv6Subnet.prefixLen}` !== name6) return undefined;
  return { subnet, ipv6Subnet };
}

function parseKeyPart<T>(name: string, parse: (cidr: string) => T | undefined): T | undefined {
  const dash = name.lastIndexOf("-");
  if (dash < 0) return undefined;
  return parse(`${name.slice(0, dash)}/${name.slice(dash + 1)}`);
}

/** Encodes attrs as flannel does (field order included). */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const value: Record<string, unknown> = {
    PublicIP: formatIp4(attrs.publicIp),
    PublicIPv6: attrs.publicIpv6 === undefined ? null : formatIp6(attrs.publicIpv6),
  };
  if (attrs.backendType !== "udp") value.BackendType = attrs.backendType;
  if (attrs.backendData !== undefined) value.BackendData = attrs.backendData;
  if (attrs.backendV6Data !== undefined) value.BackendV6Data = attrs.backendV6Data;
  return JSON.stringify(value);
}

/** Decodes a lease value; returns a reason string instead when it is not a valid lease. */
export function decodeLeaseValue(bytes: Uint8Array | string): LeaseAttrs | string {
  const size = typeof bytes === "string" ? bytes.length : bytes.byteLength;
  if (size > MAX_LEASE_VALUE_BYTES) {
    return `value is ${size} bytes (more than ${MAX_LEASE_VALUE_BYTES})`;
  }
  const text = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "value is not JSON";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "value is not a JSON object";
  }
  const obj = value as Record<string, unknown>;
  const ip = goField(obj, "PublicIP");
  const publicIp = typeof ip === "string" ? parseIp4(ip) : undefined;
  if (publicIp === undefined) {
    return `PublicIP ${JSON.stringify(ip)} is not an IPv4 address`;
  }
  const ipv6 = goField(obj, "PublicIPv6");
  let publicIpv6: bigint | undefined;
  if (ipv6 !== undefined && ipv6 !== null) {
    publicIpv6 = typeof ipv6 === "string" ? parseIp6(ipv6) : undefined;
    if (publicIpv6 === undefined) {
      return `PublicIPv6 ${JSON.stringify(ipv6)} is not an IPv6 address`;
    }
  }
  const backendType = goField(obj, "BackendType") ?? "udp";
  if (typeof backendType !== "string") return "BackendType is not a string";
  const data = goField(obj, "BackendData");
  if (data !== undefined && data !== null && (typeof data !== "object" || Array.isArray(data))) {
    return "BackendData is not an object";
  }
  const v6Data = goField(obj, "BackendV6Data");
  if (
    v6Data !== undefined && v6Data !== null && (typeof v6Data !== "object" || Array.isArray(v6Data))
  ) {
    return "BackendV6Data is not an object";
  }
  // No key at all for what etcd lacks, so a lease read back equals the one written.
  return {
    publicIp,
    ...(publicIpv6 !== undefined ? { publicIpv6 } : {}),
    backendType: backendType === "" ? "udp" : backendType,
    ...(data !== undefined && data !== null
      ? { backendData: data as Record<string, unknown> }
      : {}),
    ...(v6Data !== undefined && v6Data !== null
      ? { backendV6Data: v6Data as Record<string, unknown> }
      : {}),
  };
}

/**
 * The subnets for logs: "10.10.16.0/24", "10.10.16.0/24 fd10:0:0:1::/64" (dual stack),
 * "fd10:0:0:1::/64" (IPv6 only).
 */
export function describeSubnets(subnets: LeaseSubnets): string {
  const v6 = subnets.ipv6Subnet ? formatIp6Net(subnets.ipv6Subnet) : undefined;
  if (v6 && subnets.subnet.prefixLen === 0) return v6;
  return v6 ? `${formatIp4Net(subnets.subnet)} ${v6}` : formatIp4Net(subnets.subnet);
}

/** The public addresses for logs: "192.0.2.1", "192.0.2.1 2001:db8::1", "2001:db8::1". */
export function describePublicIps(lease: Lease): string {
  const { publicIp, publicIpv6 } = lease.attrs;
  if (publicIpv6 === undefined) return formatIp4(publicIp);
  const v6 = formatIp6(publicIpv6);
  return lease.subnet.prefixLen === 0 ? v6 : `${formatIp4(publicIp)} ${v6}`;
}

/** Short description for logs: "10.10.16.0/24 (192.0.2.1, udp)". */
export function describeLease(lease: Lease): string {
  return `${describeSubnets(lease)} (${describePublicIps(lease)}, ${lease.attrs.backendType})`;
}
