/**
 * Security: memory safety where lengths come back from the kernel, spoofed and
 * colliding peers, hostile keys that would stall new hosts, TLS trust, files written
 * where someone else may have planted a link, and what cleanup may touch.
 */
import assert from "node:assert/strict";
import { INTEGRATION, tempDir, waitFor } from "./helpers.ts";
import { Lab } from "../lab/lab.ts";
import { writeFileAtomic } from "../lib/atomic_file.ts";
import { EtcdClient } from "../lib/etcd_client.ts";

Deno.test({
  name:
    "batched udp path: a packet longer than its buffer slot is dropped and counted, never sent with other bytes",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    lab.startAgent(h1, [], { env: { OVERLAY_OFFLOAD: "0" } });
    lab.startAgent(h2);
    await lab.waitReady(h1);
    await lab.waitReady(h2);
    const target = (await lab.subnetOf(h2)).replace("0/24", "0");
    assert.notEqual(await lab.ping(h1, target), undefined);
    // Someone raises the device MTU past the agent's 1536-byte slots.
    await lab.ip(h1.ns, "link", "set", "flannel0", "mtu", "4000");
    const capture = lab.spawn(h2.ns, [
      "tcpdump",
      "-i",
      "eth0",
      "-n",
      "-l",
      // A datagram to the overlay port that had to be fragmented: more than one packet's worth.
      "udp dst port 8285 and (ip[6:2] & 0x3fff != 0 or ip[2:2] > 1500)",
    ]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await lab.exec(h1.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-s", "3000", target]);
    await waitFor(async () => (await lab.counters(h1)).drop_oversized >= 3, {
      what: "oversized packets counted",
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await capture.stop("SIGINT");
    assert.doesNotMatch(capture.log(), /IP \d/, `nothing oversized on the wire:\n${capture.log()}`);
    assert.notEqual(await lab.ping(h1, target), undefined, "ordinary traffic goes on");
  },
});

Deno.test("files are written through a fresh, exclusive temp file: a planted link redirects nothing", async () => {
  await using dir = await tempDir();
  const target = `${dir}/subnet.env`;
  const victim = `${dir}/victim`;
  await Deno.writeTextFile(victim, "precious\n");
  // Links where a predictable temp name (path.pid.N.tmp) would be, and at the target itself.
  for (let n = 0; n < 50; n++) await Deno.symlink(victim, `${target}.${Deno.pid}.${n}.tmp`);
  await Deno.symlink(victim, target);
  await writeFileAtomic(target, "FLANNEL_NETWORK=10.10.0.0/16\n");
  assert.equal(await Deno.readTextFile(victim), "precious\n");
  assert.equal((await Deno.lstat(target)).isSymlink, false);
  assert.equal(await Deno.readTextFile(target), "FLANNEL_NETWORK=10.10.0.0/16\n");
  const leftovers = [...Deno.readDirSync(`${dir}`)].filter((e) =>
    e.name.endsWith(".tmp") && !e.isSymlink
  );
  assert.deepEqual(leftovers, []);
});

Deno.test({
  name:
    "udp shutdown under full load: the data path stops at once, and its descriptors close only after",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const [h1, h2] = await lab.readyHosts(2);
    const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
    const server = lab.spawn(c2.ns, ["iperf3", "-s", "-1"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const client = lab.spawn(c1.ns, [
      "iperf3",
      "-c",
      c2.ip,
      "-t",
      "10",
      "-u",
      "-b",
      "0",
      "-l",
      "1400",
    ]);
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // the data path is never idle now
    const started = performance.now();
    assert.equal(await lab.agent(h1)!.stop("SIGTERM"), 0);
    const ms = performance.now() - started;
    await client.stop("SIGKILL");
    await server.stop("SIGKILL");
    const log = lab.agent(h1)!.log();
    assert.match(log, /udp data path stopped/);
    assert.doesNotMatch(log, /did not stop/);
    console.log(`stopped under load in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 800, `stopped in ${ms.toFixed(0)} ms`);
  },
});

Deno.test({
  name:
    "values from etcd reach no terminal unescaped: leases, status and the log show control characters escaped",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const h1 = await lab.readyHost();
    const evil = "\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e";
    await lab.etcdctl(
      "put",
      "/coreos.com/network/subnets/10.10.0.0-24",
      JSON.stringify({ PublicIP: "172.31.254.99", BackendType: evil }),
    );
    await lab.etcdctl("put", `/coreos.com/network/subnets/10.10.0.64-26${evil}`, "{}");
    await waitFor(() => (lab.agent(h1)!.log().match(/skipping a lease/g) ?? []).length >= 2, {
      what: "both leases skipped",
    });
    const leases = await lab.overlay(lab.underlayNs, [
      "leases",
      `--etcd-endpoints=${lab.etcdEndpoint}`,
    ]);
    const leasesJson = await lab.overlay(lab.underlayNs, [
      "leases",
      "--json",
      `--etcd-endpoints=${lab.etcdEndpoint}`,
    ]);
    await new Promise((resolve) => setTimeout(resolve, 2_200)); // a heartbeat writes the state
    const status = await lab.overlay(h1.ns, [
      "status",
      `--subnet-file=${h1.subnetFile}`,
      `--state-dir=${h1.stateDir}`,
    ]);
    const outputs: [string, string][] = [
      ["leases", leases.stdout + leases.stderr],
      ["leases --json", leasesJson.stdout],
      ["status", status.stdout],
      ["log", lab.agent(h1)!.log()],
    ];
    for (const [what, text] of outputs) {
      // deno-lint-ignore no-control-regex
      assert.doesNotMatch(text, /[\u001b\u0007\u009b\u202e]/, what);
    }
    assert.match(leases.stdout, /\\u001b\]0;pwned/, "shown, escaped");
    assert.match(status.stdout, /skipped leases/);
    // The JSON is escaped once, as JSON: read back, it is the value in etcd exactly.
    const listed = JSON.parse(leasesJson.stdout).leases as { subnet: string; backend: string }[];
    assert.equal(listed.find((l) => l.subnet === "10.10.0.0/24")?.backend, evil);
    // And leases says the agents pass it over, as they do.
    assert.match(leases.stderr, /agents do not route to 10\.10\.0\.0\/24: backend type/);
  },
});

Deno.test({
  name: "a flapping hostile key makes one log line a minute, not one per change",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const h1 = await lab.readyHost();
    const key = "/coreos.com/network/subnets/10.10.0.0-24";
    for (let i = 0; i < 30; i++) {
      const ip = i % 2 === 0 ? "127.0.0.1" : "0.0.0.1";
      await lab.etcdctl("put", key, `{"PublicIP":"${ip}"}`);
    }
    await lab.etcdctl("put", key, "not json");
    await new Promise((resolve) => setTimeout(resolve, 500));
    const lines = lab.agent(h1)!.log().split("\n").filter((line) => line.includes(key));
    assert.equal(lines.length, 1, lines.join("\n"));
  },
});

Deno.test({
  name: "a watch response line that never ends is cut off at a bound, not buffered forever",
  ...INTEGRATION,
  async fn() {
    // Not etcd: a server that answers a watch with one endless line.
    const chunk = new TextEncoder().encode("a".repeat(1 << 20));
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
      new Response(
        new ReadableStream({
          pull(controller) {
            controller.enqueue(chunk);
          },
        }),
      ));
    const endpoint = `http://127.0.0.1:${server.addr.port}`;
    const client = new EtcdClient({ endpoints: [endpoint], prefix: "/p" });
    try {
      const started = performance.now();
      await assert.rejects(
        client.watch(
          { key: "/p/", startRevision: "1", signal: AbortSignal.timeout(30_000) },
          () => {},
        ),
        /watch response line longer than \d+ characters/,
      );
      console.log(`cut off after ${(performance.now() - started).toFixed(0)} ms`);
    } finally {
      client.close();
      await server.shutdown();
    }
  },
});

Deno.test({
  name:
    "cleanup removes what this agent made for this network only: not another network's, not an operator's",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const blueConfig = await lab.overlay(lab.underlayNs, [
      "config",
      "set",
      `--etcd-endpoints=${lab.etcdEndpoint}`,
      "--etcd-prefix=/blue/network",
      `{"Network":"10.20.0.0/16","Backend":{"Type":"vxlan","VNI":7}}`,
    ]);
    assert.equal(blueConfig.code, 0, blueConfig.stderr);
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    const blue = (host: typeof h1) => [
      "--etcd-prefix=/blue/network",
      `--subnet-file=${host.stateDir}/blue.env`,
      `--state-dir=${host.stateDir}`,
    ];
    // The operator's own bridge, which the agent adopts, and a route of theirs in the Network.
    await lab.ip(h1.ns, "link", "add", "lxcbr0", "type", "bridge");
    await lab.ip(h1.ns, "route", "add", "10.10.250.0/24", "via", "172.31.254.98", "dev", "eth0");
    for (const host of [h1, h2]) {
      lab.startAgent(host, ["--bridge=lxcbr0"]);
      lab.startAgent(host, blue(host), { name: `${host.name}-blue` });
    }
    for (const host of [h1, h2]) {
      await lab.waitReady(host);
      const wait = await lab.overlay(host.ns, ["wait", "--timeout=20s", ...blue(host).slice(1)]);
      assert.equal(wait.code, 0, wait.stderr);
    }
    const look = async () => ({
      links: (await lab.exec(h1.ns, ["ip", "-o", "link", "show"])).stdout
        .split("\n").map((l) => l.split(":")[1]?.trim()).filter(Boolean).sort(),
      routes: (await lab.exec(h1.ns, ["ip", "route"])).stdout,
      files: [...Deno.readDirSync(h1.stateDir)].map((e) => e.name).sort(),
    });
    await waitFor(async () => (await look()).routes.includes("10.20."), { what: "blue's routes" });
    assert.equal(await lab.agent(h1)!.stop(), 0);
    const before = await look();
    const cleanup = await lab.overlay(h1.ns, ["cleanup", ...lab.agentFlags(h1), "--bridge=lxcbr0"]);
    assert.equal(cleanup.code, 0, cleanup.stderr);
    const after = await look();
    assert.deepEqual(after.links, before.links.filter((l) => l !== "flannel0"));
    assert.match(after.routes, /10\.10\.250\.0\/24 via 172\.31\.254\.98 dev eth0/);
    assert.doesNotMatch(after.routes, /flannel0/);
    assert.equal(
      after.routes.split("\n").filter((l) => l.includes("10.20.")).join("\n"),
      before.routes.split("\n").filter((l) => l.includes("10.20.")).join("\n"),
      "blue's routes stay",
    );
    assert.ok(after.files.some((f) => f.endsWith(".vtep-mac")), "blue's VtepMAC stays");
    assert.ok(after.files.some((f) => f.includes("blue.env")), "blue's state stays");
    const bridge = (await lab.exec(h1.ns, ["ip", "-o", "-4", "addr", "show", "lxcbr0"])).stdout;
    assert.equal(bridge, "", "the operator's bridge stays, without the agent's address");
    assert.match(
      (await lab.exec(h1.ns, ["ip", "-o", "link", "show", "lxcbr0"])).stdout,
      / mtu 1500 /,
      "and with its own MTU back (the agent had set the overlay's, 1472)",
    );
    assert.match(cleanup.stdout, /MTU 1472 of lxcbr0 \(back to 1500\)/);
    const health = await lab.overlay(h1.ns, ["--health", ...blue(h1).slice(1)]);
    assert.equal(health.code, 0, `blue still up: ${health.stdout}`);
  },
});
