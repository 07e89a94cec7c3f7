/**
 * One host's udp backend run directly, without etcd or the agent: the config, our lease
 * and the peers' leases come as JSON on the command line. For tests and benchmarks of the
 * data path (lab/udp_pair.ts), e.g. of IPv6 inner packets before the agent leases
 * dual-stack subnets. Prints "ready" on stdout once the data path runs, writes the
 * counters to `countersFile` every 100 ms, and stops the backend on SIGTERM.
 *
 *   deno run -A lab/udp_host.ts '{"network":"10.10.0.0/16","subnetLen":24,…}'
 */
import { UdpBackend } from "../lib/backends/udp.ts";
import type { NetworkConfig } from "../lib/config.ts";
import { parseIp4, parseIp4Net } from "../lib/ip.ts";
import { parseIp6Net } from "../lib/ip6.ts";
import type { Lease } from "../lib/lease.ts";

/** A lease as the host script takes it: subnets in text. */
export interface UdpHostLease {
  readonly subnet: string;
  readonly ipv6Subnet?: string;
  readonly publicIp: string;
}

export interface UdpHostSpec {
  readonly network: string;
  readonly subnetLen: number;
  /** Set for a dual-stack network. */
  readonly ipv6Network?: string;
  readonly ipv6SubnetLen?: number;
  /** False for an IPv6-only network (the backend refuses it). */
  readonly enableIPv4?: boolean;
  readonly underlayIp: string;
  readonly underlayMtu: number;
  readonly device: string;
  readonly stateDir: string;
  readonly countersFile: string;
  readonly own: UdpHostLease;
  readonly peers: UdpHostLease[];
}

function lease(spec: UdpHostLease): Lease {
  return {
    subnet: parseIp4Net(spec.subnet, { strict: true })!,
    ipv6Subnet: spec.ipv6Subnet ? parseIp6Net(spec.ipv6Subnet, { strict: true }) : undefined,
    attrs: { publicIp: parseIp4(spec.publicIp)!, backendType: "udp" },
    etcdLeaseId: "1",
    modRevision: "1",
    createRevision: "1",
  };
}

/** The NetworkConfig a spec describes (what the agent would parse from etcd). */
export function udpHostConfig(spec: UdpHostSpec): NetworkConfig {
  const network = parseIp4Net(spec.network, { strict: true })!;
  const ipv6Network = spec.ipv6Network ? parseIp6Net(spec.ipv6Network)! : undefined;
  const subnetLen6 = spec.ipv6SubnetLen ?? 64;
  return {
    enableIPv4: spec.enableIPv4 ?? true,
    ipv6: ipv6Network && {
      network: ipv6Network,
      subnetLen: subnetLen6,
      subnetMin: ipv6Network.ip + (1n << BigInt(128 - subnetLen6)),
      subnetMax: ipv6Network.ip + ((1n << BigInt(128 - ipv6Network.prefixLen)) - 1n) -
        ((1n << BigInt(128 - subnetLen6)) - 1n),
    },
    network,
    subnetLen: spec.subnetLen,
    subnetMin: network.ip + 2 ** (32 - spec.subnetLen),
    subnetMax: network.ip + 2 ** (32 - network.prefixLen) - 2 ** (32 - spec.subnetLen),
    backend: { type: "udp", port: 8285, vni: 0, directRouting: false },
    raw: {},
  };
}

if (import.meta.main) {
  const spec: UdpHostSpec = JSON.parse(Deno.args[0]);
  const ip = parseIp4(spec.underlayIp)!;
  const backend = new UdpBackend({
    config: udpHostConfig(spec),
    underlay: {
      name: "eth0",
      ip,
      prefixLen: 24,
      addresses: [ip],
      publicIp: ip,
      mtu: spec.underlayMtu,
    },
    device: spec.device,
    stateDir: spec.stateDir,
  });
  await backend.start(lease(spec.own));
  for (const peer of spec.peers) backend.addPeer(lease(peer));
  const write = () =>
    Deno.writeTextFileSync(spec.countersFile, JSON.stringify(backend.observe().counters));
  write();
  const timer = setInterval(write, 100);
  Deno.addSignalListener("SIGTERM", async () => {
    clearInterval(timer);
    await backend.stop();
    write();
    Deno.exit(0);
  });
  console.log("udp host ready");
}
