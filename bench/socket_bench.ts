/**
 * Why the udp data path drives its socket through FFI: datagrams per second between two
 * namespaces, Deno.listenDatagram (one async op per datagram) against FFI
 * sendmmsg/recvmmsg in batches of 64, side by side in one run. 1400-byte payloads.
 */
import { Lab } from "../lab/lab.ts";

const PEER = new URL("./datagram_peer.ts", import.meta.url).pathname;

export interface SocketBenchResult {
  listenDatagram: { datagramsPerSecond: number; gbps: number };
  ffiBatched: { datagramsPerSecond: number; gbps: number };
}

export async function socketBench(seconds = 3): Promise<SocketBenchResult> {
  await using lab = await Lab.create({ prefix: "ovsock" });
  const a = await lab.addHost();
  const b = await lab.addHost();
  const run = async (kind: "deno" | "ffi") => {
    const receiver = lab.spawn(b.ns, [
      "deno",
      "run",
      "-A",
      "--unstable-net",
      PEER,
      `recv-${kind}`,
      b.ip,
      "9999",
      String(seconds + 1),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await lab.exec(a.ns, [
      "deno",
      "run",
      "-A",
      "--unstable-net",
      PEER,
      `send-${kind}`,
      b.ip,
      "9999",
      String(seconds),
    ]);
    await receiver.child.status;
    const count = Number(receiver.log().trim().split("\n").pop());
    const datagramsPerSecond = count / seconds;
    return { datagramsPerSecond, gbps: (datagramsPerSecond * 1400 * 8) / 1e9 };
  };
  return { listenDatagram: await run("deno"), ffiBatched: await run("ffi") };
}
