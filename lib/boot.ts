/**
 * Boot order: a host may start before its etcd cluster, or before the operator writes
 * the network config. `overlay run` then waits instead of exiting, and comes up by itself
 * once etcd answers with a valid config:
 * - etcd unreachable: retries with capped exponential backoff (windows of 1 s growing to
 *   10 s, full jitter); meanwhile a TCP connect to the endpoints every second (no etcd
 *   request) notices etcd listening again, and the next try follows within a second;
 * - config missing or invalid: watches the config key, so a fix is seen at once, and
 *   reads it again at the backoff's pace in case the watch missed it;
 * - the config's backend unavailable on this kernel (ipip without its module): the same,
 *   so loading the module, or a config with another backend, is picked up by itself.
 * The reason is logged once per change (not per try) and is what `--health` says:
 * `waiting-for-etcd: …`, `waiting-for-config`, `invalid-config: …` or
 * `backend-unavailable: …`.
 */
import { Backoff, sleep } from "./backoff.ts";
import { ConfigError, type NetworkConfig, parseNetworkConfig } from "./config.ts";
import type { EtcdClient } from "./etcd_client.ts";
import type { SubnetRegistry } from "./registry.ts";

export interface BootedConfig {
  readonly config: NetworkConfig;
  /** The config text as read, to tell later changes from it. */
  readonly text: string;
}

export interface BootOptions {
  readonly signal: AbortSignal;
  /** One line for an etcd failure (names the endpoints and the fix). */
  readonly describeEtcdError: (error: unknown) => string;
  /** Called when the reason for waiting changes. */
  readonly onWaiting: (reason: string) => void;
  /** Why a valid config cannot serve this host (its own addresses inside the Network). */
  readonly checkHost?: (config: NetworkConfig) => string | undefined;
  /** Why this host's kernel cannot run the config's backend (lib/backends/registry.ts). */
  readonly checkBackend?: (config: NetworkConfig) => string | undefined;
}

/** Waits for etcd and a valid network config; undefined when `signal` aborted first. */
export async function awaitNetworkConfig(
  registry: SubnetRegistry,
  client: EtcdClient,
  options: BootOptions,
): Promise<BootedConfig | undefined> {
  const backoff = new Backoff({ baseMs: 250, capMs: 10_000 });
  let last = "";
  while (!options.signal.aborted) {
    let reason: string;
    let revision: string | undefined;
    try {
      const read = await registry.readConfig();
      revision = read.revision;
      if (read.text === undefined) reason = "waiting-for-config";
      else {
        try {
          const config = parseNetworkConfig(read.text);
          const clash = options.checkHost?.(config);
          if (clash) throw new ConfigError(clash);
          const unavailable = options.checkBackend?.(config);
          if (unavailable === undefined) return { config, text: read.text };
          reason = `backend-unavailable: ${unavailable}`;
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          reason = `invalid-config: ${error.message} (fix it with: overlay config set)`;
        }
      }
    } catch (error) {
      reason = `waiting-for-etcd: ${options.describeEtcdError(error)}`;
    }
    if (reason !== last) {
      last = reason;
      options.onWaiting(reason);
    }
    const delay = backoff.next();
    if (revision !== undefined) {
      await registry.configChanged(revision, delay, options.signal).catch(() =>
        sleep(delay, options.signal)
      );
    } else {
      await untilListening(client, delay, options.signal);
    }
  }
  return undefined;
}

/**
 * Sleeps for `ms`, checking every second whether an endpoint accepts connections; if one
 * does, the sleep ends after a random part of a second, so a fleet spreads its requests.
 */
async function untilListening(client: EtcdClient, ms: number, signal: AbortSignal) {
  const end = Date.now() + ms;
  while (!signal.aborted && Date.now() < end) {
    await sleep(Math.min(1_000, end - Date.now()), signal);
    if (Date.now() >= end || signal.aborted) return;
    if (await client.listening(500)) {
      await sleep(Math.random() * 1_000, signal);
      return;
    }
  }
}
