/**
 * One end of the datagram micro-benchmark, run inside a namespace:
 *   deno run -A --unstable-net datagram_peer.ts MODE IP PORT SECONDS
 * MODE: recv-deno | recv-ffi | send-deno | send-ffi. Receivers print the datagram count.
 * Payloads are 1400 bytes, as a full-size overlay packet.
 */
import { Poller } from "../ffi/poll.ts";
import { MessageVector, SEND_FAILED } from "../ffi/message_vector.ts";
import { openUdpSocket, raiseSocketBuffers } from "../ffi/udp_socket.ts";
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
  const poller = new Poller([fd]);
  let count = 0;
  while (performance.now() < deadline) {
    if (poller.wait(100) <= 0) continue;
    while (true) {
      for (let i = 0; i < BATCH; i++) vector.prepareReceive(i);
      const n = vector.receive(fd);
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
    if (vector.send(fd, 0, BATCH) === SEND_FAILED) break;
  }
}
Deno.exit(0);
