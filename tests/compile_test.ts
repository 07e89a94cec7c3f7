/**
 * The single binary: `deno task compile` builds dist/overlay, which answers version,
 * --help and --health. deno compile needs the denort runtime, named by DENORT_BIN where
 * it cannot be downloaded (as on the development machines): without it this test is
 * reported as ignored, with the reason printed.
 */
import assert from "node:assert/strict";
import { tempDir } from "./helpers.ts";

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

Deno.test("without DENORT_BIN, deno task compile stops with a clear reason", async () => {
  const env = { ...Deno.env.toObject() };
  delete env.DENORT_BIN;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 2);
  assert.match(
    new TextDecoder().decode(output.stderr),
    /compile: DENORT_BIN is not set\. deno compile needs the denort runtime/,
  );
});
