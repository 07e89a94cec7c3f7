/**
 * A lab of hosts on one machine, for the end-to-end tests, the demo and the benchmark.
 *
 *   ns <id>-u : the underlay switch (bridge "sw", 172.31.254.1/24) and etcd
 *   ns <id>-h1…: hosts, eth0 = 172.31.254.1N/24 on the switch, default route via .1;
 *               with `ipv6`, also fd00:172:31:254::1N/64, default route via ::1
 *   ns <id>-h1c1…: containers, eth0 on the host's bridge "cbr0", addressed from the
 *               host's subnet file as Docker or LXC would
 *
 * Every namespace name carries a per-run random id; dispose() kills every process the
 * lab started (by PID) and deletes every namespace, also after a failure. Nothing is
 * routed in the root namespace.
 */
import { type CommandOutput, runCommand } from "./run.ts";
import type { DaemonState } from "../lib/health.ts";
import { parseEnvFile } from "../lib/subnet_file.ts";
import { formatIp6, parseIp6 } from "../lib/ip6.ts";
import { overlayArgv } from "./overlay_argv.ts";
import { waitFor } from "./wait.ts";

export const UNDERLAY_PREFIX = "172.31.254";
/** The IPv6 underlay of a lab made with `ipv6: true`. */
export const UNDERLAY6_PREFIX = "fd00:172:31:254::";
export const ETCD_PORT = 2379;
/** The switch etcd members talk to each other on, in a cluster lab. */
const PEER_PREFIX = "10.255.254";

function memberAddress(i: number): string {
  return `${UNDERLAY_PREFIX}.${201 + i}`;
}

export interface LabHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  /** Its IPv6 underlay address, in a lab made with `ipv6: true`. */
  readonly ip6?: string;
  readonly subnetFile: string;
  readonly stateDir: string;
}

export interface LabContainer {
  readonly name: string;
  readonly ns: string;
  /** Its IPv4 address; its IPv6 one in an IPv6-only network. */
  readonly ip: string;
  /** Its IPv6 address, in a network with IPv6. */
  readonly ip6?: string;
  readonly host: LabHost;
}

export interface LabProcess {
  readonly child: Deno.ChildProcess;
  readonly log: () => string;
  stop(signal?: Deno.Signal): Promise<number>;
}

/** What `overlay status --json` prints. */
export interface AgentStatus {
  readonly health: string;
  readonly ready: boolean;
  readonly state: DaemonState | null;
}

export type { CommandOutput };

export class Lab implements AsyncDisposable {
  readonly id: string;
  readonly underlayNs: string;
  /** Client URL of each etcd member (one unless the lab was made with more). */
  readonly etcdEndpoints: string[];
  /** The first member's client URL. */
  readonly etcdEndpoint: string;
  readonly hosts: LabHost[] = [];
  readonly containers: LabContainer[] = [];
  readonly #dir: string;
  readonly #namespaces: string[] = [];
  readonly #processes = new Set<LabProcess>();
  readonly #agents = new Map<string, LabProcess>();
  readonly #members: (LabProcess | undefined)[] = [];
  readonly #cleanups: (() => Promise<void>)[] = [];
  #hostCounter = 0;
  readonly #ipv6: boolean;

  private constructor(id: string, dir: string, members: number, ipv6: boolean) {
    this.id = id;
    this.#ipv6 = ipv6;
    this.#dir = dir;
    this.underlayNs = `${id}-u`;
    // One member listens on the switch address; a cluster's members are hosts of their own
    // on the switch (.201, .202, …), talking to each other over a separate peer switch, so
    // one member can be cut off from its peers while clients still reach it.
    this.etcdEndpoints = members === 1
      ? [`http://${UNDERLAY_PREFIX}.1:${ETCD_PORT}`]
      : Array.from({ length: members }, (_, i) => `http://${memberAddress(i)}:${ETCD_PORT}`);
    this.etcdEndpoint = this.etcdEndpoints[0];
  }

  /** Creates the underlay switch and starts etcd on it (`etcdMembers` for a cluster). */
  static async create(
    options: { prefix?: string; etcdMembers?: number; ipv6?: boolean } = {},
  ): Promise<Lab> {
    const id = `${options.prefix ?? "ovl"}${crypto.randomUUID().slice(0, 6)}`;
    const dir = await Deno.makeTempDir({ prefix: `${id}-` });
    const lab = new Lab(id, dir, options.etcdMembers ?? 1, options.ipv6 === true);
    try {
      await lab.#addNamespace(lab.underlayNs);
      await lab.ip(lab.underlayNs, "link", "add", "sw", "type", "bridge");
      await lab.ip(lab.underlayNs, "addr", "add", `${UNDERLAY_PREFIX}.1/24`, "dev", "sw");
      if (lab.#ipv6) {
        // nodad: an address flag, so the address is usable at once (no sysctl is touched).
        await lab.ip(
          lab.underlayNs,
          "addr",
          "add",
          `${UNDERLAY6_PREFIX}1/64`,
          "dev",
          "sw",
          "nodad",
        );
      }
      await lab.ip(lab.underlayNs, "link", "set", "sw", "up");
      await lab.#startEtcd();
    } catch (error) {
      await lab.dispose();
      throw error;
    }
    return lab;
  }

  /** Adds a host namespace plugged into the underlay switch. */
  async addHost(): Promise<LabHost> {
    const index = ++this.#hostCounter;
    const name = `h${index}`;
    const ns = `${this.id}-${name}`;
    await this.#addNamespace(ns);
    await this.cable(this.underlayNs, name, ns);
    await this.ip(this.underlayNs, "link", "set", name, "master", "sw", "up");
    const ip = `${UNDERLAY_PREFIX}.${10 + index}`;
    await this.ip(ns, "addr", "add", `${ip}/24`, "dev", "eth0");
    await this.ip(ns, "link", "set", "eth0", "up");
    await this.ip(ns, "route", "add", "default", "via", `${UNDERLAY_PREFIX}.1`);
    const ip6 = this.#ipv6 ? `${UNDERLAY6_PREFIX}${10 + index}` : undefined;
    if (ip6) {
      await this.ip(ns, "addr", "add", `${ip6}/64`, "dev", "eth0", "nodad");
      await this.ip(ns, "-6", "route", "add", "default", "via", `${UNDERLAY6_PREFIX}1`);
    }
    const dir = `${this.#dir}/${name}`;
    await Deno.mkdir(dir, { recursive: true });
    const host = {
      name,
      ns,
      ip,
      ...(ip6 ? { ip6 } : {}),
      subnetFile: `${dir}/subnet.env`,
      stateDir: `${dir}/state`,
    };
    this.hosts.push(host);
    return host;
  }

  /** Writes the network config through `overlay config set`, from the underlay. */
  async setConfig(config: Record<string, unknown>): Promise<void> {
    const result = await this.overlay(this.underlayNs, [
      "config",
      "set",
      `--etcd-endpoints=${this.etcdEndpoint}`,
      "--force",
      JSON.stringify(config),
    ]);
    if (result.code !== 0) throw new Error(`config set failed: ${result.stderr}`);
  }

  /** Where a host's commands find its agent: its subnet file and state folder. */
  hostFlags(host: LabHost): string[] {
    return [`--subnet-file=${host.subnetFile}`, `--state-dir=${host.stateDir}`];
  }

  /** The flags every agent of this lab runs with. */
  agentFlags(host: LabHost): string[] {
    return [`--etcd-endpoints=${this.etcdEndpoint}`, ...this.hostFlags(host)];
  }

  /** Starts `overlay run` on a host; `name` keys a second agent on the same host. */
  startAgent(
    host: LabHost,
    extra: string[] = [],
    options: { env?: Record<string, string>; name?: string; v8Defaults?: boolean } = {},
  ): LabProcess {
    const argv = [
      ...overlayArgv({ v8Defaults: options.v8Defaults }),
      "run",
      ...this.agentFlags(host),
      ...extra,
    ];
    const agent = this.spawn(host.ns, argv, options.env);
    this.#agents.set(options.name ?? host.name, agent);
    return agent;
  }

  /** A new host with its agent started and ready. */
  async readyHost(extra: string[] = []): Promise<LabHost> {
    return (await this.readyHosts(1, extra))[0];
  }

  /**
   * `count` new hosts whose agents start together; returns when all are ready. `extra`
   * flags go to every agent, or, as one list per host, to each its own.
   */
  async readyHosts(count: number, extra: string[] | string[][] = []): Promise<LabHost[]> {
    const hosts: LabHost[] = [];
    for (let i = 0; i < count; i++) hosts.push(await this.addHost());
    const flagsOf = (i: number) =>
      extra.every((item) => Array.isArray(item)) && extra.length > 0
        ? (extra as string[][])[i] ?? []
        : extra as string[];
    hosts.forEach((host, i) => this.startAgent(host, flagsOf(i)));
    for (const host of hosts) await this.waitReady(host);
    return hosts;
  }

  agent(host: LabHost | string): LabProcess | undefined {
    return this.#agents.get(typeof host === "string" ? host : host.name);
  }

  /** `overlay wait` on a host; throws with the agent's log when it does not become ready. */
  async waitReady(host: LabHost, timeout = "20s"): Promise<string> {
    const result = await this.overlay(host.ns, [
      "wait",
      `--timeout=${timeout}`,
      ...this.hostFlags(host),
    ]);
    if (result.code !== 0) {
      throw new Error(`${host.name} not ready: ${result.stderr}\n${this.agent(host)?.log() ?? ""}`);
    }
    return result.stdout.trim();
  }

  /** The subnet a host leases, "10.10.16.0/24", from its subnet file (or `file`). */
  async subnetOf(host: LabHost, file = host.subnetFile): Promise<string> {
    const text = await Deno.readTextFile(file);
    return /FLANNEL_SUBNET=(\S+)/.exec(text)![1].replace(".1/", ".0/");
  }

  /** `overlay status --json` on a host: readiness, the health line and the agent's state. */
  async status(host: LabHost): Promise<AgentStatus> {
    const result = await this.overlay(host.ns, ["status", "--json", ...this.hostFlags(host)]);
    if (result.stdout.trim() === "") throw new Error(`status on ${host.name}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  }

  /** The data path counters a host's agent last reported. */
  async counters(host: LabHost): Promise<Record<string, number>> {
    return (await this.status(host)).state?.counters ?? {};
  }

  /** The Prometheus text an agent serves on `port` of a host's loopback. */
  async metrics(host: LabHost, port: number): Promise<string> {
    const result = await this.exec(host.ns, [
      "deno",
      "eval",
      `console.log(await (await fetch("http://127.0.0.1:${port}/metrics")).text())`,
    ]);
    if (result.code !== 0) throw new Error(`metrics on ${host.name}: ${result.stderr}`);
    return result.stdout;
  }

  /** `overlay --health` on a host. */
  async health(host: LabHost): Promise<CommandOutput> {
    return await this.overlay(host.ns, ["--health", ...this.hostFlags(host)]);
  }

  /**
   * Adds a container to a host: a namespace whose eth0 sits on the host's bridge
   * "cbr0", made from the subnet file (gateway address and MTU) as Docker would.
   */
  async addContainer(host: LabHost, options: { bridge?: string } = {}): Promise<LabContainer> {
    const env = parseEnvFile(await Deno.readTextFile(host.subnetFile));
    const [gateway, prefixLen] = env.get("FLANNEL_SUBNET")?.split("/") ?? [];
    const [gateway6, prefixLen6] = env.get("FLANNEL_IPV6_SUBNET")?.split("/") ?? [];
    const mtu = env.get("FLANNEL_MTU")!;
    const existing = this.containers.filter((c) => c.host === host).length;
    // With options.bridge the bridge is the agent's (--bridge); otherwise make one as Docker
    // would (with --ipv6 --fixed-cidr-v6, Docker gives it the IPv6 gateway too).
    const bridge = options.bridge ?? "cbr0";
    if (existing === 0 && !options.bridge) {
      await this.ip(host.ns, "link", "add", "cbr0", "type", "bridge");
      if (gateway) await this.ip(host.ns, "addr", "add", `${gateway}/${prefixLen}`, "dev", "cbr0");
      if (gateway6) {
        await this.ip(host.ns, "addr", "add", `${gateway6}/${prefixLen6}`, "dev", "cbr0", "nodad");
      }
      await this.ip(host.ns, "link", "set", "cbr0", "mtu", mtu, "up");
    }
    const index = existing + 1;
    const name = `${host.name}c${index}`;
    const ns = `${this.id}-${name}`;
    await this.#addNamespace(ns);
    const hostSide = `veth${index}`;
    await this.cable(host.ns, hostSide, ns, mtu);
    await this.ip(host.ns, "link", "set", hostSide, "master", bridge, "up");
    await this.ip(ns, "link", "set", "eth0", "mtu", mtu);
    let ip: string | undefined;
    if (gateway) {
      const octets = gateway.split(".").map(Number);
      octets[3] += index;
      ip = octets.join(".");
      await this.ip(ns, "addr", "add", `${ip}/${prefixLen}`, "dev", "eth0");
    }
    const ip6 = gateway6 ? formatIp6(parseIp6(gateway6)! + BigInt(index)) : undefined;
    if (ip6) await this.ip(ns, "addr", "add", `${ip6}/${prefixLen6}`, "dev", "eth0", "nodad");
    await this.ip(ns, "link", "set", "eth0", "up");
    await this.ip(ns, "link", "set", "lo", "up");
    if (gateway) await this.ip(ns, "route", "add", "default", "via", gateway);
    if (gateway6) await this.ip(ns, "-6", "route", "add", "default", "via", gateway6);
    const container = { name, ns, ip: ip ?? ip6!, ...(ip6 ? { ip6 } : {}), host };
    this.containers.push(container);
    return container;
  }

  /** Pings once or more from a container; returns the average RTT in ms, or undefined when lost. */
  async ping(
    from: LabContainer | LabHost,
    to: string,
    options: {
      count?: number;
      size?: number;
      dontFragment?: boolean;
      timeoutS?: number;
      intervalS?: number;
    } = {},
  ): Promise<number | undefined> {
    const args = [
      "ping",
      "-n",
      "-q",
      "-c",
      String(options.count ?? 1),
      "-W",
      String(options.timeoutS ?? 1),
      "-i",
      String(options.intervalS ?? 0.2),
    ];
    if (options.size !== undefined) args.push("-s", String(options.size));
    if (options.dontFragment) args.push("-M", "do");
    const result = await this.exec(from.ns, [...args, to]);
    if (result.code !== 0) return undefined;
    const match = /= [\d.]+\/([\d.]+)\//.exec(result.stdout);
    return match ? Number(match[1]) : undefined;
  }

  /** A veth pair: `name` in `ns`, its peer "eth0" in `peerNs` (`ip link add … type veth`). */
  async cable(ns: string, name: string, peerNs: string, mtu?: string): Promise<void> {
    const withMtu = mtu ? ["mtu", mtu] : [];
    await this.ip(
      ns,
      "link",
      "add",
      name,
      ...withMtu,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      peerNs,
    );
  }

  /** iperf3 TCP for `seconds` from one namespace to a server in another; Gbit/s received. */
  async iperf(serverNs: string, clientNs: string, ip: string, seconds: number): Promise<number> {
    const server = this.spawn(serverNs, ["iperf3", "-s", "-1"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const result = await this.exec(clientNs, ["iperf3", "-c", ip, "-t", String(seconds), "-J"]);
    await server.stop("SIGKILL");
    if (result.code !== 0) throw new Error(`iperf3 to ${ip} failed: ${result.stdout.slice(-300)}`);
    return JSON.parse(result.stdout).end.sum_received.bits_per_second / 1e9;
  }

  /** `overlay ARGS…` inside a namespace. */
  async overlay(ns: string, args: string[]): Promise<CommandOutput> {
    return await this.exec(ns, [...overlayArgv(), ...args]);
  }

  /** `etcdctl` against the lab's etcd. */
  async etcdctl(...args: string[]): Promise<CommandOutput> {
    return await this.exec(this.underlayNs, [
      "etcdctl",
      `--endpoints=${this.etcdEndpoints.join(",")}`,
      ...args,
    ]);
  }

  async ip(ns: string, ...args: string[]): Promise<void> {
    const result = await this.exec(ns, ["ip", ...args]);
    if (result.code !== 0) {
      throw new Error(`ip ${args.join(" ")} in ${ns}: ${result.stderr.trim()}`);
    }
  }

  async sh(ns: string, script: string): Promise<CommandOutput> {
    return await this.exec(ns, ["sh", "-c", script]);
  }

  /** Runs a command in a namespace to completion. */
  async exec(ns: string, argv: string[]): Promise<CommandOutput> {
    return await runCommand(["ip", "netns", "exec", ns, ...argv]);
  }

  /** Starts a long-lived command in a namespace, collecting stderr and stdout. */
  spawn(ns: string, argv: string[], env?: Record<string, string>): LabProcess {
    return this.spawnCommand(["ip", "netns", "exec", ns, ...argv], env);
  }

  /**
   * Starts `tcpdump ARGS…` in `ns` and returns once it captures (it says "listening on"),
   * so no packet sent afterwards is missed however busy the machine is.
   */
  async capture(ns: string, args: string[]): Promise<LabProcess> {
    const process = this.spawn(ns, ["tcpdump", ...args]);
    await waitFor(() => /listening on/.test(process.log()), { what: "tcpdump to listen" });
    return process;
  }

  /**
   * Starts a long-lived command as given (e.g. under `nsenter --net=…`, which unlike
   * `ip netns exec` leaves /sys and the cgroups alone); stopped at dispose by PID.
   */
  spawnCommand(argv: string[], env?: Record<string, string>): LabProcess {
    const [command, ...args] = argv;
    const child = new Deno.Command(command, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let text = "";
    const decoder = new TextDecoder();
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
    };
    const reading = Promise.all([drain(child.stdout), drain(child.stderr)]);
    let exit: Promise<number> | undefined;
    const process: LabProcess = {
      child,
      log: () => text,
      stop: (signal: Deno.Signal = "SIGTERM") => {
        exit ??= (async () => {
          try {
            child.kill(signal);
          } catch { /* already exited */ }
          const timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch { /* gone */ }
          }, 5000);
          const status = await child.status;
          clearTimeout(timer);
          await reading;
          this.#processes.delete(process);
          return status.code;
        })();
        return exit;
      },
    };
    this.#processes.add(process);
    return process;
  }

  /** Adds a bare namespace `<id>-<suffix>` (removed at dispose); returns its name. */
  async addNamespace(suffix: string): Promise<string> {
    const ns = `${this.id}-${suffix}`;
    await this.#addNamespace(ns);
    return ns;
  }

  async #addNamespace(ns: string): Promise<void> {
    const output = await new Deno.Command("ip", { args: ["netns", "add", ns], stderr: "piped" })
      .output();
    if (output.code !== 0) {
      throw new Error(`ip netns add ${ns}: ${new TextDecoder().decode(output.stderr)}`);
    }
    this.#namespaces.push(ns);
    await this.ip(ns, "link", "set", "lo", "up");
  }

  async #startEtcd(): Promise<void> {
    if (this.etcdEndpoints.length > 1) await this.#addMemberHosts();
    for (let i = 0; i < this.etcdEndpoints.length; i++) this.startEtcdMember(i, "new");
    const deadline = Date.now() + 15_000;
    while ((await this.etcdctl("endpoint", "health")).code !== 0) {
      if (Date.now() > deadline) throw new Error("lab etcd did not become healthy in 15 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  #peerUrl(i: number): string {
    return this.etcdEndpoints.length === 1
      ? `http://${UNDERLAY_PREFIX}.1:${ETCD_PORT + 1}`
      : `http://${PEER_PREFIX}.${1 + i}:${ETCD_PORT + 1}`;
  }

  #memberNs(i: number): string {
    return this.etcdEndpoints.length === 1 ? this.underlayNs : `${this.id}-e${i}`;
  }

  /** A namespace per member: eth0 on the switch for clients, eth1 on the peer switch. */
  async #addMemberHosts(): Promise<void> {
    await this.ip(this.underlayNs, "link", "add", "peers", "type", "bridge");
    await this.ip(this.underlayNs, "link", "set", "peers", "up");
    for (let i = 0; i < this.etcdEndpoints.length; i++) {
      const ns = this.#memberNs(i);
      await this.#addNamespace(ns);
      await this.cable(this.underlayNs, `e${i}`, ns);
      await this.ip(this.underlayNs, "link", "set", `e${i}`, "master", "sw", "up");
      await this.ip(ns, "addr", "add", `${memberAddress(i)}/24`, "dev", "eth0");
      await this.ip(ns, "link", "set", "eth0", "up");
      await this.ip(
        this.underlayNs,
        "link",
        "add",
        `p${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "netns",
        ns,
      );
      await this.ip(this.underlayNs, "link", "set", `p${i}`, "master", "peers", "up");
      await this.ip(ns, "addr", "add", `${PEER_PREFIX}.${1 + i}/24`, "dev", "eth1");
      await this.ip(ns, "link", "set", "eth1", "up");
    }
  }

  /**
   * Cuts member `i` off from its peers (its link to the peer switch down), or joins it
   * again; clients still reach it, as in a partition between racks.
   */
  async partitionEtcdMember(i: number, cut = true): Promise<void> {
    await this.ip(this.underlayNs, "link", "set", `p${i}`, cut ? "down" : "up");
  }

  /** Starts etcd member `i` (again, after stopEtcdMember, with its data kept). */
  startEtcdMember(i: number, state: "new" | "existing" = "existing"): void {
    const url = this.etcdEndpoints[i];
    const cluster = this.etcdEndpoints.map((_, j) => `m${j}=${this.#peerUrl(j)}`).join(",");
    this.#members[i] = this.spawn(this.#memberNs(i), [
      "etcd",
      `--name=m${i}`,
      `--data-dir=${this.#dir}/etcd${i}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${this.#peerUrl(i)}`,
      `--initial-advertise-peer-urls=${this.#peerUrl(i)}`,
      `--initial-cluster=${cluster}`,
      `--initial-cluster-state=${state}`,
      "--log-level=error",
      "--logger=zap",
    ]);
  }

  /** Kills etcd member `i` (SIGKILL: as a crash or a power cut would). */
  async stopEtcdMember(i: number): Promise<void> {
    await this.#members[i]?.stop("SIGKILL");
    this.#members[i] = undefined;
  }

  /** etcdctl against one member only. */
  async etcdctlAt(i: number, ...args: string[]): Promise<CommandOutput> {
    return await this.exec(this.underlayNs, [
      "etcdctl",
      `--endpoints=${this.etcdEndpoints[i]}`,
      ...args,
    ]);
  }

  /** The lab's temp folder (removed at dispose). */
  get dir(): string {
    return this.#dir;
  }

  /** Runs `cleanup` at dispose, before processes stop and namespaces go (last added first). */
  defer(cleanup: () => Promise<void>): void {
    this.#cleanups.push(cleanup);
  }

  /** Stops every process (agents first, by PID), deletes every namespace and the temp dir. */
  async dispose(): Promise<void> {
    for (const cleanup of this.#cleanups.reverse()) {
      await cleanup().catch((error) => console.error(`lab cleanup: ${error.message}`));
    }
    this.#cleanups.length = 0;
    const agents = [...this.#agents.values()];
    await Promise.all(agents.map((agent) => agent.stop("SIGTERM")));
    await Promise.all([...this.#processes].map((process) => process.stop("SIGKILL")));
    for (const ns of this.#namespaces.reverse()) {
      // Any process still inside (a stray ping) goes with the namespace.
      await new Deno.Command("ip", { args: ["netns", "pids", ns], stdout: "piped", stderr: "null" })
        .output()
        .then(async (output) => {
          for (const pid of new TextDecoder().decode(output.stdout).split(/\s+/).filter(Boolean)) {
            try {
              Deno.kill(Number(pid), "SIGKILL");
            } catch { /* gone */ }
          }
          await new Deno.Command("ip", { args: ["netns", "delete", ns], stderr: "null" }).output();
        });
    }
    this.#namespaces.length = 0;
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
