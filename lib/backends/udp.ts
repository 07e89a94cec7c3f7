/**
 * The udp backend, wire-compatible with flannel's: a TUN device carries IP packets,
 * each sent to the owning peer as the bare payload of one UDP datagram (default port
 * 8285). Device MTU = underlay MTU − 28 (20 outer IPv4 + 8 UDP). The TUN gets
 * `<subnet.ip>/32` and a route for the whole Network.
 *
 * In a dual-stack network the same datagrams carry inner IPv6 packets too (the version
 * nibble tells them apart; flannel's udp backend is IPv4-only and drops them), still over
 * the IPv4 underlay between IPv4 public IPs: the TUN also gets `<ipv6Subnet.ip>/128` and a
 * route for the IPv6 Network, as flannel gives its vxlan v6 device. An IPv6-only network
 * has no IPv4 underlay to carry them: the udp backend refuses it.
 *
 * The packets themselves move on a Worker (lib/udp/datapath_worker.ts) that drives an
 * FFI socket with batched system calls and, where the kernel has them, TUN and UDP
 * offloads. The design card names Deno.listenDatagram; why the socket is libc's instead,
 * with the figures measured side by side, is in the README ("Why the socket is libc's").
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { closeFd, interfaceIndex, setNonBlocking } from "../../ffi/libc.ts";
import { type Address, Netlink, type Route } from "../../ffi/netlink.ts";
import {
  openUdpSocket,
  probeUdpOffloads,
  raiseSocketBuffers,
  steerByInnerFlow,
} from "../../ffi/udp_socket.ts";
import { disableOffloads, enableTso, enableUso, openTun } from "../../ffi/tun.ts";
import { formatIp6, formatIp6Net, type Ip6Net } from "../ip6.ts";
import type { NetworkConfig } from "../config.ts";
import { OverlayError } from "../errors.ts";
import { formatIp4, formatIp4Net } from "../ip.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import { createCounterBuffer, readCounters } from "../udp/counters.ts";
import {
  CONTROL_STATE,
  DATA_PATH_FAILED,
  DATA_PATH_RUNNING,
  type DataPathConfig,
} from "../udp/datapath_worker.ts";
import { busyPollWindowMs } from "../udp/busy_poll.ts";
import { stopWorkers } from "../udp/worker_control.ts";
import { PeerTable } from "../udp/peer_table.ts";
import { ensureOwnRoute, keepOwnRoutes } from "./kernel_state.ts";

const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
/** How long stop() waits for the Worker (it checks its stop flag at least every 200 ms). */
const STOP_WAIT_MS = 2_000;
/**
 * Packets the kernel may queue for the agent. The TUN default of 500 overflowed under a
 * single TCP stream (see README, "udp backend").
 */
const TUN_TX_QUEUE_LENGTH = 10_000;
/** IPv6 needs a link MTU of at least 1280 (RFC 8200 §5); Linux turns IPv6 off below it. */
const IPV6_MIN_MTU = 1280;

/** A peer as the data path knows it: its public IP and, in a dual-stack network, its IPv6 subnet. */
interface PeerEntry {
  readonly publicIp: number;
  readonly ipv6Subnet?: bigint;
}

export class UdpBackend implements Backend {
  readonly type = "udp" as const;
  readonly mtu: number;
  readonly hearsPeers = true;
  readonly device: string;
  #offload = false;
  /** The TUN also hands over UDP super-packets (TUN_F_USO4|USO6). */
  #uso = false;
  readonly #config: NetworkConfig;
  /** Data-path queues: one TUN queue, one SO_REUSEPORT socket and one Worker each. */
  readonly #queues = queueCount();
  /** Per Worker: its counters (summed when read) and its control word pair. */
  readonly #counters: SharedArrayBuffer[] = [];
  readonly #controls: SharedArrayBuffer[] = [];
  readonly #peerIps = new Map<number, PeerEntry>(); // IPv4 subnet ip → the peer
  #peers: PeerTable | undefined;
  #workers: Worker[] = [];
  #workersDone: Promise<void>[] = [];
  #tunFds: number[] = [];
  /** Puts the Network route back when someone deletes it. */
  #routeKeeper: { stop(): void } | undefined;
  #udpFds: number[] = [];

  constructor(context: BackendContext) {
    const config = context.config;
    if (!config.enableIPv4) {
      throw new OverlayError(
        "udp backend needs an IPv4 underlay and IPv4 network; for IPv6-only networks use vxlan or host-gw",
      );
    }
    // Allocating the peer table validates the Network size before anything is created.
    this.#config = config;
    this.mtu = deviceMtu(config.backend, context.underlay.mtu);
    this.device = context.device!; // the registry gives flanneld's name by default
    if (config.ipv6 && this.mtu < IPV6_MIN_MTU) {
      throw new OverlayError(
        `udp backend: device MTU ${this.mtu} is below IPv6's minimum of ${IPV6_MIN_MTU} ` +
          `(the IPv6 Network needs an underlay MTU of at least ${IPV6_MIN_MTU + 28})`,
      );
    }
    this.#peers = PeerTable.create(config.network.ip, config.network.prefixLen, config.subnetLen, {
      ipv6: config.ipv6 && { network: config.ipv6.network, subnetLen: config.ipv6.subnetLen },
    });
  }

  /** Our IPv6 subnet when the network is dual-stack and our lease has one. */
  #ownIpv6(own: Lease): Ip6Net | undefined {
    if (!this.#config.ipv6) return undefined;
    if (!own.ipv6Subnet) {
      log.warn("udp backend: the network has IPv6 but our lease has no IPv6 subnet; IPv4 only");
    }
    return own.ipv6Subnet;
  }

  async start(own: Lease): Promise<void> {
    const network = this.#config.network;
    const netlink = new Netlink();
    try {
      // Offloads when the kernel has them (OVERLAY_OFFLOAD=0 turns them off): a vnet header
      // and TSO4 on the TUN, UDP_SEGMENT and UDP_GRO on the socket. Else the batched path.
      const ownIpv6 = this.#ownIpv6(own);
      const wantOffload = Deno.env.get("OVERLAY_OFFLOAD") !== "0";
      const queues = this.#queues;
      let tun = openTun(this.device, { vnetHdr: wantOffload, queues });
      this.#tunFds = tun.fds;
      this.#udpFds = openUdpSockets(this.#config.backend.port, queues);
      // USO where the kernel has it (6.2+), else TSO alone; OVERLAY_USO=0 keeps to TSO.
      const tunOffloads = { ipv6: ownIpv6 !== undefined };
      this.#uso = wantOffload && Deno.env.get("OVERLAY_USO") !== "0" &&
        enableUso(tun.fd, tunOffloads);
      this.#offload = wantOffload && (this.#uso || enableTso(tun.fd, tunOffloads)) &&
        this.#udpFds.every(probeUdpOffloads);
      this.#uso &&= this.#offload;
      if (!this.#offload) {
        if (wantOffload) {
          for (const fd of tun.fds) closeFd(fd);
          tun = openTun(this.device, { queues });
          this.#tunFds = tun.fds;
        }
        disableOffloads(tun.fd);
      }
      for (const fd of tun.fds) setNonBlocking(fd);
      setIpv6(tun.name, ownIpv6 !== undefined);
      const index = interfaceIndex(tun.name);
      netlink.linkSetMtu(index, this.mtu);
      netlink.linkSetTxQueueLength(index, TUN_TX_QUEUE_LENGTH);
      netlink.addressReplace(index, own.subnet.ip, 32);
      netlink.linkSetUp(index);
      const routes: Route<Address>[] = [
        { dst: network.ip, prefixLen: network.prefixLen, linkIndex: index },
      ];
      ensureOwnRoute(netlink, routes[0]);
      const network6 = this.#config.ipv6?.network;
      if (ownIpv6 && network6) {
        netlink.addressReplace(index, ownIpv6.ip, 128);
        routes.push({ dst: network6.ip, prefixLen: network6.prefixLen, linkIndex: index });
        ensureOwnRoute(netlink, routes[1]);
      }
      this.#routeKeeper = keepOwnRoutes(`udp ${tun.name}`, routes);
      let buffers = { rcvbuf: 0, sndbuf: 0 };
      for (const fd of this.#udpFds) buffers = raiseSocketBuffers(fd, SOCKET_BUFFER_BYTES);
      log.info("udp backend device up", {
        device: tun.name,
        address: `${formatIp4(own.subnet.ip)}/32`,
        route: `${formatIp4Net(network)} dev ${tun.name}`,
        ...(ownIpv6 && network6
          ? {
            address6: `${formatIp6(ownIpv6.ip)}/128`,
            route6: `${formatIp6Net(network6)} dev ${tun.name}`,
          }
          : {}),
        mtu: this.mtu,
        port: this.#config.backend.port,
        dataPath: this.dataPath,
        queues: this.#tunFds.length,
        multiQueue: tun.multiQueue,
        rcvbuf: buffers.rcvbuf,
        sndbuf: buffers.sndbuf,
      });
    } catch (error) {
      this.#closeFds();
      throw new OverlayError(`udp backend: ${(error as Error).message}`, { cause: error });
    } finally {
      netlink.close();
    }
    await this.#startWorkers(own);
  }

  /** One Worker per queue, each on its TUN queue and its socket; all share the peer table. */
  async #startWorkers(own: Lease): Promise<void> {
    const queues = this.#tunFds.length;
    for (let queue = 0; queue < queues; queue++) {
      this.#counters.push(createCounterBuffer());
      this.#controls.push(new SharedArrayBuffer(8));
      this.#startWorker(own, queue, queues);
    }
    const deadline = Date.now() + 5000;
    for (const buffer of this.#controls) {
      const control = new Int32Array(buffer);
      while (Atomics.load(control, CONTROL_STATE) !== DATA_PATH_RUNNING) {
        if (Atomics.load(control, CONTROL_STATE) === DATA_PATH_FAILED || Date.now() > deadline) {
          await this.stop();
          throw new OverlayError(
            "udp backend: the data path worker did not start (see the log above)",
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }
  }

  #startWorker(own: Lease, queue: number, queues: number): void {
    const controlBuffer = this.#controls[queue];
    const config: DataPathConfig = {
      tunFd: this.#tunFds[queue],
      udpFd: this.#udpFds[queue],
      queues,
      port: this.#config.backend.port,
      ownSubnetIp: own.subnet.ip,
      ownSubnetPrefixLen: own.subnet.prefixLen,
      icmpSourceIp: this.#config.network.ip,
      ...(own.ipv6Subnet && this.#config.ipv6
        ? { ownIpv6Subnet: own.ipv6Subnet, icmp6SourceIp: this.#config.ipv6.network.ip }
        : {}),
      // Room for the largest packet the device MTU allows, in whole cache lines.
      slotSize: Math.ceil(Math.max(this.mtu, 1500) / 64) * 64,
      offload: this.#offload,
      mtu: this.mtu,
      busyPollMs: busyPollWindowMs(),
      peers: this.#peers!.buffers,
      counters: this.#counters[queue],
      control: controlBuffer,
    };
    const worker = new Worker(new URL("../udp/datapath_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#workers.push(worker);
    this.#workersDone.push(
      new Promise<void>((resolve) => {
        worker.onmessage = (event) => {
          if (event.data?.type === "failed") {
            log.error("udp data path failed", { error: event.data.message });
          }
          resolve();
        };
        worker.onerror = (event) => {
          event.preventDefault();
          log.error("udp data path crashed", { error: event.message });
          Atomics.store(new Int32Array(controlBuffer), CONTROL_STATE, DATA_PATH_FAILED);
          resolve();
        };
      }),
    );
    worker.postMessage(config);
  }

  /** Which data path runs: said in the log, `overlay status` and /metrics. */
  get dataPath(): string {
    const queues = this.#tunFds.length || this.#queues;
    const threads = queues === 1
      ? "worker thread"
      : `${queues} worker threads on a ${queues}-queue TUN`;
    if (!this.#offload) return `udp: ${threads}, batched recvmmsg/sendmmsg`;
    return this.#uso
      ? `udp: ${threads}, TUN TSO + USO + UDP GSO/GRO offloads`
      : `udp: ${threads}, TUN TSO + UDP GSO/GRO offloads`;
  }

  /**
   * Routes a peer's subnet, and in a dual-stack network its IPv6 subnet, to its IPv4
   * public IP. A lease that changed its IPv6 subnet gives up the old one.
   */
  addPeer(peer: Lease): void {
    // One slot per subnet of SubnetLen: a nested lease (a /25 in a /24) must not take one.
    if (peer.subnet.prefixLen !== this.#config.subnetLen) return;
    const ipv6 = this.#config.ipv6;
    const ipv6Subnet = ipv6 && peer.ipv6Subnet?.prefixLen === ipv6.subnetLen
      ? peer.ipv6Subnet.ip
      : undefined;
    const previous = this.#peerIps.get(peer.subnet.ip);
    const publicIp = peer.attrs.publicIp;
    if (previous?.publicIp === publicIp && previous.ipv6Subnet === ipv6Subnet) return;
    this.#peerIps.set(peer.subnet.ip, { publicIp, ipv6Subnet });
    this.#peers!.setOwner(peer.subnet.ip, publicIp);
    if (previous?.ipv6Subnet !== undefined && previous.ipv6Subnet !== ipv6Subnet) {
      this.#peers!.setOwner6(previous.ipv6Subnet, 0);
    }
    if (ipv6Subnet !== undefined) this.#peers!.setOwner6(ipv6Subnet, publicIp);
    this.#peers!.setPeers(this.#publicIps());
  }

  removePeer(peer: Lease): void {
    const previous = this.#peerIps.get(peer.subnet.ip);
    if (!previous) return;
    this.#peerIps.delete(peer.subnet.ip);
    this.#peers!.setOwner(peer.subnet.ip, 0);
    if (previous.ipv6Subnet !== undefined) this.#peers!.setOwner6(previous.ipv6Subnet, 0);
    this.#peers!.setPeers(this.#publicIps());
  }

  *#publicIps(): Iterable<number> {
    for (const entry of this.#peerIps.values()) yield entry.publicIp;
  }

  /** flannel's udp leases carry no BackendData: there is nothing to check. */
  checkPeer(_peer: Lease): string | undefined {
    return undefined;
  }

  claims(_peer: Lease): string[] {
    return [];
  }

  /** The data path runs while its Worker says so; its counters are shared memory. */
  owned(): BackendOwned {
    return { device: { name: this.device, kind: "tun" }, files: [] };
  }

  readonly ownClaims: string[] = [];

  renewIdentity(): boolean {
    return false;
  }

  observe(): BackendObservation {
    return {
      healthy: this.#controls.length > 0 &&
        this.#controls.every((control) =>
          Atomics.load(new Int32Array(control), CONTROL_STATE) === DATA_PATH_RUNNING
        ),
      counters: readCounters(this.#counters),
      conflicts: [],
      firstContacts: this.#peers!.firstContacts,
    };
  }

  /** The later of the last datagrams carrying the peer's IPv4 and IPv6 packets. */
  lastHeard(peer: Lease): number {
    const v4 = this.#peers!.lastHeard(peer.subnet.ip);
    const v6 = peer.ipv6Subnet ? this.#peers!.lastHeard6(peer.ipv6Subnet.ip) : 0;
    return Math.max(v4, v6);
  }

  /**
   * Stops the data path. The descriptors are closed only once the Worker has stopped: a
   * descriptor closed under a running Worker could be reused by the next open, and the
   * Worker's next write would land there.
   */
  async stop(): Promise<void> {
    this.#routeKeeper?.stop();
    const stopped = await stopWorkers("udp", {
      controls: this.#controls,
      workers: this.#workers,
      running: this.#workersDone,
    }, STOP_WAIT_MS);
    this.#workers = [];
    if (stopped) this.#closeFds();
  }

  #closeFds(): void {
    for (const fd of [...this.#udpFds, ...this.#tunFds]) closeFd(fd);
    this.#udpFds = [];
    this.#tunFds = [];
  }
}

/**
 * Data-path queues (OVERLAY_QUEUES): 1 by default, one Worker on a single-queue TUN; a
 * number, or `auto` for one per core the agent may use (navigator.hardwareConcurrency
 * follows the process's CPU affinity) up to MAX_QUEUES. On the 2-vCPU machines measured so
 * far more queues did not pay (README, "Benchmarks"), so they are not the default.
 */
const MAX_QUEUES = 4;

function queueCount(): number {
  const text = Deno.env.get("OVERLAY_QUEUES");
  if (text === "auto") return Math.max(1, Math.min(MAX_QUEUES, navigator.hardwareConcurrency || 1));
  const value = text === undefined ? NaN : Number(text);
  return Number.isInteger(value) && value >= 1 ? Math.min(value, 64) : 1;
}

/**
 * The data path's sockets, all bound to `port`: one plain socket for one queue, else one
 * SO_REUSEPORT socket per queue. A plain bind first checks that no other process holds the
 * port (with SO_REUSEPORT a second agent of the same user could otherwise share it).
 */
function openUdpSockets(port: number, queues: number): number[] {
  if (queues === 1) return [openUdpSocket(0, port)];
  closeFd(openUdpSocket(0, port));
  const fds: number[] = [];
  try {
    for (let i = 0; i < queues; i++) fds.push(openUdpSocket(0, port, { reusePort: true }));
    if (!steerByInnerFlow(fds[0], queues)) {
      log.warn(
        "udp backend: the kernel refused inner-flow steering; one peer's traffic arrives on one queue",
      );
    }
  } catch (error) {
    for (const fd of fds) closeFd(fd);
    throw error;
  }
  return fds;
}

/**
 * IPv6 on the TUN: off when the overlay carries IPv4 only, which keeps the kernel from
 * sending IPv6 chatter into it; on in a dual-stack network (a persistent TUN from an
 * IPv4-only run has it off), without a link-local address (addr_gen_mode 1, set before the
 * link comes up), which nothing on a point-to-point overlay device uses.
 */
function setIpv6(device: string, enabled: boolean): void {
  const conf = `/proc/sys/net/ipv6/conf/${device}`;
  try {
    if (enabled) Deno.writeTextFileSync(`${conf}/addr_gen_mode`, "1");
    Deno.writeTextFileSync(`${conf}/disable_ipv6`, enabled ? "0" : "1");
  } catch (error) {
    // IPv6 disabled or absent on this host: nothing to silence, and nothing to carry.
    if (enabled) {
      throw new Error(
        `cannot turn IPv6 on for ${device}: ${(error as Error).message} ` +
          `(the network has IPv6: is IPv6 disabled on this host, e.g. ipv6.disable=1?)`,
      );
    }
  }
}
