/**
 * The demo: several hosts in network namespaces on one underlay switch, a local etcd,
 * `overlay run` on each host, two containers per host on a bridge made from the host's
 * subnet file (as Docker or LXC would), then each host's health line, the lease table,
 * a container-to-container reachability matrix with round-trip times, and one host's
 * `overlay status`. Everything it made is removed at the end, also on Ctrl-C.
 *
 *   deno task demo [--hosts 3] [--backend udp|vxlan|host-gw|wireguard|ipip]
 */
import { parseArgs } from "node:util";
import { Lab, type LabContainer } from "../lab/lab.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { hosts: { type: "string", default: "3" }, backend: { type: "string", default: "udp" } },
});
const hostCount = Number(values.hosts);
const started = performance.now();
const step = (text: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s] ${text}`);

if (Deno.uid() !== 0) {
  console.error("demo: needs root (it creates network namespaces); run it with sudo");
  Deno.exit(2);
}

let lab: Lab | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  cleaning ??= (async () => {
    if (!lab) return;
    step("cleaning up: stopping agents and etcd, deleting namespaces");
    await lab.dispose();
  })();
const onInterrupt = async () => {
  console.log("\ninterrupted");
  await cleanup();
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onInterrupt);
Deno.addSignalListener("SIGTERM", onInterrupt);

try {
  step(`creating the underlay switch and etcd (namespaces ${"<id>"}-u)`);
  lab = await Lab.create({ prefix: "ovdemo" });
  step(`lab ${lab.id}: etcd at ${lab.etcdEndpoint}`);
  await lab.setConfig({
    Network: "10.10.0.0/16",
    SubnetLen: 24,
    Backend: { Type: values.backend },
  });
  step(
    `network config: {"Network":"10.10.0.0/16","SubnetLen":24,"Backend":{"Type":"${values.backend}"}}`,
  );
  const hosts = [];
  for (let i = 0; i < hostCount; i++) hosts.push(await lab.addHost());
  step(`${hostCount} hosts on the underlay: ${hosts.map((h) => `${h.name}=${h.ip}`).join(" ")}`);
  for (const host of hosts) lab.startAgent(host);
  step("overlay run started on every host; waiting for readiness (overlay wait)");
  await Promise.all(hosts.map((host) => lab!.waitReady(host)));
  step("all hosts ready");

  console.log("\nHealth (overlay --health on each host):");
  for (const host of hosts) {
    const health = await lab.health(host);
    console.log(`  ${host.name}  ${health.stdout.trim()}`);
  }
  console.log("\nLeases (overlay leases):");
  const leases = await lab.overlay(lab.underlayNs, [
    "leases",
    `--etcd-endpoints=${lab.etcdEndpoint}`,
  ]);
  for (const line of leases.stdout.trimEnd().split("\n")) console.log(`  ${line}`);
  console.log("");

  const containers: LabContainer[] = [];
  for (const host of hosts) {
    containers.push(await lab.addContainer(host), await lab.addContainer(host));
  }
  step(`containers: ${containers.map((c) => `${c.name}=${c.ip}`).join(" ")}`);
  step("pinging every container from every container (3 pings each at once, then 5 in turn)");
  const pairs = containers.flatMap((from) =>
    containers.filter((to) => to !== from).map((to) => [from, to] as const)
  );
  // All pairs at once show reachability and resolve the neighbours; the round trips are then
  // timed one pair at a time, since 30 pings started together on a small machine time the
  // scheduler, not the overlay.
  const reached = await Promise.all(
    pairs.map(([from, to]) => lab!.ping(from, to.ip, { count: 3 })),
  );
  const rtts = new Map<string, number | undefined>();
  for (const [i, [from, to]] of pairs.entries()) {
    const rtt = reached[i] === undefined
      ? undefined
      : await lab.ping(from, to.ip, { count: 5, intervalS: 0.02 });
    rtts.set(`${from.name}>${to.name}`, rtt);
  }
  console.log("\nReachability (average ping RTT in ms; rows ping columns):");
  const width = 8;
  console.log("  " + "".padEnd(width) + containers.map((c) => c.name.padStart(width)).join(""));
  for (const from of containers) {
    const cells = containers.map((to) => {
      if (to === from) return "·".padStart(width);
      const rtt = rtts.get(`${from.name}>${to.name}`);
      return (rtt === undefined ? "FAIL" : rtt.toFixed(3)).padStart(width);
    });
    console.log("  " + from.name.padEnd(width) + cells.join(""));
  }
  const failures = [...rtts.values()].filter((rtt) => rtt === undefined).length;
  console.log(`\n  ${rtts.size - failures}/${rtts.size} pairs reachable`);

  console.log(`\nStatus of ${hosts[0].name} (overlay status):`);
  const status = await lab.overlay(hosts[0].ns, [
    "status",
    `--subnet-file=${hosts[0].subnetFile}`,
    `--state-dir=${hosts[0].stateDir}`,
  ]);
  for (const line of status.stdout.trimEnd().split("\n")) console.log(`  ${line}`);
  console.log("");
  step(
    failures === 0 ? "done: every container reaches every other" : `done: ${failures} pairs FAILED`,
  );
  if (failures > 0) {
    await cleanup();
    Deno.exit(1);
  }
} catch (error) {
  console.error(`demo failed: ${(error as Error).message}`);
  await cleanup();
  Deno.exit(1);
}
await cleanup();
Deno.exit(0);
