/**
 * Shared setup for the WireGuard tests: hex, a driven clock, and two devices wired
 * to each other through an in-memory "network".
 */
import {
  Device,
  type DeviceOptions,
  DROP,
  RECEIVE_DELIVER,
  RECEIVE_REPLY,
  receiveResult,
  SEND_READY,
  sendResult,
  SLOT_HEADROOM,
  SLOT_TAILROOM,
} from "../lib/wireguard/device.ts";
import { encodeKey } from "../lib/wireguard/keys.ts";
import { generatePrivateKey } from "../lib/wireguard/noise.ts";
import { defaultCryptoProvider } from "../lib/wireguard/crypto.ts";
import { formatIp4, parseIp4 } from "../lib/ip.ts";

/** Bytes of a hex string ("" → empty). */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Lower-case hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A clock the test moves by hand (ms). */
export class DrivenClock {
  now = 1_000_000;
  readonly read = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}

/** A fresh private key, base64. */
export function newPrivateKey(): string {
  return encodeKey(generatePrivateKey(defaultCryptoProvider()));
}

/** One datagram in flight on the in-memory network. */
export interface Datagram {
  bytes: Uint8Array;
  fromIp: number;
  fromPort: number;
  toIp: number;
  toPort: number;
}

/** A device on the in-memory network, with the inner packets delivered to it. */
export class Node {
  readonly device: Device;
  ip: number;
  port: number;
  /** Inner packets the device delivered (copies). */
  readonly inbox: Uint8Array[] = [];
  readonly #net: Network;

  constructor(net: Network, ip: string, port: number, options: Partial<DeviceOptions>) {
    this.#net = net;
    this.ip = parseIp4(ip)!;
    this.port = port;
    this.device = new Device({
      privateKey: options.privateKey ?? newPrivateKey(),
      clock: net.clock.read,
      // Wall time moves with the driven clock, so a device made later stamps later.
      wallClock: () => 1_700_000_000_000 + net.clock.now,
      ...options,
      transmit: (bytes, offset, length, toIp, toPort) =>
        net.post({
          bytes: bytes.slice(offset, offset + length),
          fromIp: this.ip,
          fromPort: this.port,
          toIp,
          toPort,
        }),
    });
  }

  /** "ip:port" */
  get endpoint(): string {
    return `${formatIp4(this.ip)}:${this.port}`;
  }

  /** Encrypts an inner IPv4 packet (routed by its destination) and posts it; returns the action. */
  send(packet: Uint8Array): number {
    const buffer = new Uint8Array(SLOT_HEADROOM + packet.length + SLOT_TAILROOM);
    buffer.set(packet, SLOT_HEADROOM);
    const result = sendResult();
    const action = this.device.encryptPacket(buffer, SLOT_HEADROOM, packet.length, result);
    if (action === SEND_READY) {
      this.#net.post({
        bytes: buffer.slice(result.offset, result.offset + result.length),
        fromIp: this.ip,
        fromPort: this.port,
        toIp: result.ip,
        toPort: result.port,
      });
    }
    return action;
  }
}

/** An in-memory UDP network between Nodes, with a driven clock. */
export class Network {
  readonly clock = new DrivenClock();
  readonly nodes: Node[] = [];
  readonly queue: Datagram[] = [];
  /** Every datagram posted, for tests that replay or tamper with them. */
  readonly log: Datagram[] = [];
  /** When set, datagrams for which it returns false are lost. */
  filter: ((datagram: Datagram) => boolean) | undefined;

  add(ip: string, port: number, options: Partial<DeviceOptions> = {}): Node {
    const node = new Node(this, ip, port, options);
    this.nodes.push(node);
    return node;
  }

  post(datagram: Datagram): void {
    this.log.push({ ...datagram, bytes: datagram.bytes.slice() });
    if (!this.filter || this.filter(datagram)) this.queue.push(datagram);
  }

  /** Delivers queued datagrams (and the replies they cause) until none is left. */
  pump(limit = 10_000): number {
    let steps = 0;
    const result = receiveResult();
    while (this.queue.length > 0 && steps++ < limit) {
      const datagram = this.queue.shift()!;
      const node = this.nodes.find((n) => n.ip === datagram.toIp && n.port === datagram.toPort);
      if (!node) continue;
      const bytes = datagram.bytes;
      const action = node.device.handleDatagram(
        bytes,
        0,
        bytes.length,
        datagram.fromIp,
        datagram.fromPort,
        result,
      );
      if (action === RECEIVE_DELIVER) {
        node.inbox.push(bytes.slice(result.offset, result.offset + result.length));
      } else if (action === RECEIVE_REPLY) {
        this.post({
          bytes: bytes.slice(result.offset, result.offset + result.length),
          fromIp: node.ip,
          fromPort: node.port,
          toIp: result.ip,
          toPort: result.port,
        });
      } else if (action === DROP) {
        // Counted by the device; tests read the counters.
      }
    }
    return steps;
  }

  /** Advances the clock in steps of `stepMs`, ticking every device and pumping the network. */
  run(ms: number, stepMs = 100): void {
    for (let t = 0; t < ms; t += stepMs) {
      this.clock.advance(Math.min(stepMs, ms - t));
      for (const node of this.nodes) node.device.tick();
      this.pump();
    }
  }
}

/**
 * Two nodes configured as each other's peer, "a" owning 10.10.1.0/24 on 192.0.2.1:51820
 * and "b" owning 10.10.2.0/24 on 192.0.2.2:51820 (addresses only inside the in-memory
 * network). Options apply to both devices.
 */
export function pair(
  options: { psk?: string; deviceA?: Partial<DeviceOptions>; deviceB?: Partial<DeviceOptions> } =
    {},
): { net: Network; a: Node; b: Node } {
  const net = new Network();
  const a = net.add("192.0.2.1", 51820, options.deviceA);
  const b = net.add("192.0.2.2", 51820, options.deviceB);
  a.device.addPeer({
    publicKey: b.device.publicKey,
    endpoint: b.endpoint,
    allowedIps: ["10.10.2.0/24"],
    presharedKey: options.psk,
  });
  b.device.addPeer({
    publicKey: a.device.publicKey,
    endpoint: a.endpoint,
    allowedIps: ["10.10.1.0/24"],
    presharedKey: options.psk,
  });
  return { net, a, b };
}

/** An IPv4 ICMP echo request or reply with a valid header checksum. */
export function icmpEcho(
  source: string,
  destination: string,
  options: { reply?: boolean; id?: number; sequence?: number; payload?: number } = {},
): Uint8Array<ArrayBuffer> {
  const payload = options.payload ?? 56;
  const total = 20 + 8 + payload;
  const packet = new Uint8Array(total);
  const view = new DataView(packet.buffer);
  packet[0] = 0x45;
  view.setUint16(2, total);
  view.setUint16(4, options.sequence ?? 1);
  packet[8] = 64;
  packet[9] = 1;
  view.setUint32(12, parseIp4(source)!);
  view.setUint32(16, parseIp4(destination)!);
  view.setUint16(10, checksum(packet, 0, 20));
  packet[20] = options.reply ? 0 : 8;
  view.setUint16(24, options.id ?? 0x4242);
  view.setUint16(26, options.sequence ?? 1);
  for (let i = 0; i < payload; i++) packet[28 + i] = i & 255;
  view.setUint16(22, checksum(packet, 20, 8 + payload));
  return packet;
}

/** The internet checksum (RFC 1071) of a range. */
export function checksum(bytes: Uint8Array, offset: number, length: number): number {
  let sum = 0;
  for (let i = 0; i + 1 < length; i += 2) sum += (bytes[offset + i] << 8) | bytes[offset + i + 1];
  if (length & 1) sum += bytes[offset + length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
