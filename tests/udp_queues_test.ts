/**
 * The udp backend on more than one core: a multi-queue TUN with one Worker and one
 * SO_REUSEPORT socket per queue. Traffic flows, a TCP flow keeps its order (no retransmit
 * storm), counters are the sums of every Worker's, and persistent TUNs of either kind left
 * by an earlier run are adopted.
 */
import assert from "node:assert/strict";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab } from "../lab/lab.ts";
import { udpPair } from "../lab/udp_pair.ts";
import { createCounterBuffer, readCounters } from "../lib/udp/counters.ts";

const TUN_MODULE = new URL("../ffi/tun.ts", import.meta.url).href;

Deno.test("counters of several data-path Workers are read as their sums", () => {
  const buffers = [createCounterBuffer(), createCounterBuffer()];
  new Float64Array(buffers[0])[0] = 5; // tx_packets
  new Float64Array(buffers[1])[0] = 7;
  new Float64Array(buffers[1])[2] = 3; // rx_packets
  const counters = readCounters(buffers);
  assert.equal(counters.tx_packets, 12);
  assert.equal(counters.rx_packets, 3);
  assert.equal(readCounters(buffers[0]).tx_packets, 5);
});

Deno.test({
  name: "with two queues traffic flows, 4 TCP streams keep their order and counters sum",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "mq" });
    const [a, b] = await udpPair(lab, { env: { OVERLAY_QUEUES: "2" }, name: "q" });
    assert.match(a.process.log(), /queues=2 multiQueue=true/);
    assert.match(a.process.log(), /2 worker threads on a 2-queue TUN/);
    const flags = await lab.exec(a.ns, ["cat", "/sys/class/net/flannel0/tun_flags"]);
    assert.ok(parseInt(flags.stdout, 16) & 0x0100, `multi-queue TUN: ${flags.stdout}`);
    const ping = await lab.exec(a.ns, ["ping", "-n", "-q", "-c", "3", "-i", "0.2", b.tunIp]);
    assert.equal(ping.code, 0, ping.stdout);

    const server = lab.spawn(b.ns, ["iperf3", "-s", "-1"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const run = await lab.exec(a.ns, ["iperf3", "-c", b.tunIp, "-t", "3", "-P", "4", "-J"]);
    await server.stop("SIGKILL");
    assert.equal(run.code, 0, run.stdout.slice(-300));
    const end = JSON.parse(run.stdout).end;
    const bytes = end.sum_received.bytes;
    const segments = bytes / 1400;
    assert.ok(bytes > 10_000_000, `iperf3 moved ${bytes} bytes`);
    // Reordering across queues would show as retransmits (dup ACKs, fast retransmit).
    assert.ok(
      end.sum_sent.retransmits < segments / 100,
      `${end.sum_sent.retransmits} retransmits for ~${segments.toFixed(0)} segments`,
    );

    // Each side's counters (written by its host script every 100 ms) are the sums of both
    // Workers': every segment iperf3 moved was sent and received once.
    // The host scripts write their counters every 100 ms: wait until both files agree.
    const [sent, received] = await waitFor(() => {
      const [tx, rx] = [a.counters(), b.counters()];
      return Math.abs(rx.rx_packets - tx.tx_packets) <= 10 && [tx, rx];
    }, { what: "the receiver's rx_packets to match the sender's tx_packets" });
    assert.ok(sent.tx_packets >= segments * 0.9, `tx ${sent.tx_packets} vs ~${segments}`);
    assert.equal(received.drop_malformed + received.drop_spoofed_source, 0);
  },
});

Deno.test({
  name: "a persistent TUN of either kind is adopted; a held multi-queue one is refused",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create({ prefix: "mq" });
    const ns = await lab.addNamespace("t");
    // A single-queue device as an older run leaves it (ip tuntap makes it persistent).
    await lab.ip(ns, "tuntap", "add", "dev", "mq0", "mode", "tun");
    const script = `
      import { openTun } from "${TUN_MODULE}";
      import { closeFd } from "${new URL("../ffi/libc.ts", import.meta.url).href}";
      const out = [];
      const many = openTun("mq0", { queues: 2 }); // made again with queues
      out.push(many.multiQueue, many.fds.length);
      let refused = "";
      await new Deno.Command("ip", { args: ["link", "set", "mq0", "up"] }).output();
      try { openTun("mq0", { queues: 2 }); } catch (e) { refused = e.message; }
      out.push(refused);
      for (const fd of many.fds) closeFd(fd);
      const one = openTun("mq0"); // a multi-queue device adopted with one queue
      out.push(one.multiQueue, one.fds.length);
      closeFd(one.fd);
      console.log(JSON.stringify(out));
    `;
    const result = await lab.exec(ns, ["deno", "eval", script]);
    assert.equal(result.code, 0, result.stderr);
    const [multiQueue, queues, refused, adopted, adoptedQueues] = JSON.parse(result.stdout);
    assert.equal(multiQueue, true);
    assert.equal(queues, 2);
    assert.match(refused, /TUNSETIFF mq0: EBUSY .*another process holds this device/);
    assert.equal(adopted, true);
    assert.equal(adoptedQueues, 1);
    const link = await lab.exec(ns, ["ip", "-d", "link", "show", "mq0"]);
    assert.match(link.stdout, /multi_queue/, "still there, persistent, multi-queue");
  },
});
