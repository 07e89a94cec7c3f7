/**
 * The `deno run …` argv of the overlay task in deno.json: how the tests, the lab, the
 * demo and the benches run the agent (`v8Defaults`: without the task's V8 heap flags, for
 * the bench that compares them). Kept apart from helpers.ts so that what the demo
 * loads pulls in no test-only npm package (npm:etcd3 and its build scripts).
 */
const ROOT = new URL("../", import.meta.url).pathname;

export function overlayArgv(options: { v8Defaults?: boolean } = {}): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const task: string = config.tasks.overlay;
  return task.split(/\s+/)
    .filter((part) => !(options.v8Defaults && part.startsWith("--v8-flags=")))
    .map((part) => (part === "main.ts" ? `${ROOT}main.ts` : part));
}

/** The V8 flags the overlay task runs the agent with (the binary is built with the same). */
export function agentV8Flags(): string {
  const flag = overlayArgv().find((part) => part.startsWith("--v8-flags="));
  return flag ? flag.slice("--v8-flags=".length) : "";
}
