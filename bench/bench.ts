/**
 * Benchmarks (deno task bench). Never part of the tests. Figures print to the terminal
 * and to bench/results/latest.json.
 *
 *   deno task bench [--only lease]
 */
import { parseArgs } from "node:util";
import { leaseBench } from "./lease_bench.ts";

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

const out = new URL("./results/latest.json", import.meta.url).pathname;
await Deno.mkdir(new URL("./results/", import.meta.url).pathname, { recursive: true });
await Deno.writeTextFile(out, JSON.stringify(results, null, 2) + "\n");
console.log(`results written to ${out}`);
Deno.exit(0);
