/**
 * Two hosts joined by one cable, each running the udp backend directly (lab/udp_host.ts:
 * no etcd, no agent), for tests and benchmarks of the data path. Host i (1, 2) has
 * underlay 172.31.252.i/24 on eth0, subnet 10.10.i.0/24 of 10.10.0.0/16 (its TUN address
 * 10.10.i.0), and in a dual-stack pair fd10:0:0:10i::/64 of fd10:0:0:100::/56 (its TUN
 * address fd10:0:0:10i::). Traffic between the TUN addresses needs no forwarding.
 */
import type { Lab, LabProcess } from "./lab.ts";
import type { UdpHostSpec } from "./udp_host.ts";

export interface UdpPairHost {
  readonly ns: string;
  readonly underlayIp: string;
  readonly tunIp: string;
  readonly tunIp6: string;
  readonly process: LabProcess;
  /** The backend's counters, as last written by its host script. */
  counters(): Record<string, number>;
}

const HOST_SCRIPT = new URL("./udp_host.ts", import.meta.url).pathname;

export const UDP_PAIR_NETWORK6 = "fd10:0:0:100::/56";

/** Makes the two hosts and waits until both data paths run. */
export async function udpPair(
  lab: Lab,
  options: { ipv6?: boolean; env?: Record<string, string>; name?: string } = {},
): Promise<[UdpPairHost, UdpPairHost]> {
  const name = options.name ?? "p";
  const [a, b] = [await lab.addNamespace(`${name}1`), await lab.addNamespace(`${name}2`)];
  await lab.cable(a, "eth0", b);
  for (const [ns, i] of [[a, 1], [b, 2]] as const) {
    await lab.ip(ns, "addr", "add", `172.31.252.${i}/24`, "dev", "eth0");
    await lab.ip(ns, "link", "set", "eth0", "up");
  }
  const lease = (i: number) => ({
    subnet: `10.10.${i}.0/24`,
    ipv6Subnet: options.ipv6 ? `fd10:0:0:10${i}::/64` : undefined,
    publicIp: `172.31.252.${i}`,
  });
  const hosts: UdpPairHost[] = [];
  for (const [ns, i] of [[a, 1], [b, 2]] as const) {
    const dir = `${lab.dir}/${name}${i}`;
    await Deno.mkdir(dir, { recursive: true });
    const spec: UdpHostSpec = {
      network: "10.10.0.0/16",
      subnetLen: 24,
      ...(options.ipv6 ? { ipv6Network: UDP_PAIR_NETWORK6, ipv6SubnetLen: 64 } : {}),
      underlayIp: `172.31.252.${i}`,
      underlayMtu: 1500,
      device: "flannel0",
      stateDir: dir,
      countersFile: `${dir}/counters.json`,
      own: lease(i),
      peers: [lease(3 - i)],
    };
    const process = lab.spawn(
      ns,
      ["deno", "run", "--allow-all", HOST_SCRIPT, JSON.stringify(spec)],
      options.env,
    );
    hosts.push({
      ns,
      underlayIp: `172.31.252.${i}`,
      tunIp: `10.10.${i}.0`,
      tunIp6: `fd10:0:0:10${i}::`,
      process,
      counters: () => JSON.parse(Deno.readTextFileSync(spec.countersFile)),
    });
  }
  for (const host of hosts) {
    const deadline = Date.now() + 20_000;
    while (!host.process.log().includes("udp host ready")) {
      if (Date.now() > deadline) {
        throw new Error(`udp host in ${host.ns} did not start:\n${host.process.log()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return [hosts[0], hosts[1]];
}
