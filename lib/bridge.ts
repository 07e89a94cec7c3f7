/**
 * The container bridge (`--bridge lxcbr0`): a Linux bridge holding the subnet's first
 * address (10.10.16.1/24) with the overlay MTU, so LXC/LXD or Docker containers attached
 * to it get overlay addresses — the lxcbr0/docker0 setups of the flannel charms.
 * An existing bridge is adopted; overlay addresses left from an earlier subnet are removed.
 */
import { interfaceIndex } from "../ffi/libc.ts";
import type { Netlink } from "../ffi/netlink.ts";
import { OverlayError } from "./errors.ts";
import { formatIp4, type Ip4Net, netContains, netGateway } from "./ip.ts";
import { log } from "./log.ts";

/**
 * Creates or adopts the bridge and gives it the subnet's gateway address and the MTU.
 * Returns true when it created the bridge (false: an existing one was adopted).
 */
export function ensureBridge(
  netlink: Netlink,
  options: { name: string; subnet: Ip4Net; network: Ip4Net; mtu: number },
): boolean {
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
  const gateway = netGateway(options.subnet);
  for (const address of netlink.addresses(index)) {
    const stale = netContains(options.network, address.ip) &&
      !(address.ip === gateway && address.prefixLen === options.subnet.prefixLen);
    if (stale) {
      netlink.addressDelete(index, address.ip, address.prefixLen);
      log.info("removed an old overlay address from the bridge", {
        bridge: options.name,
        address: `${formatIp4(address.ip)}/${address.prefixLen}`,
      });
    }
  }
  netlink.addressReplace(index, gateway, options.subnet.prefixLen);
  netlink.linkSetMtu(index, options.mtu);
  netlink.linkSetUp(index);
  log.info(existing ? "adopted the container bridge" : "created the container bridge", {
    bridge: options.name,
    address: `${formatIp4(gateway)}/${options.subnet.prefixLen}`,
    mtu: options.mtu,
  });
  return !existing;
}
