/**
 * Inner UDP segmentation offload end to end: a container sends UDP with UDP_SEGMENT (one
 * 14,000-byte super-packet per send), the TUN hands the agent the super-packets whole
 * (TUN_F_USO4), and the agent cuts them into ordinary inner packets: every datagram on the
 * underlay is one inner packet ≤ the MTU, and the receiving container gets every segment,
 * intact. With OVERLAY_USO=0 the kernel cuts them before the TUN instead.
 */
import assert from "node:assert/strict";
import { INTEGRATION } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost } from "../lab/lab.ts";
import { checkCapture } from "../lab/pcap.ts";

const GSO_UDP = new URL("./fixtures/gso_udp.ts", import.meta.url).pathname;
const SUPER_PACKETS = 100;
const SEGMENTS = 10;

/** Sends the burst from c1 to c2; what c2 received, and what crossed flannel0 and the wire. */
async function burst(lab: Lab, [h1, h2]: LabHost[], c1: LabContainer, c2: LabContainer) {
  const dir = Deno.makeTempDirSync();
  const tun = lab.spawn(h1.ns, ["tcpdump", "-i", "flannel0", "-n", "-w", `${dir}/tun.pcap`]);
  // On the receiving host. Between namespaces a UDP_SEGMENT send stays one skb up to the
  // receiver (a NIC would cut it): whole captures let checkCapture walk every datagram.
  const wire = lab.spawn(h2.ns, [
    "tcpdump",
    "-i",
    "eth0",
    "-n",
    "-s",
    "65535",
    "-w",
    `${dir}/wire.pcap`,
    "udp port 8285",
  ]);
  const receiver = lab.spawn(c2.ns, [
    "deno",
    "run",
    "-A",
    "--unstable-net",
    GSO_UDP,
    "recv",
    "9999",
    "4",
  ]);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const sent = await lab.exec(c1.ns, [
    "deno",
    "run",
    "-A",
    GSO_UDP,
    "send",
    c2.ip,
    "9999",
    String(SUPER_PACKETS),
    String(SEGMENTS),
    "1400",
  ]);
  assert.deepEqual(JSON.parse(sent.stdout), { sent: SUPER_PACKETS });
  await receiver.child.status;
  await new Promise((resolve) => setTimeout(resolve, 200));
  await tun.stop("SIGINT");
  await wire.stop("SIGINT");
  const received = JSON.parse(receiver.log().trim().split("\n").at(-1)!);
  const largestOnTun = largestPacket(await Deno.readFile(`${dir}/tun.pcap`));
  const onWire = checkCapture(await Deno.readFile(`${dir}/wire.pcap`), 8285, 1472);
  Deno.removeSync(dir, { recursive: true });
  return { received, largestOnTun, onWire };
}

/** The largest original length of a packet in a pcap file. */
function largestPacket(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = view.getUint32(0, true) === 0xa1b2c3d4;
  let largest = 0;
  for (let at = 24; at + 16 <= bytes.length;) {
    const captured = view.getUint32(at + 8, little);
    largest = Math.max(largest, view.getUint32(at + 12, little));
    at += 16 + captured;
  }
  return largest;
}

Deno.test({
  name: "a container's UDP GSO burst crosses as ordinary datagrams, cut by the agent (USO)",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create({ prefix: "uo" });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const h1 = await lab.readyHost();
    const h2 = await lab.readyHost();
    const c1 = await lab.addContainer(h1);
    const c2 = await lab.addContainer(h2);
    await lab.ping(c1, c2.ip, { count: 2 });

    await t.step(
      "with USO the TUN hands over super-packets and every segment arrives",
      async () => {
        assert.match((await lab.status(h1)).state!.dataPath!, /TSO \+ USO/);
        const { received, largestOnTun, onWire } = await burst(lab, [h1, h2], c1, c2);
        assert.deepEqual(received, {
          datagrams: SUPER_PACKETS * SEGMENTS,
          bytes: SUPER_PACKETS * SEGMENTS * 1400,
          bad: 0,
        });
        assert.equal(largestOnTun, 20 + 8 + SEGMENTS * 1400, "whole super-packets on flannel0");
        assert.equal(onWire.datagrams, SUPER_PACKETS * SEGMENTS);
        assert.equal(onWire.notOnePacket, 0);
        assert.equal(onWire.overMtu, 0);
        assert.equal(onWire.largestInner, 1428);
      },
    );

    await t.step(
      "with OVERLAY_USO=0 the kernel cuts them before the TUN; the same arrives",
      async () => {
        await lab.agent(h1)!.stop();
        lab.startAgent(h1, [], { env: { OVERLAY_USO: "0" } });
        await lab.waitReady(h1);
        assert.doesNotMatch((await lab.status(h1)).state!.dataPath!, /USO/);
        await lab.ping(c1, c2.ip, { count: 2 });
        const { received, largestOnTun, onWire } = await burst(lab, [h1, h2], c1, c2);
        assert.equal(received.datagrams, SUPER_PACKETS * SEGMENTS);
        assert.equal(received.bad, 0);
        assert.ok(largestOnTun <= 1428, `largest on flannel0 ${largestOnTun}`);
        assert.equal(onWire.notOnePacket, 0);
      },
    );
  },
});
