/**
 * A subnet lease in flannel's schema:
 *   key   `<prefix>/subnets/10.10.16.0-24`
 *   value `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{…}}`
 * udp leases carry no BackendType (absent means udp). Values written by other hosts
 * are untrusted input: decoding never throws, it reports why a value was skipped.
 */
import { formatIp4, formatIp4Net, type Ip4Net, parseIp4, parseIp4Net } from "./ip.ts";
import type { Ip6Net } from "./ip6.ts";

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

/** `<prefix>/subnets/10.10.16.0-24` */
export function leaseKey(prefix: string, subnet: Ip4Net): string {
  return `${subnetsPrefix(prefix)}${formatIp4(subnet.ip)}-${subnet.prefixLen}`;
}

/** Parses the subnet out of a lease key; undefined when the key is not one. */
export function parseLeaseKey(prefix: string, key: string): Ip4Net | undefined {
  const head = subnetsPrefix(prefix);
  if (!key.startsWith(head)) return undefined;
  const name = key.slice(head.length);
  const dash = name.lastIndexOf("-");
  if (dash < 0) return undefined;
  return parseIp4Net(`${name.slice(0, dash)}/${name.slice(dash + 1)}`, { strict: true });
}

/** Encodes attrs as flannel does (field order included). */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const value: Record<string, unknown> = { PublicIP: formatIp4(attrs.publicIp), PublicIPv6: null };
  if (attrs.backendType !== "udp") value.BackendType = attrs.backendType;
  if (attrs.backendData !== undefined) value.BackendData = attrs.backendData;
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
  const publicIp = typeof obj.PublicIP === "string" ? parseIp4(obj.PublicIP) : undefined;
  if (publicIp === undefined) {
    return `PublicIP ${JSON.stringify(obj.PublicIP)} is not an IPv4 address`;
  }
  const backendType = obj.BackendType ?? "udp";
  if (typeof backendType !== "string") return "BackendType is not a string";
  const data = obj.BackendData;
  if (data !== undefined && data !== null && (typeof data !== "object" || Array.isArray(data))) {
    return "BackendData is not an object";
  }
  const attrs = { publicIp, backendType: backendType === "" ? "udp" : backendType };
  // No backendData key at all when etcd has none, so a lease read back equals the one written.
  return data === undefined || data === null
    ? attrs
    : { ...attrs, backendData: data as Record<string, unknown> };
}

/** Short description for logs: "10.10.16.0/24 (192.0.2.1, udp)". */
export function describeLease(lease: Lease): string {
  return `${formatIp4Net(lease.subnet)} (${
    formatIp4(lease.attrs.publicIp)
  }, ${lease.attrs.backendType})`;
}
