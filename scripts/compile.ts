/**
 * deno task compile: builds dist/overlay, the single binary operators copy to hosts.
 *
 * `deno compile` needs Deno's `denort` runtime of the same version: it downloads it
 * where it can reach Deno's servers, or uses DENORT_BIN (a path to a denort binary)
 * where it is given, as on machines that cannot download it.
 *
 * Only what the agent imports goes in: `--exclude-unused-npm` leaves out the lockfile's
 * test-only npm packages (etcd3, grpc-js, protobufjs, …); the agent itself imports none.
 * The binary links glibc dynamically (denort does, and the agent opens libc.so.6).
 *
 * No unstable flags: the agent uses none (its etcd client is fetch, its sockets libc's).
 * Permissions: --allow-all. The agent calls libc through FFI (TUN ioctls, netlink,
 * setsockopt), which is native code with every power of the process, and Deno asks
 * for --allow-all before it lets a program read /proc, /sys or /dev at all.
 */
import { agentV8Flags } from "../lab/overlay_argv.ts";

/** The `deno compile` arguments that build the binary at `output` from the repository at `root`. */
export function compileArgs(root: string, output: string): string[] {
  const v8Flags = agentV8Flags();
  return [
    "compile",
    "--allow-all",
    "--exclude-unused-npm",
    "--output",
    output,
    // The data paths run on Workers loaded by URL at run time: compile them in.
    "--include",
    `${root}lib/udp/datapath_worker.ts`,
    "--include",
    `${root}lib/wireguard/datapath_worker.ts`,
    // The V8 flags of deno.json's overlay task, so that what the tests and benches run is
    // what ships: they keep V8's heap near the agent's live data (README, "Benchmarks").
    ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
    `${root}main.ts`,
  ];
}

if (import.meta.main) {
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) {
    try {
      Deno.statSync(denort);
    } catch {
      console.error(
        `compile: DENORT_BIN=${denort}: no such file (point it at a denort ${Deno.version.deno} binary, or unset it to let deno download one)`,
      );
      Deno.exit(2);
    }
  }
  const root = new URL("../", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(root, `${root}dist/overlay`),
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(output.stderr);
  if (output.code !== 0 && !denort && /denort|dl\.deno\.land/.test(said)) {
    console.error(
      `compile: deno could not download its denort ${Deno.version.deno} runtime (no access to dl.deno.land?); ` +
        `set DENORT_BIN=/path/to/denort (the same version as deno) and run again`,
    );
    Deno.exit(2);
  }
  if (said) console.error(said.trimEnd());
  Deno.exit(output.code);
}
