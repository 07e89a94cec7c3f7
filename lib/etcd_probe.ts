/**
 * The etcd probe: a read of the config key every few seconds while the agent runs. A
 * watch on a member that lost quorum stays open but silent and renewals may be hours
 * apart, so this is what notices etcd going away and coming back; it also notices the
 * network config changing (which takes effect at the next start) and says so once.
 */
import { parseNetworkConfig } from "./config.ts";
import { log } from "./log.ts";
import type { SubnetRegistry } from "./registry.ts";

/** How often etcd is probed while the agent runs. */
export const ETCD_PROBE_MS = 2_000;

export interface EtcdProbeHooks {
  /** etcd answered (true) or did not (false). */
  onReachable(reachable: boolean): void;
}

/** Probes until stop(). `startupText` is the config the agent runs with. */
export function probeEtcd(
  registry: SubnetRegistry,
  startupText: string,
  hooks: EtcdProbeHooks,
): { stop(): void } {
  let probing = false;
  let warned = "";
  const timer = setInterval(async () => {
    if (probing) return;
    probing = true;
    try {
      const text = await registry.getConfigText();
      hooks.onReachable(true);
      if (text !== startupText && text !== warned) {
        warned = text ?? "";
        log.warn(`the network config in etcd changed; ${verdictOn(text)}`, {
          key: registry.configKey,
        });
      }
    } catch {
      hooks.onReachable(false);
    } finally {
      probing = false;
    }
  }, ETCD_PROBE_MS);
  return { stop: () => clearInterval(timer) };
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
