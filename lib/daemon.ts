/**
 * `overlay run`: the agent's life, in the order it happens (runDaemon reads as that list).
 * Each step is a method of Agent below; the pieces it wires live in their own modules:
 * boot order (boot.ts), leasing and renewal (lease_manager.ts), peers (peers.ts), the
 * backend (backends/), host integration (forwarding.ts, bridge.ts, ip_masq.ts,
 * subnet_file.ts), the state file and heartbeat (state_file.ts), config changes
 * (config_change.ts) and health (health.ts). Whether etcd is reachable is what the lease
 * watch and renewals find (registry.ts, etcd_client.ts): no separate probe loads etcd.
 */
import type { Backend } from "./backend.ts";
import { backendUnavailable, createBackend } from "./backends/registry.ts";
import { Backoff, sleep } from "./backoff.ts";
import { awaitNetworkConfig, type BootedConfig } from "./boot.ts";
import { ensureBridge } from "./bridge.ts";
import { DropReporter } from "./drop_reporter.ts";
import { describeEtcdError, etcdFailure, type EtcdOptions, EtcdUnavailableError } from "./etcd.ts";
import { EtcdClient } from "./etcd_client.ts";
import { UsageError } from "./errors.ts";
import { configChangeReporter } from "./config_change.ts";
import { flanneldChains, refuseBesideFlanneld, removeFlanneldChains } from "./flanneld.ts";
import {
  enableForwarding,
  forwardingEnabled,
  forwardingSysctl,
  type IpFamily,
} from "./forwarding.ts";
import { describeState, serveHealth } from "./health.ts";
import { formatIp4, formatIp4Net, netGateway } from "./ip.ts";
import { formatIp6, formatIp6Net, net6Gateway } from "./ip6.ts";
import {
  applyMasq,
  iptablesInstalled,
  keepMasq,
  masqChains,
  type MasqTarget,
  masqTarget4,
  masqTarget6,
  removeMasq,
} from "./ip_masq.ts";
import { type Inventory, inventoryPath, readInventory, writeInventory } from "./inventory.ts";
import { describeSubnets, type Lease, leaseKey } from "./lease.ts";
import { type HeldLease, LeaseManager, type Renewal } from "./lease_manager.ts";
import type { LeaseAttrs } from "./lease.ts";
import type { NetworkConfig } from "./config.ts";
import { log } from "./log.ts";
import { renderMetrics } from "./metrics.ts";
import { PeerTracker } from "./peers.ts";
import { type LeaseEvent, type LeaseWatch, SubnetRegistry } from "./registry.ts";
import { StateFile } from "./state_file.ts";
import { readPreviousSubnets, writeSubnetFile } from "./subnet_file.ts";
import { notifySystemd } from "./systemd.ts";
import {
  describeUnderlay,
  detectUnderlay,
  interfaceExists,
  networkProblemOnHost,
  type Underlay,
  type UnderlayChoice,
} from "./underlay.ts";
import { Netlink } from "../ffi/netlink.ts";

export interface DaemonOptions {
  readonly etcd: EtcdOptions;
  /** --iface, --iface-regex, --iface-can-reach, --public-ip. */
  readonly underlay: UnderlayChoice;
  readonly device?: string;
  readonly subnetFile: string;
  readonly stateDir: string;
  readonly ipMasq: boolean;
  /** flanneld's FORWARD accept rules for the Network (--iptables-forward-rules). */
  readonly forwardRules: boolean;
  /** How often the iptables rules are re-checked (--iptables-resync). */
  readonly iptablesResyncMs: number;
  /** Each flag that is not at its default, and where it came from (logged at start). */
  readonly flagSources?: Record<string, string>;
  /** Create or adopt this bridge with the subnet's first address (--bridge). */
  readonly bridge?: string;
  readonly healthz?: { readonly hostname: string; readonly port: number };
  readonly leaseTtlMs: number;
  readonly renewMarginMs: number;
}

/** Runs the agent until SIGINT/SIGTERM (exit 0) or until the lease is lost (exit 1). */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const agent = await Agent.create(options);
  try {
    if (!await agent.awaitNetworkConfig()) return await agent.abandon(); // stopped first
    await agent.acquire(); // underlay, backend, this host's subnet lease
    await agent.bringUp(); // device, forwarding, bridge, ip-masq, subnet file
    agent.followPeers(); // the lease watch, through the peer tracker, to the backend
    await agent.serve(); // ready: health server, heartbeat, renewal
    return await agent.runUntilStopped(); // SIGTERM keeps the lease (0); a lost lease is 1
  } catch (error) {
    await agent.abandon(); // bad input changes nothing: give back what this start took
    throw error;
  } finally {
    agent.close();
  }
}

const FAMILY_NAMES: Record<IpFamily, string> = { ipv4: "IPv4", ipv6: "IPv6" };

/** A burst of lease events (1,000 hosts at once) makes one state write, not 1,000. */
const PEERS_PUBLISH_DELAY_MS = 20;
/**
 * Under steady churn the peer list is written again no sooner than this per peer after
 * the last time (20 ms up to 100 peers, 1 s from 5,000): building and writing the list of
 * 5,000 peers (~1 MB of JSON) takes ~15 ms, so writing it every 20 ms took most of a core.
 */
const PEERS_PUBLISH_GAP_MS_PER_PEER = 0.2;
const PEERS_PUBLISH_MAX_GAP_MS = 1_000;
/** Skipped leases shown in status (all of them are counted in /metrics). */
const SKIPPED_SHOWN = 20;
/**
 * How long the data path may stay failed (its device deleted, its Worker dead) before the
 * agent exits 1 so that its supervisor restarts it, which makes the device again.
 */
const DATA_PATH_FAILED_EXIT_MS = 5_000;
/** How soon status shows a peer as heard after the first datagram from it. */
const FIRST_CONTACT_CHECK_MS = 250;

class Agent {
  readonly #options: DaemonOptions;
  readonly #client: EtcdClient;
  readonly #registry: SubnetRegistry;
  readonly #state: StateFile;
  readonly #stop = new AbortController();
  readonly #onSignal = () => this.#stop.abort();
  readonly #drops = new DropReporter();
  #booted: BootedConfig | undefined;
  #underlay: Underlay | undefined;
  #backend: Backend | undefined;
  #manager: LeaseManager | undefined;
  #held: HeldLease | undefined;
  /** A lease this start claimed, given back if the start fails. */
  #claimed: Lease | undefined;
  #own: Lease | undefined;
  #lost = false;
  /** Since when (performance.now()) the data path has been failing; why the agent exits. */
  #failingSince: number | undefined;
  #failed: string | undefined;
  #renewing = false;
  /** An inventory this start wrote where there was none: taken back if the start fails. */
  #newInventory: string | undefined;
  /** The backend's devices that were not there before this start: removed if it fails. */
  #newDevices: string[] = [];
  #tracker: PeerTracker | undefined;
  #watch: LeaseWatch | undefined;
  #renewal: Renewal | undefined;
  #masq: { stop(): void } | undefined;
  #healthServer: Deno.HttpServer | undefined;
  #peersTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the peer list was last written to the state (performance.now()). */
  #peersPublishedAt = -Infinity;
  #contactTimer: ReturnType<typeof setInterval> | undefined;
  #etcdReachable = true;
  /** Per family the network has: whether it forwarded at the last look. */
  readonly #forwarding = new Map<IpFamily, boolean>();
  #notified = false;
  #watchEvents = 0;
  #etcdReconnects = 0;

  private constructor(options: DaemonOptions, state: StateFile) {
    this.#options = options;
    this.#client = new EtcdClient(options.etcd);
    this.#registry = new SubnetRegistry(this.#client, options.etcd.prefix);
    this.#state = state;
    Deno.addSignalListener("SIGINT", this.#onSignal);
    Deno.addSignalListener("SIGTERM", this.#onSignal);
  }

  static async create(options: DaemonOptions): Promise<Agent> {
    return new Agent(options, await StateFile.open(options.stateDir, options.subnetFile));
  }

  /** Boot order: waits for etcd and a valid config. False when stopped while waiting. */
  async awaitNetworkConfig(): Promise<boolean> {
    const options = this.#options;
    refuseBesideFlanneld();
    // A bad --iface or --public-ip is a bad flag: it ends the start before anything waits.
    // Only a host without IPv4 waits for the config first: an IPv6-only network finds
    // its underlay by IPv6 (detectUnderlay).
    let underlay4: Underlay | undefined;
    try {
      underlay4 = detectUnderlay(options.underlay);
    } catch (error) {
      if (Deno.networkInterfaces().some((i) => i.family === "IPv4" && i.name !== "lo")) {
        throw error;
      }
    }
    this.#serveHealth();
    // Waiting at boot can take long: the beat tells --health the agent is alive meanwhile,
    // so it says why it waits rather than "not responding".
    this.#state.startHeartbeat(() => ({}));
    if (options.flagSources && Object.keys(options.flagSources).length > 0) {
      log.info("configuration", options.flagSources);
    }
    await this.#state.publish({});
    const underlayFor = (config: NetworkConfig) =>
      config.enableIPv4
        ? underlay4 ?? detectUnderlay(options.underlay)
        : detectUnderlay(options.underlay, { ipv4: false });
    this.#booted = await awaitNetworkConfig(this.#registry, this.#client, {
      checkHost: (config) => networkProblemOnHost(config, underlayFor(config)),
      checkBackend: backendUnavailable,
      signal: this.#stop.signal,
      describeEtcdError: (error) => describeEtcdError(error, this.#options.etcd),
      onWaiting: (reason) => {
        log.warn("not starting yet; retrying", { reason });
        this.#state.publish({ ready: false, reason });
      },
    });
    if (this.#booted) this.#underlay = underlayFor(this.#booted.config);
    if (this.#booted && this.#state.state.reason !== "starting") {
      log.info("etcd answers with a valid network config; starting");
      await this.#state.publish({ reason: "starting" });
    }
    return this.#booted !== undefined;
  }

  /** The underlay, the backend and this host's subnet lease (waits while etcd is away). */
  async acquire(): Promise<void> {
    const options = this.#options;
    const config = this.#booted!.config;
    const underlay = this.#underlay!;
    log.info("underlay", {
      iface: describeUnderlay(underlay),
      ...(config.enableIPv4 ? { publicIp: formatIp4(underlay.publicIp) } : {}),
      ...(config.ipv6 && underlay.publicIpv6 !== undefined
        ? { publicIpv6: formatIp6(underlay.publicIpv6) }
        : {}),
    });
    const takeover = await this.#takeOverFromFlanneld();
    const backend = createBackend({
      config,
      underlay,
      device: options.device,
      stateDir: options.stateDir,
      takeover,
    });
    this.#backend = backend;
    const previous = await readPreviousSubnets(options.subnetFile);
    this.#manager = new LeaseManager(this.#registry, {
      attrs: this.#attrs(),
      ttlMs: options.leaseTtlMs,
      renewMarginMs: options.renewMarginMs,
      previousSubnet: previous.subnet,
      previousIpv6Subnet: previous.ipv6Subnet,
    });
    const backoff = new Backoff({ baseMs: 250, capMs: 10_000 });
    while (!this.#held) {
      try {
        this.#held = await this.#manager.acquire(config);
      } catch (error) {
        if (!(error instanceof EtcdUnavailableError) || this.#stop.signal.aborted) {
          throw etcdFailure(error, options.etcd);
        }
        const reason = `waiting-for-etcd: ${error.message}`;
        if (this.#state.state.reason !== reason) log.warn("cannot lease yet; retrying", { reason });
        await this.#state.publish({ ready: false, reason });
        await sleep(backoff.next(), this.#stop.signal);
      }
    }
    if (this.#held.claimed) this.#claimed = this.#held.lease;
    this.#own = this.#held.lease;
    const clash = this.#held.listing.leases.find((lease) => this.#claimsOurs(lease));
    if (clash) await this.#renewIdentity(clash);
  }

  /**
   * True when another, older lease claims what is this host's own (its VtepMAC): then
   * this host is the copy (a cloned state folder) and must pick anew, or peers would
   * send one host's traffic to the other.
   */
  #claimsOurs(lease: Lease): boolean {
    const own = this.#own!;
    if (leaseKey(this.#registry.prefix, lease) === this.#ownKey()) return false;
    const mine = this.#backend!.ownClaims;
    if (!this.#backend!.claims(lease).some((claim) => mine.includes(claim))) return false;
    const theirs = BigInt(lease.createRevision || "0");
    const ours = BigInt(own.createRevision || "0");
    return theirs < ours || (theirs === ours && lease.subnet.ip < own.subnet.ip);
  }

  /** Picks a new identity and republishes the lease with it; warns once per clash. */
  async #renewIdentity(clash: Lease): Promise<void> {
    if (this.#renewing) return;
    this.#renewing = true;
    try {
      log.warn(
        "another lease carries this host's VtepMAC (a cloned state folder?): picking a new one",
        { other: leaseKey(this.#registry.prefix, clash) },
      );
      if (!this.#backend!.renewIdentity()) return;
      this.#own = await this.#manager!.republish(this.#own!, this.#attrs());
    } finally {
      this.#renewing = false;
    }
  }

  /**
   * What this host publishes in its lease: PublicIPv6 and BackendV6Data only in a network
   * with IPv6, as flanneld does; PublicIP 0.0.0.0 in an IPv6-only one.
   */
  #attrs(): LeaseAttrs {
    const config = this.#booted!.config;
    const underlay = this.#underlay!;
    const backend = this.#backend!;
    return {
      publicIp: config.enableIPv4 ? underlay.publicIp : 0,
      ...(config.ipv6 && underlay.publicIpv6 !== undefined
        ? { publicIpv6: underlay.publicIpv6 }
        : {}),
      backendType: backend.type,
      ...(backend.backendData !== undefined ? { backendData: backend.backendData } : {}),
      ...(config.ipv6 && backend.backendV6Data !== undefined
        ? { backendV6Data: backend.backendV6Data }
        : {}),
    };
  }

  /** The families the network carries. */
  #families(): IpFamily[] {
    const config = this.#booted!.config;
    return [
      ...(config.enableIPv4 ? ["ipv4" as const] : []),
      ...(config.ipv6 ? ["ipv6" as const] : []),
    ];
  }

  /**
   * What a stopped flanneld left here becomes overlay's (lib/flanneld.ts). flanneld ran
   * here when its chains are present, or when a subnet file exists that overlay has no
   * record of writing. Returns true when taking over.
   */
  async #takeOverFromFlanneld(): Promise<boolean> {
    const options = this.#options;
    const chains = await flanneldChains();
    const recorded = await readInventory(inventoryPath(options.stateDir, options.subnetFile));
    const subnetFile = await Deno.stat(options.subnetFile).then(() => true, () => false);
    if (chains.length === 0 && (recorded || !subnetFile)) return false;
    // A subnet file on no record is flanneld's, or one `overlay cleanup --keep-lease` kept:
    // either way its lease and what it names become this agent's.
    log.info(
      chains.length > 0
        ? "taking over from flanneld: its lease, subnet file, device and routes become overlay's"
        : "taking over a subnet file overlay has no record of (flanneld's, or kept by cleanup --keep-lease): its lease, device and routes become this agent's",
      {
        found: [...(subnetFile && !recorded ? [options.subnetFile] : []), ...chains].join(", "),
      },
    );
    await removeFlanneldChains();
    return true;
  }

  /** Forwarding for our lease: the device, IPv4 forwarding, the bridge, ip-masq, subnet file. */
  async bringUp(): Promise<void> {
    const options = this.#options;
    const backend = this.#backend!;
    const own = this.#own!;
    const config = this.#booted!.config;
    const network = config.network;
    // What is made is recorded before it is made, so a crash in between leaves nothing
    // that cleanup does not know of.
    const made = inventoryPath(options.stateDir, options.subnetFile);
    const previous = await readInventory(made);
    let inventory: Inventory = {
      network: formatIp4Net(network),
      subnet: formatIp4Net(own.subnet),
      publicIp: formatIp4(this.#underlay!.publicIp),
      ...(own.ipv6Subnet ? { ipv6Subnet: formatIp6Net(own.ipv6Subnet) } : {}),
      ...(config.ipv6 ? { ipv6Network: formatIp6Net(config.ipv6.network) } : {}),
      ...(this.#underlay!.publicIpv6 !== undefined && config.ipv6
        ? { publicIpv6: formatIp6(this.#underlay!.publicIpv6) }
        : {}),
      ...backend.owned(),
      // What an earlier run made stays on record until it is gone: a restart without
      // --bridge leaves the bridge to its containers (cleanup takes it), and one without
      // --ip-masq takes the rules away below.
      ...(previous?.bridge &&
          (options.bridge === undefined || previous.bridge.name === options.bridge)
        ? { bridge: previous.bridge }
        : {}),
      ...(previous?.masq ? { masq: previous.masq } : {}),
    };
    await writeInventory(made, inventory);
    if (!previous) this.#newInventory = made;
    const owned = backend.owned();
    this.#newDevices = [owned.device, ...(owned.moreDevices ?? [])]
      .filter((device) => device !== undefined && !interfaceExists(device.name))
      .map((device) => device!.name);
    await backend.start(own);
    this.#ensureForwarding();
    if (options.bridge) {
      const netlink = new Netlink();
      try {
        const ipv6 = config.ipv6 && own.ipv6Subnet
          ? { subnet: own.ipv6Subnet, network: config.ipv6.network }
          : undefined;
        const { created, previousMtu } = ensureBridge(netlink, {
          name: options.bridge,
          ...(config.enableIPv4 ? { ipv4: { subnet: own.subnet, network } } : {}),
          ...(ipv6 ? { ipv6 } : {}),
          mtu: backend.mtu,
        });
        // A bridge this agent made in an earlier run is still its own when adopted now.
        const earlier = inventory.bridge?.name === options.bridge ? inventory.bridge : undefined;
        const ours = created || earlier?.created === true;
        // The operator's MTU from before the first run that adopted the bridge.
        const mtu = ours ? undefined : earlier?.mtu ?? previousMtu;
        const { subnet: address, ipv6Subnet: address6 } = this.#subnetFields(own);
        inventory = {
          ...inventory,
          bridge: {
            name: options.bridge,
            created: ours,
            address: address ?? "",
            ...(address6 ? { address6 } : {}),
            ...(mtu !== undefined ? { mtu } : {}),
          },
        };
        await writeInventory(made, inventory);
      } finally {
        netlink.close();
      }
    }
    await this.#ensureIptables(made, inventory);
    await writeSubnetFile(options.subnetFile, {
      ...(config.enableIPv4 ? { ipv4: { network, subnet: own.subnet } } : {}),
      ...(config.ipv6 && own.ipv6Subnet
        ? { ipv6: { network: config.ipv6.network, subnet: own.ipv6Subnet } }
        : {}),
      mtu: backend.mtu,
      ipMasq: options.ipMasq,
    });
  }

  /** flanneld's masquerade and FORWARD rules, as the flags ask, kept in place. */
  async #ensureIptables(made: string, inventory: Inventory): Promise<void> {
    const options = this.#options;
    const choice = { masq: options.ipMasq, forward: options.forwardRules };
    if (inventory.masq) {
      // Rules an earlier run was asked for and this one is not (started without --ip-masq,
      // or with --iptables-forward-rules=false) go, rather than act behind its back.
      const unwanted = [
        ...(choice.masq ? [] : ["nat" as const]),
        ...(choice.forward ? [] : ["filter" as const]),
      ];
      const results = unwanted.length > 0 ? await removeMasq(inventory.masq, unwanted) : [];
      const removed = results.filter((r) => r.outcome === "removed");
      if (removed.length > 0) {
        log.info("removed iptables rules an earlier run made that this one is not asked for", {
          chains: removed.map((r) => `${r.tool} ${r.table} ${r.chain}`).join(", "),
        });
      }
      const failed = results.filter((r) => r.outcome === "failed");
      for (const { tool, table, chain, error } of failed) {
        log.warn("cannot remove an iptables chain an earlier run made; overlay cleanup retries", {
          chain: `${tool} ${table} ${chain}`,
          error,
        });
      }
      if (!choice.masq && !choice.forward && failed.length === 0) {
        const { masq: _gone, ...rest } = inventory;
        await writeInventory(made, rest);
        return;
      }
    }
    if (!choice.masq && !choice.forward) return;
    if (!choice.masq && !await iptablesInstalled()) {
      log.warn(
        "iptables is not installed: no FORWARD accept rules for the Network (install iptables, or pass --iptables-forward-rules=false)",
      );
      return;
    }
    const config = this.#booted!.config;
    const own = this.#own!;
    const targets: MasqTarget[] = [
      ...(config.enableIPv4 ? [masqTarget4(config.network, own.subnet)] : []),
      ...(config.ipv6 && own.ipv6Subnet ? [masqTarget6(config.ipv6.network, own.ipv6Subnet)] : []),
    ];
    const chains = await masqChains(this.#registry.prefix);
    await writeInventory(made, { ...inventory, masq: chains });
    for (const target of targets) await applyMasq(chains, target, choice);
    this.#masq = keepMasq(chains, targets, options.iptablesResyncMs, choice);
  }

  /** Peers: the listing taken at acquisition, then the watch from its revision + 1. */
  followPeers(): void {
    const backend = this.#backend!;
    const held = this.#held!;
    this.#tracker = new PeerTracker(backend, {
      config: this.#booted!.config,
      ownPublicIp: this.#underlay!.publicIp,
      ownPublicIpv6: this.#underlay!.publicIpv6,
      ownAddresses: this.#underlay!.addresses,
      backendType: backend.type,
      checkBackendData: (peer) => backend.checkPeer(peer),
    }, this.#registry.prefix);
    const ownKey = this.#ownKey();
    this.#tracker.load(
      held.listing.leases.filter((l) => leaseKey(this.#registry.prefix, l) !== ownKey),
    );
    for (const skipped of held.listing.skipped) this.#tracker.malformed(skipped);
    this.#watch = this.#registry.watchLeases(held.listing, (event) => {
      this.#watchEvents++;
      this.#onLeaseEvent(event);
    }, {
      onSkipped: (skipped) => this.#tracker!.malformed(skipped),
      onResync: () => log.info("lease watch re-listed after compaction"),
      onConnection: (connected) => this.#setEtcdReachable(connected),
      onConfig: configChangeReporter(this.#booted!.text, this.#registry.configKey),
    });
  }

  /** Ready: the state says so, then health, heartbeat and renewal run. */
  async serve(): Promise<void> {
    const backend = this.#backend!;
    const own = this.#own!;
    const expiresAt = this.#held!.expiresAt;
    await this.#state.publish({
      ready: !this.#lost,
      reason: this.#lost ? "lease lost" : undefined,
      ...this.#subnetFields(own),
      families: this.#families(),
      mtu: backend.mtu,
      backend: backend.type,
      device: backend.device,
      moreDevices: backend.owned().moreDevices?.map((device) => device.name),
      bridge: this.#options.bridge,
      dataPath: backend.dataPath,
      leaseExpiresAt: Number.isFinite(expiresAt) ? expiresAt : null,
      ...this.#peerFields(),
    });
    this.#claimed = undefined; // started: the lease is ours to keep
    this.#newInventory = undefined; // and what was made is cleanup's to remove
    this.#newDevices = [];
    this.#notifyWhenReady();
    this.#state.startHeartbeat(() => this.#heartbeat());
    if (backend.hearsPeers) this.#watchFirstContacts();
    this.#renewal = this.#manager!.keepRenewed(() => this.#own!, expiresAt, {
      onRenewed: (at) => {
        this.#setEtcdReachable(true);
        this.#state.publish({ leaseExpiresAt: at });
        log.debug("renewed lease", { subnet: describeSubnets(own) });
      },
      onLost: () => this.#loseLease(),
      onFailed: (error) => {
        this.#setEtcdReachable(false);
        log.warn("lease renewal failed; retrying", {
          error: describeEtcdError(error, this.#options.etcd),
        });
      },
    });
  }

  /** Waits for SIGINT/SIGTERM or a lost lease, then stops forwarding. */
  async runUntilStopped(): Promise<number> {
    await new Promise<void>((resolve) => {
      if (this.#stop.signal.aborted) return resolve();
      this.#stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    notifySystemd("STOPPING=1");
    this.#stopServing();
    await this.#watch?.close();
    await this.#backend!.stop();
    await this.#healthServer?.finished;
    const subnet = describeSubnets(this.#own!);
    if (this.#lost) {
      log.error(
        "lease lost: this host no longer owns its subnet; exiting so a supervisor restarts it clean",
        { subnet },
      );
      await this.#state.publish({ ready: false, reason: "lease lost" });
      return 1;
    }
    if (this.#failed) {
      log.error(
        `${this.#failed}: exiting so a supervisor restarts it (a start makes the device again; the lease is kept)`,
        { subnet },
      );
      await this.#state.publish({ ready: false, reason: this.#failed });
      return 1;
    }
    log.info("stopped; the lease is kept so a restart reuses the subnet", { subnet });
    await this.#state.remove();
    return 0;
  }

  /** Undoes a start that did not finish: stops what runs, gives back a claimed lease. */
  async abandon(): Promise<number> {
    this.#stopServing();
    await this.#watch?.close().catch(() => {});
    await this.#backend?.stop().catch(() => {});
    const claimed = this.#claimed;
    if (claimed && await this.#registry.delete(claimed).catch(() => false)) {
      log.info("released the subnet claimed by this failed start", {
        subnet: describeSubnets(claimed),
      });
    }
    this.#removeNewDevices();
    if (this.#newInventory) await Deno.remove(this.#newInventory).catch(() => {});
    await this.#state.discard();
    return 0;
  }

  /** A failed start leaves no device of its making (a TUN it made persists otherwise). */
  #removeNewDevices(): void {
    if (this.#newDevices.length === 0) return;
    const netlink = new Netlink();
    try {
      for (const name of this.#newDevices) {
        const link = netlink.link(name);
        if (!link) continue;
        try {
          netlink.linkDelete(link.index);
          log.info("removed the device this failed start made", { device: name });
        } catch (error) {
          log.warn("cannot remove the device this failed start made", {
            device: name,
            error: (error as Error).message,
          });
        }
      }
    } finally {
      netlink.close();
    }
  }

  close(): void {
    Deno.removeSignalListener("SIGINT", this.#onSignal);
    Deno.removeSignalListener("SIGTERM", this.#onSignal);
    this.#stop.abort();
    this.#client.close();
  }

  #stopServing(): void {
    clearTimeout(this.#peersTimer);
    clearInterval(this.#contactTimer);
    this.#renewal?.stop();
    this.#masq?.stop();
    this.#state.stopHeartbeat();
  }

  #onLeaseEvent(event: LeaseEvent): void {
    if (leaseKey(this.#registry.prefix, event.lease) === this.#ownKey()) {
      // Deleted, expired, or rewritten for another host: either way it is not ours.
      if (event.type === "removed" || !this.#isOurs(event.lease)) {
        this.#loseLease();
      } else this.#own = event.lease;
      return;
    }
    if (event.type === "put" && this.#claimsOurs(event.lease)) {
      this.#renewIdentity(event.lease).catch((error) =>
        log.error("cannot republish the lease with a new VtepMAC; retrying at the next clash", {
          error: (error as Error).message,
        })
      );
    }
    this.#tracker!.apply(event);
    if (this.#state.state.ready) this.#publishPeersSoon();
  }

  #ownKey(): string {
    return leaseKey(this.#registry.prefix, this.#own!);
  }

  /** Waiting does not mend a deleted device or a dead Worker; a restart does. */
  #exitIfDataPathStaysFailed(healthy: boolean): void {
    if (healthy) {
      this.#failingSince = undefined;
      return;
    }
    const now = performance.now();
    this.#failingSince ??= now;
    if (now - this.#failingSince < DATA_PATH_FAILED_EXIT_MS || this.#failed) return;
    const owned = this.#backend!.owned();
    const missing = [owned.device, ...(owned.moreDevices ?? [])]
      .find((device) => device && !interfaceExists(device.name));
    this.#failed = missing ? `device ${missing.name} is gone` : "the data path failed";
    this.#stop.abort();
  }

  #loseLease(): void {
    this.#lost = true;
    this.#stop.abort();
  }

  /** A peer heard from for the first time shows in status at once, not at the next beat. */
  #watchFirstContacts(): void {
    let seen = this.#backend!.observe().firstContacts;
    this.#contactTimer = setInterval(() => {
      const now = this.#backend!.observe().firstContacts;
      if (now !== seen) this.#publishPeersSoon();
      seen = now;
    }, FIRST_CONTACT_CHECK_MS);
  }

  #publishPeersSoon(): void {
    if (this.#peersTimer !== undefined) return;
    const peers = this.#tracker?.size ?? 0;
    const gap = Math.min(PEERS_PUBLISH_MAX_GAP_MS, peers * PEERS_PUBLISH_GAP_MS_PER_PEER);
    const due = this.#peersPublishedAt + gap - performance.now();
    this.#peersTimer = setTimeout(() => {
      this.#peersTimer = undefined;
      this.#peersPublishedAt = performance.now();
      this.#state.publish(this.#peerFields());
    }, Math.max(PEERS_PUBLISH_DELAY_MS, due));
  }

  /**
   * /healthz, /readyz and /metrics from the start, so a probe sees why the host is not
   * ready yet, and an address that cannot be served is a bad flag before anything is made.
   */
  #serveHealth(): void {
    const healthz = this.#options.healthz;
    if (!healthz || healthz.port === 0) return;
    try {
      this.#healthServer = serveHealth(
        { ...healthz, signal: this.#stop.signal },
        () => describeState(this.#state.state),
        () => renderMetrics({ ...this.#state.state, ...(this.#backend ? this.#liveFields() : {}) }),
      );
    } catch (error) {
      throw new UsageError(
        `--healthz-ip ${healthz.hostname} --healthz-port ${healthz.port}: cannot serve health ` +
          `there (${(error as Error).message}; pick a free port, or an address of this host)`,
      );
    }
  }

  #peerFields() {
    const tracker = this.#tracker;
    return {
      peers: tracker?.size ?? 0,
      peerList: tracker?.list() ?? [],
      skippedLeases: tracker?.skipped().slice(0, SKIPPED_SHOWN) ?? [],
      watchEvents: this.#watchEvents,
    };
  }

  /** What is read from the running parts each time: counters, conflicts, skips. */
  #liveFields() {
    const seen = this.#backend!.observe();
    return {
      counters: seen.counters,
      conflicts: seen.conflicts,
      leaseSkips: this.#tracker?.skipCounts() ?? {},
      watchEvents: this.#watchEvents,
      etcdReconnects: this.#etcdReconnects,
      healthy: seen.healthy,
    };
  }

  #heartbeat() {
    const { healthy, ...live } = this.#liveFields();
    this.#exitIfDataPathStaysFailed(healthy);
    if (live.counters) this.#drops.report(live.counters);
    this.#watchForwarding();
    this.#notifyWhenReady();
    return {
      ...live,
      // The list changes between lease events only where the data path stamps "heard"
      // times (udp); elsewhere it is written on lease events, not rebuilt every beat.
      ...(this.#backend!.hearsPeers ? { peerList: this.#tracker!.list() } : {}),
      ...(healthy ? {} : { ready: false, reason: "data path failed" }),
    };
  }

  #setEtcdReachable(reachable: boolean): void {
    if (reachable === this.#etcdReachable) return;
    this.#etcdReachable = reachable;
    if (reachable) {
      this.#etcdReconnects++;
      log.info("etcd reachable again; renewing the lease now");
      this.#renewal?.renewNow();
    } else log.warn("etcd unreachable; forwarding continues with the last known peers");
    this.#state.publish({
      degraded: reachable ? undefined : "etcd unreachable",
      etcdReconnects: this.#etcdReconnects,
    });
  }

  /**
   * Turns forwarding on for each family, as Docker and LXC do; without it containers
   * reach no peer.
   */
  #ensureForwarding(): void {
    for (const family of this.#families()) {
      const sysctl = forwardingSysctl(family);
      try {
        if (enableForwarding(family)) {
          log.info(
            `turned on ${
              FAMILY_NAMES[family]
            } forwarding (${sysctl} was 0): containers reach other hosts through it; it stays on after overlay stops`,
          );
        }
      } catch (error) {
        log.error((error as Error).message);
      }
      this.#forwarding.set(family, forwardingEnabled(family));
    }
  }

  /** Says once when someone turns forwarding off (health reads it each time it is asked). */
  #watchForwarding(): void {
    for (const family of this.#families()) {
      const now = forwardingEnabled(family);
      if (now === this.#forwarding.get(family)) continue;
      this.#forwarding.set(family, now);
      const sysctl = forwardingSysctl(family);
      if (now) log.info(`${FAMILY_NAMES[family]} forwarding is on again`);
      else {
        log.warn(
          `${
            FAMILY_NAMES[family]
          } forwarding was turned off (${sysctl}=0): containers cannot reach other hosts; turn it back on with: sysctl -w ${sysctl}=1`,
        );
      }
    }
  }

  /** The subnets as the subnet file names them (first address), for the state. */
  #subnetFields(own: Lease): { subnet?: string; ipv6Subnet?: string } {
    const config = this.#booted!.config;
    return {
      ...(config.enableIPv4
        ? { subnet: `${formatIp4(netGateway(own.subnet))}/${own.subnet.prefixLen}` }
        : {}),
      ...(own.ipv6Subnet
        ? { ipv6Subnet: `${formatIp6(net6Gateway(own.ipv6Subnet))}/${own.ipv6Subnet.prefixLen}` }
        : {}),
    };
  }

  /** True when a lease names this host (PublicIPv6 in an IPv6-only network). */
  #isOurs(lease: Lease): boolean {
    return this.#booted!.config.enableIPv4
      ? lease.attrs.publicIp === this.#underlay!.publicIp
      : lease.attrs.publicIpv6 === this.#underlay!.publicIpv6;
  }

  /** Tells systemd (and the log) the first time the host is ready. */
  #notifyWhenReady(): void {
    if (this.#notified) return;
    const verdict = describeState(this.#state.state);
    if (!verdict.ready) return;
    this.#notified = true;
    notifySystemd(`READY=1\nSTATUS=${verdict.line}\nMAINPID=${Deno.pid}`);
    const own = this.#own!;
    log.info("ready", {
      subnet: describeSubnets(own),
      mtu: this.#backend!.mtu,
      backend: this.#backend!.type,
      dataPath: this.#backend!.dataPath,
      peers: this.#tracker?.size ?? 0,
    });
  }
}
