/**
 * WireGuard in the agent, for hosts without the kernel module: a TUN device named as
 * flannel's WireGuard device, a UDP socket on ListenPort, and the data path on a Worker
 * (lib/wireguard/datapath_worker.ts) with the WireGuard Device inside. The peer set goes to
 * the Worker through shared memory; counters and per-peer status come back the same way.
 */
import { closeFd, setNonBlocking } from "../../ffi/libc.ts";
import { openUdpSocket, probeUdpOffloads, raiseSocketBuffers } from "../../ffi/udp_socket.ts";
import { disableOffloads, enableTso, openTun } from "../../ffi/tun.ts";
import { log } from "../log.ts";
import { OverlayError } from "../errors.ts";
import {
  CONTROL_STATE,
  DATA_PATH_FAILED,
  DATA_PATH_RUNNING,
  type PeerConfig,
  type StatusReport,
  WG_COUNTERS,
  type WgDataPathConfig,
} from "./datapath_worker.ts";
import { busyPollWindowMs } from "../udp/busy_poll.ts";
import { stopWorkers } from "../udp/worker_control.ts";
import type { DevicePathObservation, DeviceSetup, WireguardDevicePath } from "./device_path.ts";
import { Mailbox } from "./mailbox.ts";

const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
const STOP_WAIT_MS = 2_000;
const TUN_TX_QUEUE_LENGTH = 10_000;
/** Room for the peer set: about 250 bytes a peer, so some 4,000 peers. */
const PEERS_MAILBOX_BYTES = 1 << 20;
const STATUS_MAILBOX_BYTES = 1 << 20;

export class UserspaceWireguard implements WireguardDevicePath {
  readonly kind = "tun";
  #offload = false;
  #tunFd = -1;
  #udpFd = -1;
  #worker: Worker | undefined;
  #workerDone: Promise<void> | undefined;
  readonly #counters = new SharedArrayBuffer(WG_COUNTERS.length * 8);
  readonly #control = new SharedArrayBuffer(8);
  readonly #peersBox = new Mailbox(PEERS_MAILBOX_BYTES);
  readonly #statusBox = new Mailbox(STATUS_MAILBOX_BYTES);
  readonly #peers = new Map<string, PeerConfig>();
  #status: StatusReport = { peers: {}, firstContacts: 0, errors: [] };
  readonly #reportedErrors = new Set<string>();

  get description(): string {
    return this.#offload
      ? "userspace wireguard: worker thread, TUN TSO + UDP GSO/GRO offloads"
      : "userspace wireguard: worker thread, batched recvmmsg/sendmmsg";
  }

  async start(setup: DeviceSetup): Promise<void> {
    try {
      const wantOffload = Deno.env.get("OVERLAY_OFFLOAD") !== "0";
      let tun = openTun(setup.device, { vnetHdr: wantOffload });
      this.#tunFd = tun.fd;
      this.#udpFd = openUdpSocket(0, setup.listenPort);
      this.#offload = wantOffload && enableTso(tun.fd) && probeUdpOffloads(this.#udpFd);
      if (!this.#offload) {
        if (wantOffload) {
          closeFd(tun.fd);
          tun = openTun(setup.device);
          this.#tunFd = tun.fd;
        }
        disableOffloads(tun.fd);
      }
      setNonBlocking(tun.fd);
      raiseSocketBuffers(this.#udpFd, SOCKET_BUFFER_BYTES);
    } catch (error) {
      this.#closeFds();
      const message = (error as Error).message;
      throw new OverlayError(
        /EADDRINUSE|in use/i.test(message)
          ? `UDP port ${setup.listenPort} is in use (another WireGuard device or agent?): ${message}`
          : message,
        { cause: error },
      );
    }
    this.#publishPeers();
    const config: WgDataPathConfig = {
      tunFd: this.#tunFd,
      udpFd: this.#udpFd,
      privateKey: setup.privateKey,
      mtu: setup.mtu,
      offload: this.#offload,
      busyPollMs: busyPollWindowMs(),
      ...rekeyAfter(),
      counters: this.#counters,
      control: this.#control,
      peers: this.#peersBox.buffer,
      status: this.#statusBox.buffer,
    };
    const worker = new Worker(new URL("./datapath_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker = worker;
    this.#workerDone = new Promise<void>((resolve) => {
      worker.onmessage = (event) => {
        if (event.data?.type === "failed") {
          log.error("wireguard data path failed", { error: event.data.message });
        }
        resolve();
      };
      worker.onerror = (event) => {
        event.preventDefault();
        log.error("wireguard data path crashed", { error: event.message });
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
        throw new OverlayError("the data path worker did not start (see the log above)");
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  setPeer(peer: PeerConfig): void {
    this.#peers.set(peer.publicKey, peer);
    this.#publishPeers();
  }

  removePeer(publicKey: string): void {
    if (this.#peers.delete(publicKey)) this.#publishPeers();
  }

  /** The Worker takes the whole set on its next timer turn (≤ 100 ms). */
  #publishPeers(): void {
    this.#peersBox.write([...this.#peers.values()]);
  }

  observe(): DevicePathObservation {
    const fresh = this.#statusBox.read<StatusReport>();
    if (fresh) {
      this.#status = fresh;
      for (const error of fresh.errors) {
        if (this.#reportedErrors.has(error)) continue;
        this.#reportedErrors.add(error);
        log.error("wireguard: peer not configured", { error });
      }
    }
    const values = new Float64Array(this.#counters);
    const counters = Object.fromEntries(WG_COUNTERS.map((name, i) => [name, values[i]]));
    return {
      healthy: Atomics.load(new Int32Array(this.#control), CONTROL_STATE) === DATA_PATH_RUNNING,
      counters,
      peers: this.#status.peers,
      firstContacts: this.#status.firstContacts,
    };
  }

  /** Stops the Worker, then closes the descriptors (never under a running Worker). */
  async stop(): Promise<void> {
    const stopped = await stopWorkers("wireguard", {
      controls: [this.#control],
      workers: this.#worker ? [this.#worker] : [],
      running: this.#workerDone ? [this.#workerDone] : [],
    }, STOP_WAIT_MS);
    this.#worker = undefined;
    if (stopped) this.#closeFds();
  }

  #closeFds(): void {
    closeFd(this.#udpFd);
    closeFd(this.#tunFd);
    this.#udpFd = -1;
    this.#tunFd = -1;
  }
}

/**
 * OVERLAY_WG_REKEY_AFTER_MS shortens WireGuard's 120 s rekey time for sessions this host
 * initiates: a test knob, so interop after a rekey is checked in seconds, not minutes.
 */
function rekeyAfter(): { rekeyAfterMs?: number } {
  const value = Number(Deno.env.get("OVERLAY_WG_REKEY_AFTER_MS"));
  return Number.isFinite(value) && value >= 1000 ? { rekeyAfterMs: value } : {};
}

/** The Worker's TUN queue length, which the backend sets with the MTU. */
export { TUN_TX_QUEUE_LENGTH };
