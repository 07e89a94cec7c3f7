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
 *
 * IPv6 (flannel's dual stack, and IPv6-only networks): a second device `flannel-v6.<VNI>`
 * over the IPv6 underlay, as flanneld v0.20 makes it: same VNI and port, `local` the
 * interface's IPv6 address (the public IPv6 when it is on the interface, else the
 * interface's first global one, as flanneld's IfaceV6Addr; a host without one refuses to
 * start, as flanneld does), MTU = underlay MTU − 70 (40 outer IPv6 + 8 UDP + 8 VXLAN + 14
 * inner Ethernet, what the kernel gives such a device), `<ipv6 subnet base>/128`. Lease
 * BackendV6Data `{"VNI":1,"VtepMAC":"…"}` with the device's own MAC, kept in the state
 * folder too. Per peer with an IPv6 subnet, in the same order:
 *   ip -6 neigh replace <peer ipv6 subnet base> lladdr <v6 VtepMAC> dev flannel-v6.1 nud permanent
 *   bridge fdb replace <v6 VtepMAC> dev flannel-v6.1 dst <peer PublicIPv6> self permanent
 *   ip -6 route replace <peer ipv6 subnet> via <peer ipv6 subnet base> dev flannel-v6.1 onlink
 * and with DirectRouting, a peer on our IPv6 segment gets a route via its PublicIPv6 on
 * the underlay. An IPv6-only network (`EnableIPv4: false`) has only the IPv6 device.
 * The MTU published (the subnet file's) is the smaller of the devices' (with IPv6 on, the
 * v6 device's: containers use one MTU for both families; flanneld publishes −50).
 */
import type { Backend, BackendContext, BackendObservation, BackendOwned } from "../backend.ts";
import { deviceMtu, VXLAN6_OVERHEAD } from "../backend.ts";
import { interfaceIndex } from "../../ffi/libc.ts";
import {
  type Address,
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  formatAddress,
  type LinkInfo,
  Netlink,
  NUD_PERMANENT,
} from "../../ffi/netlink.ts";
import type { NetworkConfig } from "../config.ts";
import { OverlayError, UsageError } from "../errors.ts";
import { goField } from "../go_json.ts";
import { netContains, prefixMask } from "../ip.ts";
import { net6Contains, prefixMask6 } from "../ip6.ts";
import type { Lease } from "../lease.ts";
import { log } from "../log.ts";
import type { Underlay } from "../underlay.ts";
import {
  emptySnapshot,
  type KernelEntry,
  type KernelSnapshot,
  KernelState,
  peerKey,
  routeEntry,
  snapshotRoutes,
  snapshotRoutes6,
} from "./kernel_state.ts";
import { isFlanneldRoute, OVERLAY_PROTOCOL } from "../ownership.ts";
import { writeFileAtomic } from "../atomic_file.ts";

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
/** Longest interface name the kernel takes (IFNAMSIZ − 1). */
const MAX_NAME = 15;

/** One of the backend's devices: `flannel.<VNI>` over IPv4, `flannel-v6.<VNI>` over IPv6. */
interface VxlanDevice {
  readonly family: "IPv4" | "IPv6";
  readonly name: string;
  /** The local (underlay) address: a number over IPv4, a bigint over IPv6. */
  readonly local: Address;
  readonly mtu: number;
  /** Where the VtepMAC is kept across restarts. */
  readonly macFile: string;
  /** flanneld's device of this family is named `<prefix><VNI>`: removed when it clashes. */
  readonly flanneldPrefix: string;
  mac: string;
  index: number;
}

export class VxlanBackend implements Backend {
  readonly type = "vxlan" as const;
  readonly mtu: number;
  readonly hearsPeers = false;
  /** The device --health checks: the IPv4 one, or the IPv6 one in an IPv6-only network. */
  readonly device: string;
  readonly dataPath = "kernel vxlan";
  readonly #config: NetworkConfig;
  readonly #underlay: Underlay;
  /** The IPv4 device; undefined in an IPv6-only network. */
  readonly #v4: VxlanDevice | undefined;
  /** The IPv6 device; undefined unless the network has IPv6. */
  readonly #v6: VxlanDevice | undefined;
  #netlink: Netlink | undefined;
  #state: KernelState | undefined;
  #underlayIndex = 0;
  /** Taking over from flanneld: its routes via the underlay are adopted at the first look. */
  #adopting: boolean;

  constructor(context: BackendContext) {
    this.#adopting = context.takeover === true;
    this.#config = context.config;
    this.#underlay = context.underlay;
    const config = context.config;
    const vni = config.backend.vni;
    const name = context.device!; // the registry gives flanneld's name by default
    const custom = name !== `flannel.${vni}`;
    const underlayIndex = interfaceIndex(context.underlay.name);
    if (config.enableIPv4) {
      this.#v4 = this.#device(underlayIndex, {
        family: "IPv4",
        name,
        local: context.underlay.ip,
        mtu: deviceMtu(config.backend, context.underlay.mtu),
        macFile: `${context.stateDir}/${name}.vtep-mac`,
        flanneldPrefix: "flannel.",
      });
    }
    if (config.ipv6) {
      // --device names the IPv4 device; the IPv6 one is "<device>-v6", or the --device
      // itself in an IPv6-only network. By default both have flanneld's names.
      const v6Name = !custom ? `flannel-v6.${vni}` : config.enableIPv4 ? `${name}-v6` : name;
      if (v6Name.length > MAX_NAME) {
        throw new UsageError(
          `vxlan: the IPv6 device would be named ${
            JSON.stringify(v6Name)
          }, longer than ${MAX_NAME} characters (choose a shorter --device)`,
        );
      }
      this.#v6 = this.#device(underlayIndex, {
        family: "IPv6",
        name: v6Name,
        local: ipv6Local(context.underlay),
        mtu: config.backend.mtu ?? context.underlay.mtu - VXLAN6_OVERHEAD,
        macFile: `${context.stateDir}/${v6Name}.vtep-mac`,
        flanneldPrefix: "flannel-v6.",
      });
    }
    const devices = [this.#v4, this.#v6].filter((d) => d !== undefined);
    if (devices.length === 0) {
      throw new UsageError("vxlan: the network config enables neither IPv4 nor IPv6");
    }
    this.device = devices[0].name;
    this.mtu = Math.min(...devices.map((d) => d.mtu));
  }

  /**
   * A device of ours, not made yet. An existing device that already fits is adopted with
   * its MAC, as flanneld adopts one: after a restart, or taking over flanneld's, peers'
   * entries stay valid. Else the VtepMAC kept in the state folder, else a new one.
   */
  #device(
    underlayIndex: number,
    settings: Omit<VxlanDevice, "mac" | "index">,
  ): VxlanDevice {
    const device = { ...settings, mac: "", index: 0 };
    device.mac = this.#adoptable(device, underlayIndex)?.mac ?? readMac(device.macFile) ??
      randomMac();
    return device;
  }

  /** The existing link of the device's name when it fits (and has a usable MAC). */
  #adoptable(device: VxlanDevice, underlayIndex: number): LinkInfo | undefined {
    const netlink = new Netlink();
    try {
      const existing = netlink.link(device.name);
      const fits = existing !== undefined && this.#fits(device, existing, underlayIndex);
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
  #fits(device: VxlanDevice, link: LinkInfo, underlayIndex: number): boolean {
    const v = link.vxlan;
    const backend = this.#config.backend;
    return link.kind === "vxlan" && v !== undefined && v.vni === backend.vni &&
      v.port === backend.port && v.local === device.local && v.link === underlayIndex &&
      !v.learning;
  }

  /** The lease's BackendData (IPv4 device); undefined in an IPv6-only network. */
  get backendData(): Record<string, unknown> | undefined {
    return this.#v4 && { VNI: this.#config.backend.vni, VtepMAC: this.#v4.mac };
  }

  /** The lease's BackendV6Data (IPv6 device); undefined without IPv6. */
  get backendV6Data(): Record<string, unknown> | undefined {
    return this.#v6 && { VNI: this.#config.backend.vni, VtepMAC: this.#v6.mac };
  }

  async start(own: Lease): Promise<void> {
    const netlink = new Netlink();
    this.#netlink = netlink;
    try {
      this.#underlayIndex = interfaceIndex(this.#underlay.name);
      if (this.#v4) {
        if (own.subnet.prefixLen === 0) throw new Error("IPv4 is on but the lease has no subnet");
        this.#bringUp(netlink, this.#v4, own.subnet.ip, 32);
      }
      if (this.#v6) {
        if (!own.ipv6Subnet) throw new Error("IPv6 is on but the lease has no IPv6 subnet");
        this.#bringUp(netlink, this.#v6, own.ipv6Subnet.ip, 128);
      }
    } catch (error) {
      netlink.close();
      this.#netlink = undefined;
      throw new OverlayError(`vxlan backend: ${(error as Error).message}`, { cause: error });
    }
    this.#state = new KernelState(netlink, `vxlan ${this.device}`, () => this.#snapshot());
    for (const device of [this.#v4, this.#v6]) {
      if (!device) continue;
      log.info("vxlan device up", {
        device: device.name,
        vni: this.#config.backend.vni,
        port: this.#config.backend.port,
        local: formatAddress(device.local),
        mac: device.mac,
        mtu: device.mtu,
      });
    }
    this.#state.startReconciling();
    for (const device of [this.#v4, this.#v6]) {
      if (device) await writeFileAtomic(device.macFile, device.mac + "\n");
    }
  }

  /** The device made (or adopted), its MTU, its own address and up. */
  #bringUp(netlink: Netlink, device: VxlanDevice, address: Address, prefixLen: number): void {
    device.index = this.#ensureDevice(netlink, device);
    netlink.linkSetMtu(device.index, device.mtu);
    netlink.addressReplace(device.index, address, prefixLen);
    netlink.linkSetUp(device.index);
  }

  /** Creates the device, or adopts one that already matches; recreates a stale one. */
  #ensureDevice(netlink: Netlink, device: VxlanDevice): number {
    const backend = this.#config.backend;
    const existing = netlink.link(device.name);
    if (existing) {
      if (this.#fits(device, existing, this.#underlayIndex) && existing.mac === device.mac) {
        log.info("adopting the existing vxlan device", { device: device.name, mac: device.mac });
        return existing.index;
      }
      if (existing.kind !== "vxlan") {
        throw new Error(
          `device ${device.name} exists and is not a vxlan device (remove it, or choose another name with --device)`,
        );
      }
      log.warn("recreating the vxlan device: its settings differ from the config", {
        device: device.name,
      });
      netlink.linkDelete(existing.index);
    }
    this.#removeClashingDevice(netlink, device);
    netlink.linkCreate({
      name: device.name,
      kind: "vxlan",
      mtu: device.mtu,
      mac: device.mac,
      vxlan: {
        vni: backend.vni,
        link: this.#underlayIndex,
        local: device.local,
        learning: false,
        port: backend.port,
      },
    });
    const index = interfaceIndex(device.name);
    if (index === 0) throw new Error(`device ${device.name} vanished right after it was created`);
    return index;
  }

  /**
   * A peer needs a unicast VtepMAC for each family it is reached on: the zero MAC is
   * vxlan's default destination. IPv4 needs BackendData (unless the network is
   * IPv6-only); a peer with an IPv6 subnet needs BackendV6Data and a PublicIPv6.
   */
  checkPeer(peer: Lease): string | undefined {
    if (this.#v4 && peer.subnet.prefixLen > 0) {
      const problem = vtepProblem(peer.attrs.backendData, "BackendData", this.#config.backend.vni);
      if (problem) return problem;
    }
    if (this.#v6 && peer.ipv6Subnet) {
      const problem = vtepProblem(
        peer.attrs.backendV6Data,
        "BackendV6Data",
        this.#config.backend.vni,
      );
      if (problem) return problem;
      if (peer.attrs.publicIpv6 === undefined) return "PublicIPv6 is missing";
    }
    return undefined;
  }

  /** Every host's VTEP MAC must be its own, per device: FDB entries are keyed by MAC. */
  claims(peer: Lease): string[] {
    const mac = this.#v4 ? vtepMac(peer.attrs.backendData) : undefined;
    const mac6 = this.#v6 ? vtepMac(peer.attrs.backendV6Data) : undefined;
    return [
      ...(typeof mac === "string" ? [`VtepMAC ${mac.toLowerCase()}`] : []),
      ...(typeof mac6 === "string" ? [`IPv6 VtepMAC ${mac6.toLowerCase()}`] : []),
    ];
  }

  /**
   * The kernel refuses a second vxlan device with our VNI, port and local address. One
   * left by flanneld (flannel.<VNI> or flannel-v6.<VNI>, when --device names ours
   * otherwise) goes; anyone else's is an error naming it.
   */
  #removeClashingDevice(netlink: Netlink, device: VxlanDevice): void {
    const backend = this.#config.backend;
    const clash = netlink.links().find((link) =>
      link.name !== device.name && link.kind === "vxlan" && link.vxlan?.vni === backend.vni &&
      link.vxlan.port === backend.port && link.vxlan.local === device.local
    );
    if (!clash) return;
    if (!clash.name.startsWith(device.flanneldPrefix)) {
      throw new Error(
        `device ${clash.name} already carries VNI ${backend.vni} on port ${backend.port} ` +
          `(remove it, or give overlay that name with --device)`,
      );
    }
    netlink.linkDelete(clash.index);
    log.info("removed flanneld's vxlan device: overlay's carries its VNI now", {
      device: clash.name,
      ours: device.name,
    });
  }

  addPeer(peer: Lease): void {
    if (!this.#netlink) return;
    this.#state?.setPeer(peerKey(peer), [...this.#entries4(peer), ...this.#entries6(peer)]);
  }

  removePeer(peer: Lease): void {
    this.#state?.removePeer(peerKey(peer));
  }

  batchPeers(work: () => void): void {
    if (this.#state) this.#state.batch(work);
    else work();
  }

  #entries4(peer: Lease): KernelEntry[] {
    const device = this.#v4;
    const subnet = peer.subnet;
    if (!device || subnet.prefixLen === 0) return [];
    const publicIp = peer.attrs.publicIp;
    const mac = (vtepMac(peer.attrs.backendData) as string).toLowerCase();
    const mask = prefixMask(this.#underlay.prefixLen);
    const onSegment = ((publicIp & mask) >>> 0) === ((this.#underlay.ip & mask) >>> 0);
    return this.#peerEntries(device, {
      subnet: subnet.ip,
      prefixLen: subnet.prefixLen,
      publicIp,
      mac,
      direct: this.#config.backend.directRouting && onSegment,
      fdbKey: `fdb ${mac}`,
    });
  }

  #entries6(peer: Lease): KernelEntry[] {
    const device = this.#v6;
    const subnet = peer.ipv6Subnet;
    const publicIp = peer.attrs.publicIpv6;
    if (!device || !subnet || publicIp === undefined) return [];
    const mac = (vtepMac(peer.attrs.backendV6Data) as string).toLowerCase();
    const own = this.#underlay.ipv6Addresses?.[0];
    const mask = prefixMask6(this.#underlay.ipv6PrefixLen ?? 128);
    const onSegment = own !== undefined && (publicIp & mask) === (own & mask);
    return this.#peerEntries(device, {
      subnet: subnet.ip,
      prefixLen: subnet.prefixLen,
      publicIp,
      mac,
      direct: this.#config.backend.directRouting && onSegment,
      fdbKey: `fdb6 ${mac}`,
    });
  }

  /**
   * A peer's entries on one device: neighbour, FDB and onlink route through the peer's
   * VTEP (its subnet's base address), or with DirectRouting a route via its public
   * address on the underlay.
   */
  #peerEntries<A extends Address>(
    device: VxlanDevice,
    peer: {
      subnet: A;
      prefixLen: number;
      publicIp: A;
      mac: string;
      direct: boolean;
      fdbKey: string;
    },
  ): KernelEntry[] {
    const netlink = this.#netlink!;
    if (peer.direct) {
      return [routeEntry(netlink, {
        dst: peer.subnet,
        prefixLen: peer.prefixLen,
        linkIndex: this.#underlayIndex,
        gateway: peer.publicIp,
      })];
    }
    const vtep = peer.subnet; // the peer's subnet base address stands for its VTEP
    // Neighbour and FDB entries live on our own device: writing them is always a replace.
    const { index } = device;
    const { mac, publicIp } = peer;
    const neighbour = () => netlink.neighbourReplaceRequest(index, vtep, mac, OVERLAY_PROTOCOL);
    const fdb = () => netlink.fdbReplaceRequest(index, mac, publicIp);
    return [
      {
        key: `neigh ${formatAddress(vtep)}`,
        fingerprint: mac,
        add: neighbour,
        replace: neighbour,
        remove: () => netlink.neighbourDeleteRequest(index, vtep),
      },
      {
        key: peer.fdbKey,
        fingerprint: formatAddress(publicIp),
        add: fdb,
        replace: fdb,
        remove: () => netlink.fdbDeleteRequest(index, mac, publicIp),
      },
      routeEntry(netlink, {
        dst: peer.subnet,
        prefixLen: peer.prefixLen,
        linkIndex: device.index,
        gateway: vtep,
        onlink: true,
      }),
    ];
  }

  /**
   * What this backend owns in the kernel: routes with our mark to peer subnets (on our
   * devices, or on the underlay with DirectRouting), and the neighbour and FDB entries on
   * our devices; and the routes of others that sit where a peer route would go.
   */
  #snapshot(): KernelSnapshot {
    const netlink = this.#netlink!;
    const config = this.#config;
    const adopting = this.#adopting;
    this.#adopting = false; // flanneld's underlay routes are taken over at the first look only
    const actual = emptySnapshot();
    const v4 = this.#v4;
    if (v4) {
      snapshotRoutes(
        netlink,
        actual,
        (route) => route.prefixLen === config.subnetLen && netContains(config.network, route.dst),
        (route) =>
          route.linkIndex === v4.index ||
          (adopting && isFlanneldRoute(route, this.#underlayIndex)),
      );
      this.#snapshotNeighbours(netlink, actual, v4, "fdb");
    }
    const v6 = this.#v6;
    const pool = config.ipv6;
    if (v6 && pool) {
      snapshotRoutes6(
        netlink,
        actual,
        (route) => route.prefixLen === pool.subnetLen && net6Contains(pool.network, route.dst),
        (route) =>
          route.linkIndex === v6.index ||
          (adopting && isFlanneldRoute(route, this.#underlayIndex)),
      );
      this.#snapshotNeighbours(netlink, actual, v6, "fdb6");
    }
    return actual;
  }

  /** The permanent neighbour entries and the FDB entries on one of our devices. */
  #snapshotNeighbours(
    netlink: Netlink,
    actual: KernelSnapshot,
    device: VxlanDevice,
    fdbKey: string,
  ): void {
    const v6 = device.family === "IPv6";
    for (const n of netlink.neighbours(v6 ? AF_INET6 : AF_INET, device.index)) {
      const ip = v6 ? n.ip6 : n.ip;
      if (ip === undefined || !(n.state & NUD_PERMANENT)) continue;
      actual.ours.set(`neigh ${formatAddress(ip)}`, {
        fingerprint: n.mac ?? "",
        marked: true,
        remove: () => netlink.neighbourDeleteRequest(device.index, ip),
      });
    }
    for (const f of netlink.neighbours(AF_BRIDGE, device.index)) {
      const dst = v6 ? f.ip6 : f.ip;
      const mac = f.mac;
      if (!mac || dst === undefined) continue;
      actual.ours.set(`${fdbKey} ${mac}`, {
        fingerprint: formatAddress(dst),
        marked: true,
        remove: () => netlink.fdbDeleteRequest(device.index, mac, dst),
      });
    }
  }

  stop(): Promise<void> {
    this.#state?.close();
    this.#netlink = undefined;
    this.#state = undefined;
    return Promise.resolve();
  }

  /** Both devices (the IPv6 one under moreDevices) and both VtepMAC files. */
  owned(): BackendOwned {
    const [first, second] = [this.#v4, this.#v6].filter((d) => d !== undefined);
    return {
      device: { name: first.name, kind: "vxlan" },
      ...(second ? { moreDevices: [{ name: second.name, kind: "vxlan" }] } : {}),
      files: [first.macFile, ...(second ? [second.macFile] : [])],
    };
  }

  get ownClaims(): string[] {
    return [
      ...(this.#v4 ? [`VtepMAC ${this.#v4.mac}`] : []),
      ...(this.#v6 ? [`IPv6 VtepMAC ${this.#v6.mac}`] : []),
    ];
  }

  /**
   * New random MACs (for every device: the claim that clashed may be either): on the
   * devices if they are up, in the state folder, in backendData and backendV6Data.
   */
  renewIdentity(): boolean {
    for (const device of [this.#v4, this.#v6]) {
      if (!device) continue;
      const old = device.mac;
      device.mac = randomMac();
      if (this.#netlink && device.index !== 0) {
        this.#netlink.linkSetAddress(device.index, device.mac);
        writeFileAtomic(device.macFile, device.mac + "\n").catch((error) =>
          log.warn("cannot keep the new VtepMAC", { path: device.macFile, error: error.message })
        );
      }
      log.info("picked a new VtepMAC", { device: device.name, old, new: device.mac });
    }
    return true;
  }

  observe(): BackendObservation {
    const healthy = [this.#v4, this.#v6].every((device) =>
      !device || device.index === 0 || interfaceIndex(device.name) === device.index
    );
    return { healthy, conflicts: this.#state?.conflicts() ?? [] };
  }

  lastHeard(_peer: Lease): null {
    return null;
  }
}

/**
 * The IPv6 device's local address: the public IPv6 when it is on the interface (as
 * flanneld with --public-ipv6), else the interface's first global IPv6 address (its
 * IfaceV6Addr). A host with none cannot carry IPv6 over vxlan: flanneld refuses too.
 */
function ipv6Local(underlay: Underlay): bigint {
  const addresses = underlay.ipv6Addresses ?? [];
  const publicIpv6 = underlay.publicIpv6;
  if (publicIpv6 !== undefined && addresses.includes(publicIpv6)) return publicIpv6;
  if (addresses.length > 0) return addresses[0];
  throw new UsageError(
    `vxlan: the network has IPv6 but interface ${underlay.name} has no global IPv6 address ` +
      `(give it one, or pick an interface that has one with --iface)`,
  );
}

/** Why a lease's BackendData (or BackendV6Data) cannot name a VTEP, or undefined. */
function vtepProblem(
  data: Record<string, unknown> | undefined,
  field: string,
  ownVni: number,
): string | undefined {
  const mac = vtepMac(data);
  if (typeof mac !== "string") return `${field}.VtepMAC is missing`;
  const problem = macProblem(mac);
  if (problem) return `${field}.VtepMAC ${JSON.stringify(mac)} ${problem}`;
  const vni = data && goField(data, "VNI");
  if (vni !== undefined && (typeof vni !== "number" || !Number.isInteger(vni))) {
    return `${field}.VNI ${JSON.stringify(vni)} is not a number`;
  }
  // Its packets would carry another VNI, which our device drops: an agent that still runs
  // an earlier config (VNI changed in etcd) is skipped and shown, not silently unreachable.
  if (vni !== undefined && vni !== ownVni) {
    return `${field}.VNI ${vni} is not this network's ${ownVni} (one of the two hosts runs an ` +
      `earlier config: restart it)`;
  }
  return undefined;
}

/** The VtepMAC of a BackendData, with its key in any case, as flanneld's decoder reads it. */
function vtepMac(data: Record<string, unknown> | undefined): unknown {
  return data && goField(data, "VtepMAC");
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
