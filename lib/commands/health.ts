/** `overlay --health` and `overlay wait`: is this host's overlay ready? */
import {
  durationFlag,
  type FlagName,
  helpText,
  LOCATOR_FLAGS,
  parseFlags,
  stringFlag,
} from "../flags.ts";
import { evaluateHealth, statePath } from "../health.ts";
import { printable } from "../printable.ts";

const HEALTH_FLAGS: FlagName[] = [...LOCATOR_FLAGS];
const WAIT_FLAGS: FlagName[] = [...LOCATOR_FLAGS, "timeout"];

export const HEALTH_HELP = helpText(
  "overlay --health [flags]",
  `Print one line and exit 0 when this host's overlay is ready:
  ready subnet:10.10.16.1/24 mtu:1472 backend:udp peers:2
or "not-ready <reason>" and exit 1. Give the same --subnet-file and --state-dir as
"overlay run" to ask about one network when several run on this host.`,
  HEALTH_FLAGS,
);

export const WAIT_HELP = helpText(
  "overlay wait [--timeout 60s] [flags]",
  `Block until this host's overlay is ready (start containers only after it), then print
the health line. Exits 1 with the last reason when the timeout passes.`,
  WAIT_FLAGS,
);

export async function healthCommand(args: string[]): Promise<number> {
  const { values } = parseFlags("overlay --health", args, HEALTH_FLAGS);
  if (values.help) {
    console.log(HEALTH_HELP);
    return 0;
  }
  const path = statePath(stringFlag(values, "state-dir"), stringFlag(values, "subnet-file"));
  const verdict = await evaluateHealth(path);
  console.log(printable(verdict.line));
  return verdict.ready ? 0 : 1;
}

export async function waitCommand(args: string[]): Promise<number> {
  const { values } = parseFlags("overlay wait", args, WAIT_FLAGS);
  if (values.help) {
    console.log(WAIT_HELP);
    return 0;
  }
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
}
