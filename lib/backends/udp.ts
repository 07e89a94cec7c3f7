/**
 * The udp backend, wire-compatible with flannel's: a TUN device carries IP packets,
 * each sent to the owning peer as the bare payload of one UDP datagram (default port
 * 8285). Device MTU = underlay MTU − 28 (20 outer IPv4 + 8 UDP). The TUN gets
 * `<subnet.ip>/32` and a route for the whole Network.
 *
 * The packets themselves move on a Worker (lib/udp/datapath_worker.ts) that drives an
 * FFI socket with batched system calls and, where the kernel has them, TUN and UDP
 * offloads. The design card names Deno.listenDatagram; why the socket is libc's instead,
 * with the figures measured side by side, is in the README ("Why the socket is libc's").
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { closeFd, interfaceIndex, setNonBlocking } from "../../ffi/libc.ts";
import { Netlink } from "../../ffi/netlink.ts";
import { openUdpSocket, probeUdpOffloads, raiseSocketBuffers } from "../../ffi/udp_socket.ts";
import { disableOffloads, enableTso4, openTun } from "../../ffi/tun.ts";
import type { NetworkConfig } from "../config.ts";
import { OverlayError } from "../errors.ts";
import { formatIp4, formatIp4Net } from "../ip.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import { createCounterBuffer, readCounters } from "../udp/counters.ts";
import {
  CONTROL_STATE,
  CONTROL_STOP,
  DATA_PATH_FAILED,
  DATA_PATH_RUNNING,
  type DataPathConfig,
} from "../udp/datapath_worker.ts";
import { PeerTable } from "../udp/peer_table.ts";
import { ensureOwnRoute } from "./kernel_state.ts";

const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
/** How long stop() waits for the Worker (it checks its stop flag at least every 200 ms). */
const STOP_WAIT_MS = 2_000;
/**
 * Packets the kernel may queue for the agent. The TUN default of 500 overflowed under a
 * single TCP stream (see README, "udp backend").
 */
const TUN_TX_QUEUE_LENGTH = 10_000;

export class UdpBackend implements Backend {
  readonly type = "udp" as const;
  readonly mtu: number;
  readonly hearsPeers = true;
  readonly device: string;
  #offload = false;
  readonly #config: NetworkConfig;
  readonly #counters = createCounterBuffer();
  readonly #control = new SharedArrayBuffer(8);
  readonly #peerIps = new Map<number, number>(); // subnet ip → public ip
  #peers: PeerTable | undefined;
  #worker: Worker | undefined;
  #workerDone: Promise<void> | undefined;
  #tunFd = -1;
  #udpFd = -1;

  constructor(context: BackendContext) {
    // Allocating the peer table validates the Network size before anything is created.
    this.#config = context.config;
    this.mtu = deviceMtu(context.config.backend, context.underlay.mtu);
    this.device = context.device!; // the registry gives flanneld's name by default
    this.#peers = PeerTable.create(
      context.config.network.ip,
      context.config.network.prefixLen,
      context.config.subnetLen,
    );
  }

  async start(own: Lease): Promise<void> {
    const network = this.#config.network;
    const netlink = new Netlink();
    try {
      // Offloads when the kernel has them (OVERLAY_OFFLOAD=0 turns them off): a vnet header
      // and TSO4 on the TUN, UDP_SEGMENT and UDP_GRO on the socket. Else the batched path.
      const wantOffload = Deno.env.get("OVERLAY_OFFLOAD") !== "0";
      let tun = openTun(this.device, { vnetHdr: wantOffload });
      this.#tunFd = tun.fd;
      this.#udpFd = openUdpSocket(0, this.#config.backend.port);
      this.#offload = wantOffload && enableTso4(tun.fd) && probeUdpOffloads(this.#udpFd);
      if (!this.#offload) {
        if (wantOffload) {
          closeFd(tun.fd);
          tun = openTun(this.device);
          this.#tunFd = tun.fd;
        }
        disableOffloads(tun.fd);
      }
      setNonBlocking(tun.fd);
      disableIpv6(tun.name);
      const index = interfaceIndex(tun.name);
      netlink.linkSetMtu(index, this.mtu);
      netlink.linkSetTxQueueLength(index, TUN_TX_QUEUE_LENGTH);
      netlink.addressReplace(index, own.subnet.ip, 32);
      netlink.linkSetUp(index);
      ensureOwnRoute(netlink, { dst: network.ip, prefixLen: network.prefixLen, linkIndex: index });
      const buffers = raiseSocketBuffers(this.#udpFd, SOCKET_BUFFER_BYTES);
      log.info("udp backend device up", {
        device: tun.name,
        address: `${formatIp4(own.subnet.ip)}/32`,
        route: `${formatIp4Net(network)} dev ${tun.name}`,
        mtu: this.mtu,
        port: this.#config.backend.port,
        dataPath: this.dataPath,
        rcvbuf: buffers.rcvbuf,
        sndbuf: buffers.sndbuf,
      });
    } catch (error) {
      this.#closeFds();
      throw new OverlayError(`udp backend: ${(error as Error).message}`, { cause: error });
    } finally {
      netlink.close();
    }
    await this.#startWorker(own);
  }

  async #startWorker(own: Lease): Promise<void> {
    const config: DataPathConfig = {
      tunFd: this.#tunFd,
      udpFd: this.#udpFd,
      port: this.#config.backend.port,
      ownSubnetIp: own.subnet.ip,
      ownSubnetPrefixLen: own.subnet.prefixLen,
      icmpSourceIp: this.#config.network.ip,
      // Room for the largest packet the device MTU allows, in whole cache lines.
      slotSize: Math.ceil(Math.max(this.mtu, 1500) / 64) * 64,
      offload: this.#offload,
      mtu: this.mtu,
      busyPollMs: busyPollMs(),
      peers: this.#peers!.buffers,
      counters: this.#counters,
      control: this.#control,
    };
    const worker = new Worker(new URL("../udp/datapath_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker = worker;
    this.#workerDone = new Promise<void>((resolve) => {
      worker.onmessage = (event) => {
        if (event.data?.type === "failed") {
          log.error("udp data path failed", { error: event.data.message });
        }
        resolve();
      };
      worker.onerror = (event) => {
        event.preventDefault();
        log.error("udp data path crashed", { error: event.message });
        Atomics.store(new Int32Array(this.#control), CONTROL_STATE, DATA_PATH_FAILED);
        resolve();
      };
    });
    worker.postMessage(config);
    const control = new Int32Array(this.#control);
    const deadline = Date.now() + 5000;
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

  /** Which data path runs: said in the log, `overlay status` and /metrics. */
  get dataPath(): string {
    return this.#offload
      ? "udp: worker thread, TUN TSO + UDP GSO/GRO offloads"
      : "udp: worker thread, batched recvmmsg/sendmmsg";
  }

  addPeer(peer: Lease): void {
    // One slot per subnet of SubnetLen: a nested lease (a /25 in a /24) must not take one.
    if (peer.subnet.prefixLen !== this.#config.subnetLen) return;
    const previous = this.#peerIps.get(peer.subnet.ip);
    if (previous === peer.attrs.publicIp) return;
    this.#peerIps.set(peer.subnet.ip, peer.attrs.publicIp);
    this.#peers!.setOwner(peer.subnet.ip, peer.attrs.publicIp);
    this.#peers!.setPeers(this.#peerIps.values());
  }

  removePeer(peer: Lease): void {
    if (!this.#peerIps.delete(peer.subnet.ip)) return;
    this.#peers!.setOwner(peer.subnet.ip, 0);
    this.#peers!.setPeers(this.#peerIps.values());
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
      healthy: Atomics.load(new Int32Array(this.#control), CONTROL_STATE) === DATA_PATH_RUNNING,
      counters: readCounters(this.#counters),
      conflicts: [],
      firstContacts: this.#peers!.firstContacts,
    };
  }

  lastHeard(peer: Lease): number {
    return this.#peers!.lastHeard(peer.subnet.ip);
  }

  /**
   * Stops the data path. The descriptors are closed only once the Worker has stopped: a
   * descriptor closed under a running Worker could be reused by the next open, and the
   * Worker's next write would land there.
   */
  async stop(): Promise<void> {
    Atomics.store(new Int32Array(this.#control), CONTROL_STOP, 1);
    if (this.#workerDone) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stopped = await Promise.race([
        this.#workerDone.then(() => true),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), STOP_WAIT_MS)),
      ]);
      clearTimeout(timer);
      if (!stopped) {
        log.error(
          `udp data path did not stop within ${STOP_WAIT_MS} ms; terminating it and leaving its descriptors open`,
        );
        this.#worker?.terminate();
        this.#worker = undefined;
        return;
      }
      log.info("udp data path stopped");
    }
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#closeFds();
  }

  #closeFds(): void {
    closeFd(this.#udpFd);
    closeFd(this.#tunFd);
    this.#udpFd = -1;
    this.#tunFd = -1;
  }
}

/**
 * After traffic the data path keeps checking for packets this long before it sleeps:
 * a reply usually comes back within a few hundred microseconds, and catching it awake
 * saves a scheduler wake-up per hop (README, "Benchmarks", has the ping figures).
 * Bounded, and it yields the CPU between checks, so an idle agent uses none.
 * OVERLAY_BUSY_POLL_MS overrides it (0 turns it off).
 */
const DEFAULT_BUSY_POLL_MS = 1;

function busyPollMs(): number {
  const text = Deno.env.get("OVERLAY_BUSY_POLL_MS");
  const value = text === undefined ? NaN : Number(text);
  return Number.isFinite(value) && value >= 0 ? value : DEFAULT_BUSY_POLL_MS;
}

/** The overlay carries IPv4 only: keep the kernel from sending IPv6 chatter into the TUN. */
function disableIpv6(device: string): void {
  try {
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${device}/disable_ipv6`, "1");
  } catch {
    // IPv6 disabled or absent on this host: nothing to silence.
  }
}
