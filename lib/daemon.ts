/**
 * `overlay run`: the agent. It wires the pieces together and owns their lifecycle:
 * config → underlay → backend → lease → data path → subnet file → ready, then keeps
 * the lease renewed and the peers current until it is stopped or loses its lease.
 */
import type { Backend } from "./backend.ts";
import { createBackend } from "./backends/factory.ts";
import { describeEtcdError, etcdFailure, type EtcdOptions } from "./etcd.ts";
import { EtcdClient } from "./etcd_client.ts";
import {
  type DaemonState,
  describeState,
  HEARTBEAT_MS,
  type PeerStatus,
  processStartTime,
  serveHealth,
  statePath,
  writeState,
} from "./health.ts";
import { formatIp4, formatIp4Net, netGateway } from "./ip.ts";
import { describeLease, type Lease, leaseKey } from "./lease.ts";
import { LeaseManager } from "./lease_manager.ts";
import { log } from "./log.ts";
import { type LeaseEvent, SubnetRegistry } from "./registry.ts";
import { parseNetworkConfig } from "./config.ts";
import { readPreviousSubnet, writeSubnetFile } from "./subnet_file.ts";
import { ensureBridge } from "./bridge.ts";
import { Netlink } from "../ffi/netlink.ts";
import { applyMasq, keepMasq, masqChains } from "./ip_masq.ts";
import { notifySystemd } from "./systemd.ts";
import { renderMetrics } from "./metrics.ts";
import { describeUnderlay, detectUnderlay } from "./underlay.ts";

export interface DaemonOptions {
  readonly etcd: EtcdOptions;
  readonly iface?: string;
  readonly publicIp?: number;
  readonly device?: string;
  readonly subnetFile: string;
  readonly stateDir: string;
  readonly ipMasq: boolean;
  /** Create or adopt this bridge with the subnet's first address (--bridge). */
  readonly bridge?: string;
  readonly healthz?: { readonly hostname: string; readonly port: number };
  readonly leaseTtlMs: number;
  readonly renewMarginMs: number;
}

/** How often the ip-masq rules are checked and restored. */
const MASQ_CHECK_MS = 10_000;

/** How often etcd is probed while the agent runs. */
const ETCD_PROBE_MS = 2_000;

/** How often a failed renewal is retried while etcd is unreachable. */
const RENEW_RETRY_MS = 1_000;

/** Runs the agent until SIGINT/SIGTERM (exit 0) or until the lease is lost (exit 1). */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const client = new EtcdClient(options.etcd);
  const registry = new SubnetRegistry(client, options.etcd.prefix);
  const stop = new AbortController();
  const stateFile = statePath(options.stateDir, options.subnetFile);
  let wroteState = false;
  const stateDirExisted = await Deno.stat(options.stateDir).then(() => true, () => false);
  let backend: Backend | undefined;
  /** A lease this start claimed, to give back if the start fails (bad input changes nothing). */
  let claimedLease: Lease | undefined;
  try {
    const config = await registry.getConfig().catch((e) => {
      throw etcdFailure(e, options.etcd);
    });
    const startupConfigText = await registry.getConfigText();
    const underlay = detectUnderlay({ iface: options.iface, publicIp: options.publicIp });
    log.info("underlay", {
      iface: describeUnderlay(underlay),
      publicIp: formatIp4(underlay.publicIp),
    });
    backend = createBackend({
      config,
      underlay,
      device: options.device,
      stateDir: options.stateDir,
    });
    const manager = new LeaseManager(registry, {
      attrs: {
        publicIp: underlay.publicIp,
        backendType: backend.type,
        backendData: backend.backendData,
      },
      ttlMs: options.leaseTtlMs,
      renewMarginMs: options.renewMarginMs,
      previousSubnet: await readPreviousSubnet(options.subnetFile),
    });

    const pidStart = processStartTime(Deno.pid) ?? "";
    let state: DaemonState = {
      pid: Deno.pid,
      pidStart,
      ready: false,
      reason: "starting",
      heartbeatAt: Date.now(),
      subnetFile: options.subnetFile,
    };
    // Writes go one after another, so the file always ends with the latest state.
    let writing = Promise.resolve();
    const publish = (change: Partial<DaemonState>): Promise<void> => {
      state = { ...state, ...change, heartbeatAt: Date.now() };
      const snapshot = state;
      wroteState = true;
      writing = writing.then(() =>
        writeState(stateFile, snapshot).catch((error) =>
          log.error("cannot write state file", { path: stateFile, error: error.message })
        )
      );
      return writing;
    };
    await publish({});

    const held = await manager.acquire(config).catch((e) => {
      throw etcdFailure(e, options.etcd);
    });
    let own: Lease = held.lease;
    if (held.claimed) claimedLease = held.lease;
    let expiresAt = held.expiresAt;
    const ownKey = leaseKey(registry.prefix, own.subnet);
    await backend.start(own);

    const peers = new Map<string, Lease>();
    const peerSince = new Map<string, number>();
    let lost = false;
    let watchEvents = 0;
    let etcdReconnects = 0;
    const peerList = (): PeerStatus[] =>
      [...peers.entries()].map(([key, lease]) => ({
        subnet: formatIp4Net(lease.subnet),
        publicIp: formatIp4(lease.attrs.publicIp),
        backend: lease.attrs.backendType,
        since: peerSince.get(key) ?? 0,
        lastHeard: backend!.lastHeard ? backend!.lastHeard(lease) : null,
      }));
    const onEvent = (event: LeaseEvent) => {
      watchEvents++;
      const key = leaseKey(registry.prefix, event.lease.subnet);
      if (key === ownKey) {
        // Deleted, expired, or rewritten for another host: either way it is not ours.
        if (event.type === "removed" || event.lease.attrs.publicIp !== underlay.publicIp) {
          lost = true;
          stop.abort();
        } else own = event.lease;
        return;
      }
      if (event.type === "removed") {
        if (peers.delete(key)) {
          peerSince.delete(key);
          backend!.removePeer(event.lease);
          log.info("peer left", { peer: describeLease(event.lease) });
        }
      } else if (event.lease.attrs.backendType !== backend!.type) {
        log.warn("ignoring a lease of another backend type", {
          peer: describeLease(event.lease),
          want: backend!.type,
        });
        // A peer whose lease now names another backend is no longer one we can reach.
        const previous = peers.get(key);
        if (previous) {
          peers.delete(key);
          peerSince.delete(key);
          backend!.removePeer(previous);
        }
      } else {
        const known = peers.has(key);
        peers.set(key, event.lease);
        if (!known) peerSince.set(key, Date.now());
        backend!.addPeer(event.lease);
        if (!known) log.info("peer joined", { peer: describeLease(event.lease) });
      }
      if (state.ready) publishPeersSoon();
    };
    // A burst of lease events (1,000 hosts at once) makes one state write, not 1,000.
    let peersTimer: ReturnType<typeof setTimeout> | undefined;
    const publishPeersSoon = () => {
      peersTimer ??= setTimeout(() => {
        peersTimer = undefined;
        publish({ peers: peers.size, peerList: peerList(), watchEvents });
      }, 20);
    };
    for (const lease of held.listing.leases) onEvent({ type: "put", lease });
    watchEvents = 0; // the listing is not watch traffic
    let etcdReachable = true;
    const setEtcdReachable = (reachable: boolean) => {
      if (reachable === etcdReachable) return;
      etcdReachable = reachable;
      if (reachable) {
        etcdReconnects++;
        log.info("etcd reachable again; renewing the lease now");
        clearTimeout(renewTimer);
        scheduleRenewal(Date.now());
      } else log.warn("etcd unreachable; forwarding continues with the last known peers");
      publish({ degraded: reachable ? undefined : "etcd unreachable", etcdReconnects });
    };
    const watch = registry.watchLeases(held.listing, onEvent, {
      onSkipped: (skipped) => log.warn("skipping malformed lease in etcd", { ...skipped }),
      onResync: () => log.info("lease watch re-listed after compaction"),
      onConnection: setEtcdReachable,
    });

    if (options.bridge) {
      const netlink = new Netlink();
      try {
        ensureBridge(netlink, {
          name: options.bridge,
          subnet: own.subnet,
          network: config.network,
          mtu: backend.mtu,
        });
      } finally {
        netlink.close();
      }
    }
    const chains = options.ipMasq ? await masqChains(registry.prefix) : undefined;
    if (chains) await applyMasq(chains, config.network, own.subnet);
    const masq = chains ? keepMasq(chains, config.network, own.subnet, MASQ_CHECK_MS) : undefined;

    await writeSubnetFile(options.subnetFile, {
      network: config.network,
      subnet: own.subnet,
      mtu: backend.mtu,
      ipMasq: options.ipMasq,
    });
    await publish({
      ready: !lost,
      reason: lost ? "lease lost" : undefined,
      subnet: `${formatIp4(netGateway(own.subnet))}/${own.subnet.prefixLen}`,
      mtu: backend.mtu,
      backend: backend.type,
      peers: peers.size,
      peerList: peerList(),
      device: backend.device,
      bridge: options.bridge,
      dataPath: backend.dataPath,
      leaseExpiresAt: Number.isFinite(expiresAt) ? expiresAt : null,
    });
    notifySystemd(`READY=1\nSTATUS=${describeState(state).line}\nMAINPID=${Deno.pid}`);
    claimedLease = undefined; // started: the lease is ours to keep
    log.info("ready", {
      subnet: formatIp4Net(own.subnet),
      mtu: backend.mtu,
      backend: backend.type,
      dataPath: backend.dataPath,
      peers: peers.size,
    });

    const healthServer = options.healthz && options.healthz.port > 0
      ? serveHealth(
        { ...options.healthz, signal: stop.signal },
        () => describeState(state),
        () =>
          renderMetrics({ ...state, counters: backend!.counters?.(), watchEvents, etcdReconnects }),
      )
      : undefined;

    const onSignal = () => stop.abort();
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    // Probe etcd every few seconds: a watch on a member that lost quorum stays open but
    // silent, and renewals may be hours apart. The probe also notices config changes.
    let probing = false;
    let configWarned = "";
    const probe = setInterval(async () => {
      if (probing) return;
      probing = true;
      try {
        const text = await registry.getConfigText();
        setEtcdReachable(true);
        if (text !== startupConfigText && text !== configWarned) {
          configWarned = text ?? "";
          let verdict = "it takes effect when the agent restarts";
          try {
            parseNetworkConfig(text ?? "");
          } catch (error) {
            verdict = `it is invalid (${
              (error as Error).message
            }); the running network is unaffected`;
          }
          log.warn(`the network config in etcd changed; ${verdict}`, { key: registry.configKey });
        }
      } catch {
        setEtcdReachable(false);
      } finally {
        probing = false;
      }
    }, ETCD_PROBE_MS);
    const drops = new DropReporter();
    const heartbeat = setInterval(() => {
      const dataPathOk = backend!.healthy?.() ?? true;
      const counters = backend!.counters?.();
      if (counters) drops.report(counters);
      publish({
        counters,
        // The list changes between lease events only where the data path stamps "heard"
        // times (udp); elsewhere it is written on lease events, not rebuilt every beat.
        ...(backend!.lastHeard ? { peerList: peerList() } : {}),
        watchEvents,
        etcdReconnects,
        ...(dataPathOk ? {} : { ready: false, reason: "data path failed" }),
      });
    }, HEARTBEAT_MS);

    // Renewal: one timer at a time, retried every second while etcd is unreachable.
    let renewTimer: ReturnType<typeof setTimeout> | undefined;
    const scheduleRenewal = (at: number) => {
      if (!Number.isFinite(at) || stop.signal.aborted) return;
      renewTimer = setTimeout(renew, Math.max(0, at - Date.now()));
    };
    const renew = async () => {
      try {
        const result = await manager.renew(own);
        if (result === "lost") {
          lost = true;
          stop.abort();
          return;
        }
        expiresAt = result;
        setEtcdReachable(true);
        await publish({ leaseExpiresAt: expiresAt });
        log.debug("renewed lease", {
          subnet: formatIp4Net(own.subnet),
          expiresAt: new Date(expiresAt).toISOString(),
        });
        scheduleRenewal(manager.renewAt(expiresAt));
      } catch (error) {
        setEtcdReachable(false);
        log.warn("lease renewal failed; retrying", {
          error: describeEtcdError(error, options.etcd),
        });
        scheduleRenewal(Date.now() + RENEW_RETRY_MS);
      }
    };
    scheduleRenewal(manager.renewAt(expiresAt));

    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });

    notifySystemd("STOPPING=1");
    clearTimeout(renewTimer);
    clearTimeout(peersTimer);
    clearInterval(probe);
    masq?.stop();
    clearInterval(heartbeat);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await watch.close();
    await backend.stop();
    await healthServer?.finished;
    if (lost) {
      log.error(
        "lease lost: this host no longer owns its subnet; exiting so a supervisor restarts it clean",
        {
          subnet: formatIp4Net(own.subnet),
        },
      );
      await publish({ ready: false, reason: "lease lost" });
      return 1;
    }
    log.info("stopped; the lease is kept so a restart reuses the subnet", {
      subnet: formatIp4Net(own.subnet),
    });
    await writing; // a queued write must not bring the file back after we remove it
    await Deno.remove(stateFile).catch(() => {});
    return 0;
  } catch (error) {
    await backend?.stop().catch(() => {});
    if (claimedLease) {
      const released = await registry.delete(claimedLease).catch(() => false);
      if (released) {
        log.info("released the subnet claimed by this failed start", {
          subnet: formatIp4Net(claimedLease.subnet),
        });
      }
    }
    if (wroteState) {
      // Bad input changes nothing: take back the state file, and its folder if we made it.
      await Deno.remove(stateFile).catch(() => {});
      if (!stateDirExisted) await Deno.remove(options.stateDir).catch(() => {});
    }
    throw error;
  } finally {
    stop.abort();
    client.close();
  }
}

/**
 * Per-packet problems are counted by the data path, never logged per packet: this logs
 * at most one line every 10 s with what was dropped since the last line.
 */
class DropReporter {
  #last: Record<string, number> = {};
  #loggedAt = 0;

  report(counters: Record<string, number>): void {
    const now = Date.now();
    if (now - this.#loggedAt < 10_000) return;
    const fresh: Record<string, number> = {};
    let total = 0;
    for (const [name, value] of Object.entries(counters)) {
      if (!name.startsWith("drop_")) continue;
      const delta = value - (this.#last[name] ?? 0);
      if (delta > 0) fresh[name.slice("drop_".length)] = delta;
      total += delta;
    }
    this.#last = { ...counters };
    if (total > 0) {
      this.#loggedAt = now;
      log.warn("data path dropped packets", { total, ...fresh });
    }
  }
}
