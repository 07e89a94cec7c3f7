/**
 * What operators look at: /metrics scraped and parsed by a real Prometheus text-format
 * parser, `overlay status` with its peer table, and logs as JSON lines with drops
 * summarised, never one line per packet.
 */
import assert from "node:assert/strict";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab } from "../lab/lab.ts";

const SEND_DATAGRAMS = new URL("./fixtures/send_datagrams.ts", import.meta.url).pathname;

interface Family {
  name: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}

Deno.test({
  name: "metrics, status and logs of a running agent",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    lab.startAgent(h1, ["--healthz-ip=127.0.0.1", "--healthz-port=9912", "--log-format=json"]);
    lab.startAgent(h2);
    await lab.waitReady(h1);
    await lab.waitReady(h2);
    const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
    assert.notEqual(await lab.ping(c1, c2.ip, { count: 3 }), undefined);
    const rogue = await lab.addHost();
    await lab.exec(rogue.ns, [
      "deno",
      "run",
      "-A",
      SEND_DATAGRAMS,
      JSON.stringify({ to: h1.ip, port: 8285, kind: "random", count: 500 }),
    ]);

    await t.step("/metrics parses as Prometheus text and says what happened", async () => {
      const scrape = await lab.exec(h1.ns, [
        "deno",
        "eval",
        `const r = await fetch("http://127.0.0.1:9912/metrics"); console.log(r.headers.get("content-type")); console.log(await r.text());`,
      ]);
      const [contentType, ...body] = scrape.stdout.split("\n");
      assert.match(contentType, /^text\/plain; version=0\.0\.4/);
      const families: Family[] = parsePrometheusTextFormat(body.join("\n"));
      const family = (name: string) => families.find((f) => f.name === name)!;
      const value = (name: string, labels: Record<string, string> = {}) =>
        Number(
          family(name).metrics.find((m) =>
            Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
          )!.value,
        );
      for (const f of families) {
        if (f.name.endsWith("_total")) assert.equal(f.type, "COUNTER", f.name);
        assert.match(f.name, /^overlay_[a-z_]+$/);
      }
      assert.ok(value("overlay_packets_total", { direction: "tx" }) >= 3);
      assert.ok(value("overlay_packets_total", { direction: "rx" }) >= 3);
      assert.ok(value("overlay_bytes_total", { direction: "rx" }) >= 3 * 84);
      assert.equal(value("overlay_dropped_packets_total", { reason: "unknown_peer" }), 500);
      for (const reason of ["spoofed_source", "malformed", "no_route", "queue_full"]) {
        assert.equal(value("overlay_dropped_packets_total", { reason }), 0, reason);
      }
      assert.equal(value("overlay_peers"), 1); // h2; the rogue host holds no lease
      assert.ok(value("overlay_lease_expiry_seconds") > 86_000);
      assert.equal(value("overlay_etcd_up"), 1);
      assert.equal(value("overlay_data_path_info", { backend: "udp" }), 1);
      assert.equal(value("overlay_ready"), 1);
    });

    await t.step(
      "overlay status shows the peers and when the data path last heard from them",
      async () => {
        // The agent refreshes its state every 2 s.
        const lastHeard = await waitFor(async () => {
          const peers = (await lab.status(h1)).state?.peerList ?? [];
          return peers.find((p) => p.publicIp === h2.ip)?.lastHeard || undefined;
        }, { timeoutMs: 5000, what: "peer heard from" });
        assert.ok(Date.now() - lastHeard < 30_000, "heard recently");
        assert.equal((await lab.status(h1)).ready, true);
        const text = await lab.overlay(h1.ns, ["status", ...lab.hostFlags(h1)]);
        assert.match(text.stdout, /SUBNET\s+PUBLIC-IP\s+BACKEND\s+SINCE\s+HEARD/);
        assert.match(
          text.stdout,
          new RegExp(`${h2.ip.replaceAll(".", "\\.")}\\s+udp\\s+\\S+ ago\\s+\\S+ ago`),
        );
      },
    );

    await t.step(
      "a peer heard from for the first time shows as heard in status within a second",
      async () => {
        const h3 = await lab.readyHost();
        const c3 = await lab.addContainer(h3);
        const heard = async () =>
          (await lab.status(h1)).state?.peerList?.find((p) => p.publicIp === h3.ip)?.lastHeard;
        await waitFor(async () => (await heard()) === 0, { what: "h3 known, never heard" });
        assert.notEqual(await lab.ping(c3, c1.ip), undefined);
        const pinged = Date.now();
        await waitFor(async () => ((await heard()) ?? 0) > 0, {
          timeoutMs: 1_000,
          intervalMs: 20,
          what: "h3 shown as heard",
        });
        console.log(`status showed the first contact ${Date.now() - pinged} ms after the ping`);
      },
    );

    await t.step(
      "logs are one JSON event per line, and 500 bad datagrams make one line, not 500",
      async () => {
        await waitFor(() => lab.agent(h1)!.log().includes("data path dropped packets"), {
          timeoutMs: 5000,
          what: "drop summary",
        });
        const lines = lab.agent(h1)!.log().trim().split("\n");
        for (const line of lines) {
          const event = JSON.parse(line);
          assert.equal(typeof event.time, "string");
          assert.match(event.level, /^(debug|info|warn|error)$/);
          assert.equal(typeof event.msg, "string");
        }
        const drops = lines.map((l) => JSON.parse(l)).filter((e) =>
          e.msg === "data path dropped packets"
        );
        assert.equal(drops.length, 1);
        assert.equal(drops[0].unknown_peer, 500);
      },
    );
  },
});
