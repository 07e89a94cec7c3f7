/**
 * Which peer leases the agent may route to. etcd data is untrusted: any host holding
 * etcd credentials can write any key under the prefix, by mistake or not, so a lease is
 * used only when it describes a peer the config allows:
 * - its subnet lies inside the Network with exactly the config's SubnetLen (so no lease
 *   can make the agent touch a route outside the Network, or one nested in another's),
 *   for each family the network has, and it names no family the network lacks;
 * - its PublicIP (PublicIPv6) is a unicast host address, not loopback, not inside the
 *   Network, and not this host's own (the host's own lease is handled apart from the
 *   peers); an IPv6-only network's leases need a PublicIPv6;
 * - its backend type is ours and its BackendData is what our backend needs.
 * Everything else is skipped with one warning and a count; it changes nothing on the host.
 */
import { fitsNetwork6, type NetworkConfig } from "./config.ts";
import { formatIp4, formatIp4Net, ip4AddressProblem, netContains } from "./ip.ts";
import { formatIp6, formatIp6Net, ip6AddressProblem, net6Contains } from "./ip6.ts";
import type { Lease } from "./lease.ts";

/** Why a lease is skipped, as the `reason` label of overlay_leases_skipped_total. */
export type SkipReason =
  | "malformed"
  | "outside_network"
  | "bad_public_ip"
  | "backend_type"
  | "bad_backend_data"
  | "conflict";

export interface LeaseProblem {
  readonly reason: SkipReason;
  /** One line for the log: what is wrong with the lease. */
  readonly text: string;
}

export interface PeerPolicy {
  readonly config: NetworkConfig;
  readonly ownPublicIp: number;
  readonly ownPublicIpv6?: bigint;
  /**
   * The underlay interface's IPv4 addresses: a lease naming one is this host's from
   * before (started since with another --public-ip), never a peer to send to.
   */
  readonly ownAddresses?: readonly number[];
  readonly backendType: string;
  /** The backend's own check of a peer's BackendData; undefined when usable. */
  readonly checkBackendData: (peer: Lease) => string | undefined;
}

/** Why a peer lease must not be used for routing, or undefined when it may be. */
export function leaseProblem(lease: Lease, policy: PeerPolicy): LeaseProblem | undefined {
  const problem = policy.config.enableIPv4
    ? ipv4Problem(lease, policy)
    : lease.subnet.prefixLen !== 0
    ? { reason: "outside_network" as const, text: `an IPv6-only network has no IPv4 subnets` }
    : undefined;
  if (problem) return problem;
  const v6Problem = ipv6Problem(lease, policy);
  if (v6Problem) return v6Problem;
  if (lease.attrs.backendType !== policy.backendType) {
    return {
      reason: "backend_type",
      text: `backend type ${JSON.stringify(lease.attrs.backendType)} is not this network's ` +
        `${JSON.stringify(policy.backendType)}`,
    };
  }
  const dataProblem = policy.checkBackendData(lease);
  if (dataProblem) return { reason: "bad_backend_data", text: dataProblem };
  return undefined;
}

function ipv4Problem(lease: Lease, policy: PeerPolicy): LeaseProblem | undefined {
  const { network, subnetLen } = policy.config;
  const subnet = formatIp4Net(lease.subnet);
  if (!netContains(network, lease.subnet.ip)) {
    return {
      reason: "outside_network",
      text: `subnet ${subnet} is outside Network ${formatIp4Net(network)}`,
    };
  }
  if (lease.subnet.prefixLen !== subnetLen) {
    return {
      reason: "outside_network",
      text: `subnet ${subnet} is not a /${subnetLen} (the config's SubnetLen)`,
    };
  }
  const ip = lease.attrs.publicIp;
  const addressProblem = ip4AddressProblem(ip);
  if (addressProblem) {
    return { reason: "bad_public_ip", text: `PublicIP ${formatIp4(ip)} ${addressProblem}` };
  }
  if (netContains(network, ip)) {
    return {
      reason: "bad_public_ip",
      text: `PublicIP ${formatIp4(ip)} is inside Network ${formatIp4Net(network)}`,
    };
  }
  if (ip === policy.ownPublicIp || policy.ownAddresses?.includes(ip)) {
    return {
      reason: "bad_public_ip",
      text: `PublicIP ${formatIp4(ip)} is this host's own, but the lease is not this host's`,
    };
  }
  return undefined;
}

function ipv6Problem(lease: Lease, policy: PeerPolicy): LeaseProblem | undefined {
  const pool = policy.config.ipv6;
  const subnet = lease.ipv6Subnet;
  if (!pool) {
    return subnet
      ? { reason: "outside_network", text: `this network has no IPv6, but the key names one` }
      : undefined;
  }
  if (!subnet) {
    return { reason: "outside_network", text: `the key names no IPv6 subnet (dual-stack network)` };
  }
  if (!fitsNetwork6(pool, subnet)) {
    return {
      reason: "outside_network",
      text: `IPv6 subnet ${formatIp6Net(subnet)} is not a /${pool.subnetLen} inside IPv6Network ${
        formatIp6Net(pool.network)
      }`,
    };
  }
  const ip = lease.attrs.publicIpv6;
  if (ip === undefined) {
    return policy.config.enableIPv4
      ? undefined // dual stack over an IPv4 underlay: the backend decides (checkPeer)
      : { reason: "bad_public_ip", text: `no PublicIPv6 (an IPv6-only network needs one)` };
  }
  const addressProblem = ip6AddressProblem(ip);
  const text = addressProblem ??
    (net6Contains(pool.network, ip)
      ? `is inside IPv6Network ${formatIp6Net(pool.network)}`
      : ip === policy.ownPublicIpv6
      ? `is this host's own, but the lease is not this host's`
      : undefined);
  return text
    ? { reason: "bad_public_ip", text: `PublicIPv6 ${formatIp6(ip)} ${text}` }
    : undefined;
}
