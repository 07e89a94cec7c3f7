/**
 * The network config changing under a running agent: it takes effect at the next start,
 * and the operator is told so once per new text (the lease watch sees the config key).
 */
import { parseNetworkConfig } from "./config.ts";
import { log } from "./log.ts";

/** A reporter for config texts seen in etcd; `startupText` is the config the agent runs with. */
export function configChangeReporter(
  startupText: string,
  configKey: string,
): (text: string | undefined) => void {
  let last: string | undefined = startupText;
  return (text) => {
    if (text === last) return;
    last = text;
    if (text === startupText) {
      log.info("the network config in etcd is back to the one the agent runs with", {
        key: configKey,
      });
    } else {
      log.warn(`the network config in etcd changed; ${verdictOn(text)}`, { key: configKey });
    }
  };
}

function verdictOn(text: string | undefined): string {
  if (text === undefined) return "it was deleted; the running network is unaffected";
  try {
    parseNetworkConfig(text);
    return "it takes effect when the agent restarts";
  } catch (error) {
    return `it is invalid (${(error as Error).message}); the running network is unaffected`;
  }
}
