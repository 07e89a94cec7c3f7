/** `overlay --health` and `overlay wait`: is this host's overlay ready? */
import { defineCommand, durationFlag, type FlagName, LOCATOR_FLAGS, stringFlag } from "../flags.ts";
import { evaluateHealth, statePath } from "../health.ts";
import { printable } from "../printable.ts";

const HEALTH_FLAGS: FlagName[] = [...LOCATOR_FLAGS];
const WAIT_FLAGS: FlagName[] = [...LOCATOR_FLAGS, "timeout"];

export const healthCommand = defineCommand({
  name: "overlay --health",
  usage: "overlay --health [flags]",
  description: `Print one line and exit 0 when this host's overlay is ready:
  ready subnet:10.10.16.1/24 mtu:1472 backend:udp peers:2
or "not-ready <reason>" and exit 1. Give the same --subnet-file and --state-dir as
"overlay run" to ask about one network when several run on this host.`,
  flags: HEALTH_FLAGS,
  async run({ values }) {
    const path = statePath(stringFlag(values, "state-dir"), stringFlag(values, "subnet-file"));
    const verdict = await evaluateHealth(path);
    console.log(printable(verdict.line));
    return verdict.ready ? 0 : 1;
  },
});

export const waitCommand = defineCommand({
  name: "overlay wait",
  usage: "overlay wait [--timeout 60s] [flags]",
  description:
    `Block until this host's overlay is ready (start containers only after it), then print
the health line. Exits 1 with the last reason when the timeout passes.`,
  flags: WAIT_FLAGS,
  async run({ values }) {
    const timeoutMs = durationFlag(values, "timeout");
    const path = statePath(stringFlag(values, "state-dir"), stringFlag(values, "subnet-file"));
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const verdict = await evaluateHealth(path);
      if (verdict.ready) {
        console.log(printable(verdict.line));
        return 0;
      }
      if (Date.now() >= deadline) {
        console.error(
          `overlay wait: not ready after ${values.timeout}: ${
            printable(verdict.line).replace(/^not-ready /, "")
          }`,
        );
        return 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  },
});
