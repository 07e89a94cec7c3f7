/**
 * The container bridge (`--bridge lxcbr0`): a Linux bridge holding the subnet's first
 * address (10.10.16.1/24) with the overlay MTU, so LXC/LXD or Docker containers attached
 * to it get overlay addresses — the lxcbr0/docker0 setups of the flannel charms.
 * An existing bridge is adopted; overlay addresses left from an earlier subnet are removed.
 * In a network with IPv6 the bridge also gets the IPv6 subnet's first address
 * (fd10:0:0:1::1/64), as Docker's docker0 does with --ipv6 --fixed-cidr-v6; in an
 * IPv6-only network only that one.
 */
import { interfaceIndex } from "../ffi/libc.ts";
import type { Netlink } from "../ffi/netlink.ts";
import { OverlayError } from "./errors.ts";
import { formatIp4, type Ip4Net, netContains, netGateway } from "./ip.ts";
import { formatIp6, type Ip6Net, net6Contains, net6Gateway } from "./ip6.ts";
import { log } from "./log.ts";

/**
 * Creates or adopts the bridge and gives it the subnet's gateway address and the MTU.
 * Says whether it created the bridge, and an adopted one's MTU before (cleanup gives it back).
 */
export function ensureBridge(
  netlink: Netlink,
  options: {
    name: string;
    /** Absent in an IPv6-only network. */
    ipv4?: { subnet: Ip4Net; network: Ip4Net };
    ipv6?: { subnet: Ip6Net; network: Ip6Net };
    mtu: number;
  },
): { created: boolean; previousMtu?: number } {
  const existing = netlink.link(options.name);
  if (existing && existing.kind !== "bridge") {
    throw new OverlayError(
      `--bridge ${options.name}: a device of that name exists and is not a bridge (${
        existing.kind ?? "no kind"
      }); remove it or choose another name`,
    );
  }
  if (!existing) netlink.linkCreate({ name: options.name, kind: "bridge", mtu: options.mtu });
  const index = interfaceIndex(options.name);
  const given: string[] = [];
  const { ipv4, ipv6 } = options;
  if (ipv4) {
    const gateway = netGateway(ipv4.subnet);
    for (const address of netlink.addresses(index)) {
      const stale = netContains(ipv4.network, address.ip) &&
        !(address.ip === gateway && address.prefixLen === ipv4.subnet.prefixLen);
      if (stale) removeStale(netlink, options.name, index, address, formatIp4(address.ip));
    }
    netlink.addressReplace(index, gateway, ipv4.subnet.prefixLen);
    given.push(`${formatIp4(gateway)}/${ipv4.subnet.prefixLen}`);
  }
  if (ipv6) {
    const gateway = net6Gateway(ipv6.subnet);
    for (const address of netlink.addresses6(index)) {
      const stale = net6Contains(ipv6.network, address.ip) &&
        !(address.ip === gateway && address.prefixLen === ipv6.subnet.prefixLen);
      if (stale) removeStale(netlink, options.name, index, address, formatIp6(address.ip));
    }
    netlink.addressReplace(index, gateway, ipv6.subnet.prefixLen);
    given.push(`${formatIp6(gateway)}/${ipv6.subnet.prefixLen}`);
  }
  netlink.linkSetMtu(index, options.mtu);
  netlink.linkSetUp(index);
  log.info(existing ? "adopted the container bridge" : "created the container bridge", {
    bridge: options.name,
    address: given.join(" "),
    mtu: options.mtu,
  });
  return existing ? { created: false, previousMtu: existing.mtu } : { created: true };
}

function removeStale(
  netlink: Netlink,
  bridge: string,
  index: number,
  address: { ip: number | bigint; prefixLen: number },
  text: string,
): void {
  netlink.addressDelete(index, address.ip, address.prefixLen);
  log.info("removed an old overlay address from the bridge", {
    bridge,
    address: `${text}/${address.prefixLen}`,
  });
}
