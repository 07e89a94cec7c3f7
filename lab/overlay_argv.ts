/**
 * The `deno run …` argv of the overlay task in deno.json: how the tests, the lab, the
 * demo and the benches run the agent. Kept apart from helpers.ts so that what the demo
 * loads pulls in no test-only npm package (npm:etcd3 and its build scripts).
 */
const ROOT = new URL("../", import.meta.url).pathname;

export function overlayArgv(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const task: string = config.tasks.overlay;
  return task.split(/\s+/).map((part) => (part === "main.ts" ? `${ROOT}main.ts` : part));
}
