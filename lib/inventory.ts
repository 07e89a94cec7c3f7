/**
 * What the agent made on this host for one network, recorded in the state folder as it
 * makes it, so `overlay cleanup` removes exactly that and nothing else: not another
 * network's files or device, not a bridge the operator made, not a route someone added.
 * (Routes need no list: the agent's carry its mark, see lib/ownership.ts.)
 */
import { writeFileAtomic } from "./atomic_file.ts";
import { statePath } from "./health.ts";
import type { MasqChains } from "./ip_masq.ts";

export interface Inventory {
  /** The Network this agent's marked routes lie in. */
  readonly network: string;
  /** The subnet leased and the public IP it was leased for. */
  readonly subnet: string;
  readonly publicIp: string;
  /** In a network with IPv6: the IPv6 subnet (in the lease key) and the PublicIPv6. */
  readonly ipv6Subnet?: string;
  readonly publicIpv6?: string;
  /** The backend's device ("tun" for udp, "vxlan"); host-gw makes none. */
  readonly device?: { readonly name: string; readonly kind: string };
  /** Further devices of the backend's (vxlan's IPv6 device). */
  readonly moreDevices?: { readonly name: string; readonly kind: string }[];
  /** The IPv6 network this agent's marked IPv6 routes lie in, when the network has IPv6. */
  readonly ipv6Network?: string;
  /** The --bridge: deleted only if the agent created it, else only its address is. */
  readonly bridge?: {
    readonly name: string;
    readonly created: boolean;
    /** The IPv4 gateway address it was given ("" in an IPv6-only network), and the IPv6 one. */
    readonly address: string;
    readonly address6?: string;
    /** An operator's bridge's MTU before the agent set the overlay's: cleanup restores it. */
    readonly mtu?: number;
  };
  readonly masq?: MasqChains;
  /** Files of the backend's own (vxlan's VtepMAC). */
  readonly files: string[];
}

/** Where the inventory of the network behind `subnetFile` is kept. */
export function inventoryPath(stateDir: string, subnetFile: string): string {
  return statePath(stateDir, subnetFile).replace(/\.json$/, ".made.json");
}

export async function writeInventory(path: string, inventory: Inventory): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(inventory, null, 2) + "\n");
}

/** The inventory at `path`; undefined when there is none (or it is unreadable). */
export async function readInventory(path: string): Promise<Inventory | undefined> {
  try {
    const value = JSON.parse(await Deno.readTextFile(path));
    return typeof value === "object" && value !== null && Array.isArray(value.files)
      ? value as Inventory
      : undefined;
  } catch {
    return undefined;
  }
}
