/**
 * The single binary: `deno task compile` builds dist/overlay, which answers version,
 * --help and --health. deno compile needs the denort runtime, named by DENORT_BIN where
 * it cannot be downloaded (as on the development machines): without it this test is
 * reported as ignored, with the reason printed.
 */
import assert from "node:assert/strict";
import { tempDir } from "./helpers.ts";
import { compileArgs } from "../scripts/compile.ts";
import { agentV8Flags } from "../lab/overlay_argv.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.log(
    "compile test skipped: DENORT_BIN is not set (deno compile cannot download its runtime here)",
  );
}

Deno.test({
  name: "the compiled binary answers version, --help and --health",
  ignore: !denort,
  async fn() {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(build.code, 0, new TextDecoder().decode(build.stderr));
    const binary = `${ROOT}dist/overlay`;
    const run = async (...args: string[]) => {
      const output = await new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" })
        .output();
      return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
    };
    assert.match((await run("version")).stdout, /^overlay \d+\.\d+\.\d+\n$/);
    assert.match((await run("--help")).stdout, /^Usage: overlay <command>/);
    await using dir = await tempDir();
    const health = await run("--health", `--subnet-file=${dir}/s.env`, `--state-dir=${dir}`);
    assert.equal(health.code, 1);
    assert.match(health.stdout, /^not-ready daemon not running/);
  },
});

Deno.test("the binary runs with the V8 flags the tests and benches run the agent with", () => {
  const args = compileArgs(ROOT, "/tmp/x");
  const flags = args.filter((arg) => arg.startsWith("--v8-flags="));
  assert.deepEqual(flags, [`--v8-flags=${agentV8Flags()}`]);
  assert.match(agentV8Flags(), /--optimize-for-size/);
  assert.ok(
    args.indexOf(flags[0]) < args.indexOf(`${ROOT}main.ts`),
    "a flag, not a script argument",
  );
});

Deno.test("the agent's V8 flags take effect: V8 sizes for memory, semi-spaces of 1 MB", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--v8-flags=${agentV8Flags()},--print-flag-values`, "0"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const flags = new TextDecoder().decode(output.stdout);
  assert.match(flags, /^--optimize-for-size$/m);
  assert.match(flags, /^--max-semi-space-size=1$/m);
});

Deno.test("DENORT_BIN naming no file stops the compile task with a clear reason", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: ROOT,
    env: { DENORT_BIN: "/nonexistent/denort" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 2);
  assert.match(
    new TextDecoder().decode(output.stderr),
    /compile: DENORT_BIN=\/nonexistent\/denort: no such file \(point it at a denort [\d.]+ binary, or unset it/,
  );
});

Deno.test("the binary carries only what the agent imports: no npm package", async () => {
  const args = compileArgs(ROOT, "/tmp/x");
  assert.ok(args.includes("--exclude-unused-npm"), args.join(" "));
  const workers = ["lib/udp/datapath_worker.ts", "lib/wireguard/datapath_worker.ts"];
  for (const worker of workers) {
    assert.ok(args.includes(`${ROOT}${worker}`), `${worker}: the Worker is compiled in`);
  }
  // What --exclude-unused-npm keeps: the npm packages reachable from the module graph.
  for (const entry of ["main.ts", ...workers]) {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", `${ROOT}${entry}`],
      stdout: "piped",
    }).output();
    const graph = JSON.parse(new TextDecoder().decode(info.stdout));
    const npm = graph.modules.map((m: { specifier: string }) => m.specifier)
      .filter((s: string) => s.startsWith("npm:"));
    assert.deepEqual(npm, [], `${entry} imports no npm package`);
  }
});

Deno.test("the demo loads no test-only npm package (no install warnings on a fresh machine)", async () => {
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${ROOT}demo/demo.ts`],
    stdout: "piped",
  }).output();
  const graph = JSON.parse(new TextDecoder().decode(info.stdout));
  assert.deepEqual(
    graph.modules.map((m: { specifier: string }) => m.specifier).filter((s: string) =>
      s.startsWith("npm:")
    ),
    [],
  );
});
