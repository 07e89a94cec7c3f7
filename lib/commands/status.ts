/** `overlay status`: this host's overlay as the daemon last reported it, with health. */
import { formatDuration } from "../duration.ts";
import { type FlagName, helpText, LOCATOR_FLAGS, parseFlags, stringFlag } from "../flags.ts";
import { type DaemonState, evaluateHealth, statePath } from "../health.ts";

const FLAGS: FlagName[] = [...LOCATOR_FLAGS, "json"];

export const STATUS_HELP = helpText(
  "overlay status [--json] [flags]",
  "Show this host's overlay: health, subnet, backend, data path, device, MTU, lease expiry, peers and packet counters.",
  FLAGS,
);

export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parseFlags("overlay status", args, FLAGS);
  if (values.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  const path = statePath(stringFlag(values, "state-dir"), stringFlag(values, "subnet-file"));
  const verdict = await evaluateHealth(path);
  let state: DaemonState | undefined;
  try {
    state = JSON.parse(await Deno.readTextFile(path));
  } catch {
    state = undefined;
  }
  if (values.json) {
    console.log(
      JSON.stringify({ health: verdict.line, ready: verdict.ready, state: state ?? null }, null, 2),
    );
    return verdict.ready ? 0 : 1;
  }
  console.log(`health     ${verdict.line}`);
  if (state) {
    const expires = state.leaseExpiresAt == null
      ? "never (reservation)"
      : `in ${formatDuration(state.leaseExpiresAt - Date.now())}`;
    const rows: [string, string | number | undefined][] = [
      ["subnet", state.subnet],
      ["backend", state.backend],
      ["data path", state.dataPath],
      ["device", state.device],
      ["mtu", state.mtu],
      ["lease", expires],
      ["etcd", state.degraded ?? "connected"],
      ["peers", state.peers],
    ];
    for (const [key, value] of rows) {
      if (value !== undefined) console.log(`${key.padEnd(10)} ${value}`);
    }
    if (state.counters) {
      console.log("counters");
      for (const [key, value] of Object.entries(state.counters)) {
        console.log(`  ${key.padEnd(24)} ${value}`);
      }
    }
  }
  return verdict.ready ? 0 : 1;
}
