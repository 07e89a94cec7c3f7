/**
 * The subnet file Docker, LXC and flannel's mk-docker-opts read:
 *   FLANNEL_NETWORK=10.10.0.0/16
 *   FLANNEL_SUBNET=10.10.16.1/24   (the subnet's first usable address)
 *   FLANNEL_IPV6_NETWORK=fd10::/48          (with IPv6; an IPv6-only network has
 *   FLANNEL_IPV6_SUBNET=fd10:0:0:1::1/64     no FLANNEL_NETWORK/FLANNEL_SUBNET)
 *   FLANNEL_MTU=1472
 *   FLANNEL_IPMASQ=false
 * Written atomically (temp file in the same folder, then rename), so a reader never
 * sees half a file.
 */
import { writeFileAtomic } from "./atomic_file.ts";
import { formatIp4, formatIp4Net, type Ip4Net, netGateway, parseIp4Net } from "./ip.ts";
import { formatIp6, formatIp6Net, type Ip6Net, net6Gateway, parseIp6Net } from "./ip6.ts";

export interface SubnetFileContents {
  /** Absent in an IPv6-only network. */
  readonly ipv4?: { readonly network: Ip4Net; readonly subnet: Ip4Net };
  readonly ipv6?: { readonly network: Ip6Net; readonly subnet: Ip6Net };
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/** The file's text, in flannel's names and order (flannel's WriteSubnetFile). */
export function formatSubnetFile(contents: SubnetFileContents): string {
  const { ipv4, ipv6 } = contents;
  return [
    ...(ipv4
      ? [
        `FLANNEL_NETWORK=${formatIp4Net(ipv4.network)}`,
        `FLANNEL_SUBNET=${formatIp4(netGateway(ipv4.subnet))}/${ipv4.subnet.prefixLen}`,
      ]
      : []),
    ...(ipv6
      ? [
        `FLANNEL_IPV6_NETWORK=${formatIp6Net(ipv6.network)}`,
        `FLANNEL_IPV6_SUBNET=${formatIp6(net6Gateway(ipv6.subnet))}/${ipv6.subnet.prefixLen}`,
      ]
      : []),
    `FLANNEL_MTU=${contents.mtu}`,
    `FLANNEL_IPMASQ=${contents.ipMasq}`,
    "",
  ].join("\n");
}

/** Writes the subnet file atomically, creating its folder. */
export async function writeSubnetFile(path: string, contents: SubnetFileContents): Promise<void> {
  await writeFileAtomic(path, formatSubnetFile(contents));
}

/** The KEY=VALUE pairs of an env-style file. */
export function parseEnvFile(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (match) values.set(match[1], match[2].trim().replace(/^"(.*)"$/, "$1"));
  }
  return values;
}

/** The subnets an existing subnet file names. */
export interface PreviousSubnets {
  readonly subnet?: Ip4Net;
  readonly ipv6Subnet?: Ip6Net;
}

/**
 * Reads the subnets named in an existing subnet file; none when the file is absent, and
 * a value that does not name a valid subnet is left out (a stale or hand-edited file).
 */
export async function readPreviousSubnets(path: string): Promise<PreviousSubnets> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return {};
  }
  const env = parseEnvFile(text);
  const subnet = parseIp4Net(env.get("FLANNEL_SUBNET") ?? "");
  const ipv6Subnet = parseIp6Net(env.get("FLANNEL_IPV6_SUBNET") ?? "");
  return { ...(subnet ? { subnet } : {}), ...(ipv6Subnet ? { ipv6Subnet } : {}) };
}
