/**
 * deno task compile: builds dist/overlay, the single binary operators copy to hosts.
 *
 * `deno compile` needs Deno's `denort` runtime. It honours DENORT_BIN (a path to a
 * denort binary of the same version as deno); without it deno would download one,
 * which machines without access to Deno's servers cannot do, so we stop and say so.
 *
 * No unstable flags: the agent uses none (its etcd client is fetch, its sockets libc's).
 * Permissions: --allow-all. The agent calls libc through FFI (TUN ioctls, netlink,
 * setsockopt), which is native code with every power of the process, and Deno asks
 * for --allow-all before it lets a program read /proc, /sys or /dev at all.
 */
const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.error(
    "compile: DENORT_BIN is not set. deno compile needs the denort runtime of deno " +
      `${Deno.version.deno}; this machine cannot download it. Set DENORT_BIN=/path/to/denort and run again.`,
  );
  Deno.exit(2);
}
try {
  Deno.statSync(denort);
} catch {
  console.error(
    `compile: DENORT_BIN=${denort}: no such file (point it at a denort ${Deno.version.deno} binary)`,
  );
  Deno.exit(2);
}
const root = new URL("../", import.meta.url).pathname;
const output = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    "--allow-all",
    "--output",
    `${root}dist/overlay`,
    // The udp data path runs on a Worker loaded by URL at run time: compile it in.
    "--include",
    `${root}lib/udp/datapath_worker.ts`,
    `${root}main.ts`,
  ],
  env: { DENORT_BIN: denort },
  stdout: "inherit",
  stderr: "inherit",
}).output();
Deno.exit(output.code);
