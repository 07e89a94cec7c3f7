/**
 * Benchmarks (deno task bench). Never part of the tests. Figures print to the terminal
 * and to bench/results/latest.json.
 *
 *   deno task bench [--only lease,reconnect,udp,udp-inner,checksum,udp6,vxlan6,wireguard,kernel,scale,ipip,socket]
 */
import { parseArgs } from "node:util";
import { ipipBench, KERNEL_TARGETS, kernelBench } from "./kernel_bench.ts";
import { leaseBench } from "./lease_bench.ts";
import { SCALE_TARGETS, scaleBench } from "./scale_bench.ts";
import { agentV8Flags } from "../lab/overlay_argv.ts";
import { RECONNECT_TARGETS, reconnectBench } from "./reconnect_bench.ts";
import { socketBench } from "./socket_bench.ts";
import { printCoresRows, UDP_TARGETS, udpBench } from "./udp_bench.ts";
import { INNER_UDP_TARGETS, innerUdpBench } from "./udp_bench.ts";
import { checksumBench } from "./checksum_bench.ts";
import { UDP6_TARGETS, udp6Bench } from "./udp6_bench.ts";
import { VXLAN6_TARGETS, vxlan6Bench } from "./vxlan6_bench.ts";
import { WIREGUARD_PATH_TARGETS, wireguardPathBench } from "./wireguard_path_bench.ts";

const { values } = parseArgs({ args: Deno.args, options: { only: { type: "string" } } });
const want = (name: string) => !values.only || values.only.split(",").includes(name);
const results: Record<string, unknown> = { date: new Date().toISOString() };
const verdict = (ok: boolean) => (ok ? "meets target" : "MISSES target");

if (want("lease")) {
  console.log(
    "lease acquisition: Network 10.0.0.0/8, SubnetLen 24, 60,000 of 65,535 subnets taken",
  );
  const lease = await leaseBench();
  results.lease = lease;
  console.log(
    `  acquire median ${lease.medianMs.toFixed(0)} ms over ${lease.acquireMs.length} runs ` +
      `(${
        lease.acquireMs.map((ms) => ms.toFixed(0)).join(", ")
      } ms); target ≤ ${lease.targetMs} ms: ` +
      verdict(lease.medianMs <= lease.targetMs),
  );
}

if (want("reconnect")) {
  const r = await reconnectBench();
  results.reconnect = r;
  console.log(
    `\na fleet reconnecting: ${r.clients} clients (watch + lease each), etcd stopped ${r.downSeconds} s and started again`,
  );
  const row = (name: string, f: { peakPerSecond: number; allResumedMs: number }) =>
    console.log(
      `  ${name.padEnd(34)} peak ${f.peakPerSecond.toFixed(0).padStart(5)} requests/s, ` +
        `all watches resumed ${(f.allResumedMs / 1000).toFixed(1)} s after etcd answered`,
    );
  row("fixed delays (500 ms / 200 ms)", r.fixed);
  row("capped backoff, full jitter", r.jittered);
  const ratio = r.jittered.peakPerSecond / r.fixed.peakPerSecond;
  console.log(
    `  peak ${ratio.toFixed(2)} × the fixed delays' (target ≤ ${
      RECONNECT_TARGETS.peakRatio.toFixed(2)
    }): ${verdict(ratio <= RECONNECT_TARGETS.peakRatio)}; resumed within ${
      RECONNECT_TARGETS.allResumedMs / 1000
    } s: ${verdict(r.jittered.allResumedMs <= RECONNECT_TARGETS.allResumedMs)}`,
  );
}

if (want("udp")) {
  console.log(
    "\nudp backend vs references (iperf3 TCP 10 s, ping 20 × 0.2 s), side by side in this run",
  );
  const r = await udpBench();
  results.udp = r;
  const row = (name: string, gbps: number, ping: number) =>
    console.log(
      `  ${name.padEnd(26)} TCP ${gbps.toFixed(2).padStart(6)} Gbit/s (${
        (gbps / r.kernelVxlan.tcpGbps).toFixed(2)
      } × kernel vxlan, ` +
        `${(gbps / r.rawVeth.tcpGbps).toFixed(2)} × raw veth)   ping avg ${ping.toFixed(3)} ms`,
    );
  row("raw veth", r.rawVeth.tcpGbps, r.rawVeth.pingAvgMs);
  row("kernel vxlan (by hand)", r.kernelVxlan.tcpGbps, r.kernelVxlan.pingAvgMs);
  row("overlay udp, batched", r.batched.tcpGbps, r.batched.pingAvgMs);
  row("overlay udp, offloads", r.udp.tcpGbps, r.udp.pingAvgMs);
  const t = UDP_TARGETS;
  const u = r.udp;
  const ratio = u.tcpGbps / r.kernelVxlan.tcpGbps;
  console.log(`  data path: ${u.dataPath}`);
  console.log(
    `  udp TCP ${u.tcpGbps.toFixed(2)} Gbit/s; ≥ ${t.tcpGbps} Gbit/s: ${
      verdict(u.tcpGbps >= t.tcpGbps)
    }; ${ratio.toFixed(2)} × kernel vxlan, ≥ ${t.tcpVsKernelVxlan}: ${
      verdict(ratio >= t.tcpVsKernelVxlan)
    }`,
  );
  console.log(
    `  offloads bought ${(u.tcpGbps / r.batched.tcpGbps).toFixed(1)} × the batched path's TCP (${
      r.batched.tcpGbps.toFixed(2)
    } Gbit/s)`,
  );
  console.log(
    `  udp ping avg ${u.pingAvgMs.toFixed(3)} ms; target ≤ ${t.pingAvgMs}: ${
      verdict(u.pingAvgMs <= t.pingAvgMs)
    }`,
  );
  console.log(
    `  CPU per Gbit/s of the receiving agent: offloads ${
      (u.agentCpuPercent / u.tcpGbps).toFixed(0)
    } %, batched ${(r.batched.agentCpuPercent / r.batched.tcpGbps).toFixed(0)} % of a core`,
  );
  console.log(
    `  UDP at 1 Gbit/s offered: ${
      u.udpLossPercent.toFixed(2)
    } % lost; target < ${t.udpLossPercent} %: ${verdict(u.udpLossPercent < t.udpLossPercent)}`,
  );
  const cap = u.capture;
  console.log(
    `  underlay capture: ${cap.datagrams} datagrams, ${cap.notOnePacket} not exactly one inner packet, ${cap.overMtu} over the MTU (largest inner ${cap.largestInner} B): ${
      verdict(cap.datagrams > 0 && cap.notOnePacket === 0 && cap.overMtu === 0)
    }`,
  );
  console.log(
    `  agent RSS ${u.agentRssMb.toFixed(1)} MB; target ≤ ${t.agentRssMb}: ${
      verdict(u.agentRssMb <= t.agentRssMb)
    }`,
  );
  const ready = Math.max(...u.runToReadyMs);
  console.log(
    `  run to ready ${
      u.runToReadyMs.map((ms) => ms.toFixed(0)).join(", ")
    } ms; target ≤ ${t.runToReadyMs}: ${verdict(ready <= t.runToReadyMs)}`,
  );
  console.log(
    `  join to learned by a peer ${u.joinToLearnedMs.toFixed(0)} ms; join to first answered ping ${
      u.joinToReachableMs.toFixed(0)
    } ms; target ≤ ${t.joinToReachableMs}: ${verdict(u.joinToReachableMs <= t.joinToReachableMs)}`,
  );
  if (r.cores) printCoresRows(r.cores);
}

if (want("udp-inner")) {
  console.log(
    "\ninner UDP: iperf3 -u, 1400 B, 4 MB buffers; the offered rate searched (doubling from 500 Mbit/s, then 4 bisections of 2 s trials) for < 1 % loss; udp container to container, kernel vxlan by hand host to host; 2 alternating rounds, medians",
  );
  const r = await innerUdpBench();
  results.udpInner = r;
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];
  const fmt = (figures: { receivedGbps: number; offeredMbps: number }[]) =>
    figures.map((f) => `${f.receivedGbps.toFixed(2)} (-b ${f.offeredMbps.toFixed(0)}M)`).join(", ");
  console.log(`  kernel vxlan (by hand)     ${fmt(r.kernelVxlan)} Gbit/s`);
  for (const [name, figures] of Object.entries(r.udp)) {
    console.log(
      `  overlay ${name.padEnd(18)} ${fmt(figures)} Gbit/s; data path: ${r.dataPath[name]}`,
    );
    console.log(
      `  ${name}: ${r.ratio[name].toFixed(2)} × kernel vxlan (median ${
        median(figures.map((f) => f.receivedGbps)).toFixed(2)
      } Gbit/s); target ≥ ${INNER_UDP_TARGETS.vsKernelVxlan}: ${
        verdict(r.ratio[name] >= INNER_UDP_TARGETS.vsKernelVxlan)
      }`,
    );
  }
}

if (want("checksum")) {
  console.log(
    "\nones'-complement sum, one core: plain JS vs WebAssembly SIMD (best of 3 alternating)",
  );
  const r = checksumBench();
  results.checksum = r;
  for (const row of r.rows) {
    console.log(
      `  ${String(row.length).padStart(6)} B  JS ${
        row.jsGbps.toFixed(1).padStart(6)
      } Gbit/s  wasm ${row.wasmGbps.toFixed(1).padStart(6)} Gbit/s (${
        (row.wasmGbps / row.jsGbps).toFixed(1)
      } ×)`,
    );
  }
}

if (want("vxlan6")) {
  console.log(
    "\nvxlan backend over IPv6 vs kernel vxlan over IPv6 by hand (host to host, iperf3 TCP, 3 alternating rounds of 5 s, medians)",
  );
  const r = await vxlan6Bench();
  results.vxlan6 = r;
  const ratio = r.backendGbps / r.byHandGbps;
  console.log(
    `  backend ${r.backendGbps.toFixed(2)} Gbit/s (${
      r.samples.backend.map((g) => g.toFixed(2)).join(", ")
    }), ` +
      `by hand ${r.byHandGbps.toFixed(2)} Gbit/s (${
        r.samples.byHand.map((g) => g.toFixed(2)).join(", ")
      }): ` +
      `${ratio.toFixed(2)} × (target ≥ ${VXLAN6_TARGETS.ratio}): ${
        verdict(ratio >= VXLAN6_TARGETS.ratio)
      }`,
  );
}

if (want("udp6")) {
  console.log(
    "\nudp backend, IPv6 inner vs IPv4 inner (dual stack, host to host, iperf3 TCP, 3 alternating rounds of 5 s, medians)",
  );
  const r = await udp6Bench();
  results.udp6 = r;
  const ratio = r.ipv6Gbps / r.ipv4Gbps;
  const list = (values: number[]) => values.map((v) => v.toFixed(2)).join(", ");
  console.log(
    `  IPv4 inner TCP ${r.ipv4Gbps.toFixed(2)} Gbit/s (${list(r.samples.ipv4)}), ping avg ${
      r.pingAvgMs.ipv4.toFixed(3)
    } ms`,
  );
  console.log(
    `  IPv6 inner TCP ${r.ipv6Gbps.toFixed(2)} Gbit/s (${list(r.samples.ipv6)}), ping avg ${
      r.pingAvgMs.ipv6.toFixed(3)
    } ms`,
  );
  console.log(
    `  IPv6 = ${ratio.toFixed(2)} × IPv4; target ≥ ${UDP6_TARGETS.ratio}: ${
      verdict(ratio >= UDP6_TARGETS.ratio)
    }; drops ${JSON.stringify(r.drops)}`,
  );
}

if (want("wireguard")) {
  console.log(
    "\nwireguard backend, userspace path, vs wireguard-go between the same two namespaces (host to host, iperf3 TCP, 3 alternating rounds of 5 s, medians; ping 20 × 0.2 s)",
  );
  const r = await wireguardPathBench();
  results.wireguard = r;
  const list = (values: number[]) => values.map((v) => v.toFixed(2)).join(", ");
  const ratio = r.overlayGbps / r.wireguardGoGbps;
  const pingRatio = r.pingAvgMs.overlay / r.pingAvgMs.wireguardGo;
  const t = WIREGUARD_PATH_TARGETS;
  console.log(`  data path: ${r.dataPath}`);
  console.log(
    `  overlay wireguard TCP ${r.overlayGbps.toFixed(2)} Gbit/s (${
      list(r.samples.overlay)
    }), ping avg ${r.pingAvgMs.overlay.toFixed(3)} ms, receiver CPU ${
      (r.receiverCpu.overlay * 100).toFixed(0)
    } %`,
  );
  console.log(
    `  wireguard-go      TCP ${r.wireguardGoGbps.toFixed(2)} Gbit/s (${
      list(r.samples.wireguardGo)
    }), ping avg ${r.pingAvgMs.wireguardGo.toFixed(3)} ms, receiver CPU ${
      (r.receiverCpu.wireguardGo * 100).toFixed(0)
    } %`,
  );
  console.log(
    `  throughput ${ratio.toFixed(2)} × wireguard-go (target ≥ ${t.ratio}): ${
      verdict(ratio >= t.ratio)
    }; ping ${pingRatio.toFixed(2)} × wireguard-go's (target ≤ ${t.pingRatio}): ${
      verdict(pingRatio <= t.pingRatio)
    }; drops ${JSON.stringify(r.drops)}`,
  );
}

if (want("kernel")) {
  console.log(
    "\nkernel backends vs the same data path made by hand (iperf3 TCP, 3 alternating rounds of 5 s, medians)",
  );
  const r = await kernelBench();
  results.kernel = r;
  const t = KERNEL_TARGETS;
  const vxRatio = r.vxlan.backendGbps / r.vxlan.byHandGbps;
  const hgRatio = r.hostGw.backendGbps / r.hostGw.byHandGbps;
  console.log(
    `  vxlan backend ${r.vxlan.backendGbps.toFixed(2)} Gbit/s vs kernel vxlan by hand ${
      r.vxlan.byHandGbps.toFixed(2)
    }: ${vxRatio.toFixed(2)} ×; target ≥ ${t.ratio}: ${verdict(vxRatio >= t.ratio)}`,
  );
  console.log(
    `  host-gw backend ${r.hostGw.backendGbps.toFixed(2)} Gbit/s vs routes by hand ${
      r.hostGw.byHandGbps.toFixed(2)
    }: ${hgRatio.toFixed(2)} ×; target ≥ ${t.ratio}: ${verdict(hgRatio >= t.ratio)}`,
  );
  for (const [name, f] of Object.entries(r.thousandPeers)) {
    console.log(
      `  ${name}: 1,000 peers programmed in ${f.programMs} ms (target ≤ ${t.programMs}: ${
        verdict(f.programMs <= t.programMs)
      }), ` +
        `removed in ${f.removeMs} ms (${verdict(f.removeMs <= t.removeMs)}), agent RSS ${
          f.rssMb.toFixed(1)
        } MB (≤ ${t.rssMb}: ${verdict(f.rssMb <= t.rssMb)})`,
    );
  }
}

if (want("scale")) {
  const t = SCALE_TARGETS;
  console.log(
    `\ncontrol plane at ${t.peers} hosts (vxlan; the other hosts are leases in etcd), then churn of ${t.churnRate} joins and ${t.churnRate} leaves per second for ${t.churnSeconds} s; the agent as shipped (V8 flags ${agentV8Flags()}), then with V8's defaults`,
  );
  const runs = [await scaleBench(), await scaleBench({ v8Defaults: true })];
  results.scale = runs;
  for (const r of runs) {
    console.log(`  agent V8 flags: ${r.v8Flags || "none (V8's defaults)"}`);
    console.log(
      `    ${r.peers} peers: agent start → all programmed ${r.startToProgrammedMs} ms (target ≤ ${t.programMs}: ${
        verdict(r.startToProgrammedMs <= t.programMs)
      }); all removed ${r.removeMs} ms (≤ ${t.removeMs}: ${
        verdict(r.removeMs <= t.removeMs)
      }); written with the agent running → all programmed ${r.writeToProgrammedMs} ms (≤ ${t.programMs}: ${
        verdict(r.writeToProgrammedMs <= t.programMs)
      })`,
    );
    const rss = Math.max(r.rssMb.afterStart, r.rssMb.afterRewrite, r.churn.rssMb.max);
    console.log(
      `    agent RSS with ${r.peers} peers ${r.rssMb.afterStart.toFixed(1)} MB after start, ${
        r.rssMb.afterRewrite.toFixed(1)
      } MB after the rewrite, at most ${
        r.churn.rssMb.max.toFixed(1)
      } MB in the churn (≤ ${t.rssMb}: ${verdict(rss <= t.rssMb)})`,
    );
    const c = r.churn;
    const exact = c.lost === 0 &&
      c.mismatches.routes + c.mismatches.neighbours + c.mismatches.fdb === 0;
    console.log(
      `    churn: ${c.changes} changes; etcd write sent → kernel route median ${c.applyMs.median} ms, p99 ${c.applyMs.p99} ms, max ${c.applyMs.max} ms (≤ ${t.churnApplyMs}: ${
        verdict(c.applyMs.max <= t.churnApplyMs)
      }); ${c.lost} never applied; kernel vs leases at the end: ${c.mismatches.routes} routes, ${c.mismatches.neighbours} neighbours, ${c.mismatches.fdb} FDB entries differ (${
        verdict(exact)
      }); ${c.writeFailures} writes failed, ${c.monitorOverflows} monitor overflows`,
    );
    console.log(
      `    churn RSS start ${c.rssMb.start.toFixed(1)} MB, end ${c.rssMb.end.toFixed(1)} MB, min ${
        c.rssMb.min.toFixed(1)
      }, max ${c.rssMb.max.toFixed(1)} MB`,
    );
  }
}

if (want("ipip")) {
  console.log(
    "\nipip backend vs kernel ipip made by hand (iperf3 TCP host to host, 3 alternating rounds of 5 s, medians)",
  );
  const r = await ipipBench();
  results.ipip = r;
  const t = KERNEL_TARGETS;
  if (r.skipped) console.log(`  skipped: ${r.skipped}`);
  if (r.pair) {
    const ratio = r.pair.backendGbps / r.pair.byHandGbps;
    console.log(
      `  ipip backend ${r.pair.backendGbps.toFixed(2)} Gbit/s vs kernel ipip by hand ${
        r.pair.byHandGbps.toFixed(2)
      }: ${ratio.toFixed(2)} ×; target ≥ ${t.ratio}: ${verdict(ratio >= t.ratio)}`,
    );
  }
  const f = r.thousandPeers;
  if (f) {
    console.log(
      `  ipip: 1,000 peers programmed in ${f.programMs} ms (target ≤ ${t.programMs}: ${
        verdict(f.programMs <= t.programMs)
      }), removed in ${f.removeMs} ms (${verdict(f.removeMs <= t.removeMs)}), agent RSS ${
        f.rssMb.toFixed(1)
      } MB (≤ ${t.rssMb}: ${verdict(f.rssMb <= t.rssMb)})`,
    );
  }
}

if (want("socket")) {
  console.log(
    "\ndatagram socket: Deno.listenDatagram vs FFI sendmmsg/recvmmsg (1400 B, 3 s, namespaces)",
  );
  const r = await socketBench();
  results.socket = r;
  const line = (name: string, f: { datagramsPerSecond: number; gbps: number }) =>
    console.log(
      `  ${name.padEnd(30)} ${
        (f.datagramsPerSecond / 1000).toFixed(0).padStart(6)
      } k datagrams/s  ${f.gbps.toFixed(2)} Gbit/s`,
    );
  line("Deno.listenDatagram", r.listenDatagram);
  line("FFI sendmmsg/recvmmsg ×64", r.ffiBatched);
  console.log(
    `  FFI batched = ${
      (r.ffiBatched.datagramsPerSecond / r.listenDatagram.datagramsPerSecond).toFixed(1)
    } × listenDatagram`,
  );
}

const out = new URL("./results/latest.json", import.meta.url).pathname;
await Deno.mkdir(new URL("./results/", import.meta.url).pathname, { recursive: true });
await Deno.writeTextFile(out, JSON.stringify(results, null, 2) + "\n");
console.log(`results written to ${out}`);
Deno.exit(0);
