/**
 * One end of the datagram micro-benchmark, run inside a namespace:
 *   deno run -A --unstable-net datagram_peer.ts MODE IP PORT SECONDS
 * MODE: recv-deno | recv-ffi | send-deno | send-ffi. Receivers print the datagram count.
 * Payloads are 1400 bytes, as a full-size overlay packet.
 */
import { errno, libc } from "../ffi/libc.ts";
import { MessageVector, openUdpSocket, raiseSocketBuffers } from "../ffi/socket.ts";
import { parseIp4 } from "../lib/ip.ts";

const [mode, ipText, portText, secondsText] = Deno.args;
const port = Number(portText);
const seconds = Number(secondsText);
const deadline = performance.now() + seconds * 1000;
const PAYLOAD = 1400;
const BATCH = 64;

if (mode === "recv-deno") {
  const conn = Deno.listenDatagram({ hostname: "0.0.0.0", port, transport: "udp" });
  const buffer = new Uint8Array(65536);
  let count = 0;
  const timer = setTimeout(() => conn.close(), seconds * 1000);
  try {
    while (true) {
      await conn.receive(buffer);
      count++;
    }
  } catch { /* closed at the deadline */ }
  clearTimeout(timer);
  console.log(count);
} else if (mode === "recv-ffi") {
  const fd = openUdpSocket(0, port);
  raiseSocketBuffers(fd, 8 << 20);
  const vector = new MessageVector(BATCH, 2048);
  const pollFd = new Uint8Array(8);
  new DataView(pollFd.buffer).setInt32(0, fd, true);
  new DataView(pollFd.buffer).setInt16(4, 1, true);
  let count = 0;
  while (performance.now() < deadline) {
    if (libc().poll(pollFd, 1, 100) <= 0) continue;
    while (true) {
      for (let i = 0; i < BATCH; i++) vector.prepareReceive(i);
      const n = libc().recvmmsg(fd, vector.headers, BATCH, 0, null);
      if (n <= 0) break;
      count += n;
    }
  }
  console.log(count);
} else if (mode === "send-deno") {
  const conn = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
  const payload = new Uint8Array(PAYLOAD);
  const to = { transport: "udp" as const, hostname: ipText, port };
  while (performance.now() < deadline) await conn.send(payload, to);
  conn.close();
} else if (mode === "send-ffi") {
  const fd = openUdpSocket(0, 0);
  raiseSocketBuffers(fd, 8 << 20);
  const vector = new MessageVector(BATCH, 2048);
  for (let i = 0; i < BATCH; i++) {
    vector.setAddress(i, parseIp4(ipText)!, port);
    vector.setLength(i, PAYLOAD);
  }
  while (performance.now() < deadline) {
    if (libc().sendmmsg(fd, vector.headers, BATCH, 0) < 0 && errno() !== 11) break;
  }
}
Deno.exit(0);
