/**
 * The vxlan backend, as flannel's: the kernel carries the traffic; the agent programs
 * it through netlink and gets out of the way.
 *
 * Device `flannel.<VNI>` (flanneld's name): `ip link add flannel.1 type vxlan id 1 local <public ip>
 * dev <underlay> dstport 8472 nolearning`, MTU = underlay MTU − 50 (20 outer IPv4 +
 * 8 UDP + 8 VXLAN + 14 inner Ethernet) unless the config sets MTU, `<subnet.ip>/32`.
 * Lease BackendData `{"VNI":1,"VtepMAC":"…"}`; the VtepMAC is kept in the state folder
 * so a restart does not make every peer reprogram. Per peer, in flannel's order:
 *   ip neigh replace <peer subnet.0> lladdr <VtepMAC> dev flannel.1 nud permanent
 *   bridge fdb replace <VtepMAC> dev flannel.1 dst <peer PublicIP> self permanent
 *   ip route replace <peer subnet> via <peer subnet.0> dev flannel.1 onlink
 * With DirectRouting, a peer on our L2 segment gets `ip route replace <peer subnet> via
 * <peer PublicIP> dev <underlay>` instead.
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu } from "../backend.ts";
import { interfaceIndex } from "../../ffi/libc.ts";
import { AF_BRIDGE, AF_INET, type LinkInfo, Netlink, NUD_PERMANENT } from "../../ffi/netlink.ts";
import type { NetworkConfig } from "../config.ts";
import { OverlayError } from "../errors.ts";
import { formatIp4, formatIp4Net, netContains, prefixMask } from "../ip.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import type { Underlay } from "../underlay.ts";
import {
  emptySnapshot,
  type KernelEntry,
  type KernelSnapshot,
  KernelState,
  routeEntry,
  snapshotRoutes,
} from "./kernel_state.ts";
import { isFlanneldRoute, OVERLAY_PROTOCOL } from "../ownership.ts";
import { writeFileAtomic } from "../atomic_file.ts";

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

export class VxlanBackend implements Backend {
  readonly type = "vxlan" as const;
  readonly mtu: number;
  readonly hearsPeers = false;
  readonly device: string;
  readonly dataPath = "kernel vxlan";
  backendData: Record<string, unknown>;
  readonly #config: NetworkConfig;
  readonly #underlay: Underlay;
  readonly #macFile: string;
  #mac: string;
  #netlink: Netlink | undefined;
  #state: KernelState | undefined;
  #index = 0;
  #underlayIndex = 0;
  /** Taking over from flanneld: its routes via the underlay are adopted at the first look. */
  #adopting: boolean;

  constructor(context: BackendContext) {
    this.#adopting = context.takeover === true;
    this.#config = context.config;
    this.#underlay = context.underlay;
    this.mtu = deviceMtu(context.config.backend, context.underlay.mtu);
    this.device = context.device!; // the registry gives flanneld's name by default
    this.#macFile = `${context.stateDir}/${this.device}.vtep-mac`;
    // A device that already fits is adopted with its MAC, as flanneld adopts one: after a
    // restart, or taking over flanneld's flannel.<VNI>, peers' entries stay valid.
    this.#mac = this.#adoptableDevice()?.mac ?? readMac(this.#macFile) ?? randomMac();
    this.backendData = { VNI: context.config.backend.vni, VtepMAC: this.#mac };
  }

  /** The existing device of our name when it fits the config (and has a usable MAC). */
  #adoptableDevice(): LinkInfo | undefined {
    const netlink = new Netlink();
    try {
      const existing = netlink.link(this.device);
      const fits = existing !== undefined &&
        this.#fits(existing, interfaceIndex(this.#underlay.name));
      return fits && existing.mac && !macProblem(existing.mac) ? existing : undefined;
    } finally {
      netlink.close();
    }
  }

  /**
   * True when a link is the vxlan device the config asks for: VNI, port, local address
   * (the underlay interface's, as flanneld's: a public IP behind NAT is not on the host),
   * underlay link and learning off.
   */
  #fits(link: LinkInfo, underlayIndex: number): boolean {
    const v = link.vxlan;
    const backend = this.#config.backend;
    return link.kind === "vxlan" && v !== undefined && v.vni === backend.vni &&
      v.port === backend.port && v.local === this.#underlay.ip && v.link === underlayIndex &&
      !v.learning;
  }

  start(own: Lease): Promise<void> {
    const netlink = new Netlink();
    this.#netlink = netlink;
    try {
      this.#underlayIndex = interfaceIndex(this.#underlay.name);
      this.#index = this.#ensureDevice(netlink);
      netlink.linkSetMtu(this.#index, this.mtu);
      netlink.addressReplace(this.#index, own.subnet.ip, 32);
      netlink.linkSetUp(this.#index);
    } catch (error) {
      netlink.close();
      this.#netlink = undefined;
      throw new OverlayError(`vxlan backend: ${(error as Error).message}`, { cause: error });
    }
    this.#state = new KernelState(netlink, `vxlan ${this.device}`, () => this.#snapshot());
    log.info("vxlan device up", {
      device: this.device,
      vni: this.#config.backend.vni,
      port: this.#config.backend.port,
      local: formatIp4(this.#underlay.ip),
      mac: this.#mac,
      mtu: this.mtu,
    });
    this.#state.startReconciling();
    return writeFileAtomic(this.#macFile, this.#mac + "\n");
  }

  /** Creates the device, or adopts one that already matches; recreates a stale one. */
  #ensureDevice(netlink: Netlink): number {
    const backend = this.#config.backend;
    const existing = netlink.link(this.device);
    if (existing) {
      if (this.#fits(existing, this.#underlayIndex) && existing.mac === this.#mac) {
        log.info("adopting the existing vxlan device", { device: this.device, mac: this.#mac });
        return existing.index;
      }
      if (existing.kind !== "vxlan") {
        throw new Error(
          `device ${this.device} exists and is not a vxlan device (remove it, or choose another name with --device)`,
        );
      }
      log.warn("recreating the vxlan device: its settings differ from the config", {
        device: this.device,
      });
      netlink.linkDelete(existing.index);
    }
    this.#removeClashingDevice(netlink);
    netlink.linkCreate({
      name: this.device,
      kind: "vxlan",
      mtu: this.mtu,
      mac: this.#mac,
      vxlan: {
        vni: backend.vni,
        link: this.#underlayIndex,
        local: this.#underlay.ip,
        learning: false,
        port: backend.port,
      },
    });
    const index = interfaceIndex(this.device);
    if (index === 0) throw new Error(`device ${this.device} vanished right after it was created`);
    return index;
  }

  /** A peer needs a unicast VtepMAC: the zero MAC is vxlan's default destination. */
  checkPeer(peer: Lease): string | undefined {
    const data = peer.attrs.backendData;
    const mac = data?.VtepMAC;
    if (typeof mac !== "string") return `BackendData.VtepMAC is missing`;
    const problem = macProblem(mac);
    if (problem) return `BackendData.VtepMAC ${JSON.stringify(mac)} ${problem}`;
    const vni = data?.VNI;
    if (vni !== undefined && (typeof vni !== "number" || !Number.isInteger(vni))) {
      return `BackendData.VNI ${JSON.stringify(vni)} is not a number`;
    }
    return undefined;
  }

  /** Every host's VTEP MAC must be its own: FDB entries are keyed by MAC. */
  claims(peer: Lease): string[] {
    const mac = peer.attrs.backendData?.VtepMAC;
    return typeof mac === "string" ? [`VtepMAC ${mac.toLowerCase()}`] : [];
  }

  /**
   * The kernel refuses a second vxlan device with our VNI, port and local address. One
   * left by flanneld (flannel.<VNI>, when --device names ours otherwise) goes; anyone
   * else's is an error naming it.
   */
  #removeClashingDevice(netlink: Netlink): void {
    const backend = this.#config.backend;
    const clash = netlink.links().find((link) =>
      link.name !== this.device && link.kind === "vxlan" && link.vxlan?.vni === backend.vni &&
      link.vxlan.port === backend.port && link.vxlan.local === this.#underlay.ip
    );
    if (!clash) return;
    if (!clash.name.startsWith("flannel.")) {
      throw new Error(
        `device ${clash.name} already carries VNI ${backend.vni} on port ${backend.port} ` +
          `(remove it, or give overlay that name with --device)`,
      );
    }
    netlink.linkDelete(clash.index);
    log.info("removed flanneld's vxlan device: overlay's carries its VNI now", {
      device: clash.name,
      ours: this.device,
    });
  }

  addPeer(peer: Lease): void {
    const mac = (peer.attrs.backendData!.VtepMAC as string).toLowerCase();
    this.#state?.setPeer(formatIp4Net(peer.subnet), this.#entries(peer, mac));
  }

  removePeer(peer: Lease): void {
    this.#state?.removePeer(formatIp4Net(peer.subnet));
  }

  #onSegment(ip: number): boolean {
    const mask = prefixMask(this.#underlay.prefixLen);
    return ((ip & mask) >>> 0) === ((this.#underlay.ip & mask) >>> 0);
  }

  #entries(peer: Lease, mac: string): KernelEntry[] {
    const netlink = this.#netlink!;
    const subnet = peer.subnet;
    const publicIp = peer.attrs.publicIp;
    if (this.#config.backend.directRouting && this.#onSegment(publicIp)) {
      const route = {
        dst: subnet.ip,
        prefixLen: subnet.prefixLen,
        linkIndex: this.#underlayIndex,
        gateway: publicIp,
      };
      return [routeEntry(netlink, route)];
    }
    const vtep = subnet.ip; // the peer's subnet .0 stands for its VTEP
    // Neighbour and FDB entries live on our own device: writing them is always a replace.
    const neighbour = netlink.neighbourReplaceRequest(this.#index, vtep, mac, OVERLAY_PROTOCOL);
    const fdb = netlink.fdbReplaceRequest(this.#index, mac, publicIp);
    return [
      {
        key: `neigh ${formatIp4(vtep)}`,
        fingerprint: mac,
        add: neighbour,
        replace: neighbour,
        remove: netlink.neighbourDeleteRequest(this.#index, vtep),
      },
      {
        key: `fdb ${mac}`,
        fingerprint: formatIp4(publicIp),
        add: fdb,
        replace: fdb,
        remove: netlink.fdbDeleteRequest(this.#index, mac, publicIp),
      },
      routeEntry(netlink, {
        dst: subnet.ip,
        prefixLen: subnet.prefixLen,
        linkIndex: this.#index,
        gateway: vtep,
        onlink: true,
      }),
    ];
  }

  /**
   * What this backend owns in the kernel: routes with our mark to peer subnets (on our
   * device, or on the underlay with DirectRouting), and the neighbour and FDB entries on
   * our device; and the routes of others that sit where a peer route would go.
   */
  #snapshot(): KernelSnapshot {
    const netlink = this.#netlink!;
    const network = this.#config.network;
    const adopting = this.#adopting;
    this.#adopting = false; // flanneld's underlay routes are taken over at the first look only
    const actual = snapshotRoutes(
      netlink,
      emptySnapshot(),
      (route) => route.prefixLen === this.#config.subnetLen && netContains(network, route.dst),
      (route) =>
        route.linkIndex === this.#index ||
        (adopting && isFlanneldRoute(route, this.#underlayIndex)),
    );
    for (const n of netlink.neighbours(AF_INET, this.#index)) {
      if (n.ip === undefined || !(n.state & NUD_PERMANENT)) continue;
      actual.ours.set(`neigh ${formatIp4(n.ip)}`, {
        fingerprint: n.mac ?? "",
        marked: true,
        remove: () => netlink.neighbourDeleteRequest(this.#index, n.ip!),
      });
    }
    for (const f of netlink.neighbours(AF_BRIDGE, this.#index)) {
      if (!f.mac || f.ip === undefined) continue;
      actual.ours.set(`fdb ${f.mac}`, {
        fingerprint: formatIp4(f.ip),
        marked: true,
        remove: () => netlink.fdbDeleteRequest(this.#index, f.mac!, f.ip!),
      });
    }
    return actual;
  }

  stop(): Promise<void> {
    this.#state?.close();
    this.#netlink = undefined;
    this.#state = undefined;
    return Promise.resolve();
  }

  owned(): BackendOwned {
    return { device: { name: this.device, kind: "vxlan" }, files: [this.#macFile] };
  }

  get ownClaims(): string[] {
    return [`VtepMAC ${this.#mac}`];
  }

  /** A new random MAC: on the device if it is up, in the state folder, in backendData. */
  renewIdentity(): boolean {
    const old = this.#mac;
    this.#mac = randomMac();
    this.backendData = { VNI: this.#config.backend.vni, VtepMAC: this.#mac };
    if (this.#netlink && this.#index !== 0) {
      this.#netlink.linkSetAddress(this.#index, this.#mac);
      writeFileAtomic(this.#macFile, this.#mac + "\n").catch((error) =>
        log.warn("cannot keep the new VtepMAC", { path: this.#macFile, error: error.message })
      );
    }
    log.info("picked a new VtepMAC", { old, new: this.#mac });
    return true;
  }

  observe(): BackendObservation {
    return {
      healthy: this.#index === 0 || interfaceIndex(this.device) === this.#index,
      conflicts: this.#state?.conflicts() ?? [],
    };
  }

  lastHeard(_peer: Lease): null {
    return null;
  }
}

/** Why a MAC cannot be a VTEP's, or undefined: it must be a unicast, non-zero MAC. */
export function macProblem(mac: string): string | undefined {
  const text = mac.toLowerCase();
  if (!MAC.test(text)) return "is not a MAC address";
  if (text === "00:00:00:00:00:00") return "is the zero MAC (vxlan's default destination)";
  if (parseInt(text.slice(0, 2), 16) & 1) return "is a multicast or broadcast MAC";
  return undefined;
}

function readMac(path: string): string | undefined {
  try {
    const text = Deno.readTextFileSync(path).trim().toLowerCase();
    return MAC.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

/** A random unicast, locally administered MAC. */
function randomMac(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  bytes[0] = (bytes[0] & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}
