/**
 * The subnet file Docker, LXC and flannel's mk-docker-opts read:
 *   FLANNEL_NETWORK=10.10.0.0/16
 *   FLANNEL_SUBNET=10.10.16.1/24   (the subnet's first usable address)
 *   FLANNEL_MTU=1472
 *   FLANNEL_IPMASQ=false
 * Written atomically (temp file in the same folder, then rename), so a reader never
 * sees half a file.
 */
import { writeFileAtomic } from "./atomic_file.ts";
import { formatIp4, formatIp4Net, type Ip4Net, netGateway, parseIp4Net } from "./ip.ts";

export interface SubnetFileContents {
  readonly network: Ip4Net;
  readonly subnet: Ip4Net;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/** The file's text, in flannel's names and order. */
export function formatSubnetFile(contents: SubnetFileContents): string {
  return [
    `FLANNEL_NETWORK=${formatIp4Net(contents.network)}`,
    `FLANNEL_SUBNET=${formatIp4(netGateway(contents.subnet))}/${contents.subnet.prefixLen}`,
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

/**
 * Reads the subnet named in an existing subnet file; undefined when the file is
 * absent or does not name a valid subnet (a stale or hand-edited file is ignored).
 */
export async function readPreviousSubnet(path: string): Promise<Ip4Net | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
  const subnet = parseEnvFile(text).get("FLANNEL_SUBNET");
  return subnet ? parseIp4Net(subnet.trim()) : undefined;
}
