/**
 * The seeds' scenarios with real container runtimes, on hosts as they come: LXC
 * containers on `overlay run --bridge lxcbr0`, and Docker configured from
 * `overlay docker-opts`, one container per host reaching the other across the overlay.
 * A runtime that cannot run here is reported as ignored with the reason, never as passed.
 */
import assert from "node:assert/strict";
import {
  containerPings,
  dockerUnavailable,
  lxcUnavailable,
  startDockerd,
  startLxcContainer,
} from "./containers.ts";
import { INTEGRATION } from "./helpers.ts";
import { Lab, UNDERLAY_PREFIX } from "../lab/lab.ts";
import { parseEnvFile } from "../lib/subnet_file.ts";

const lxcMissing = await lxcUnavailable();
const dockerMissing = await dockerUnavailable();
if (lxcMissing) console.error(`LXC test ignored: ${lxcMissing}`);
if (dockerMissing) console.error(`Docker test ignored: ${dockerMissing}`);

for (const backend of ["udp", "vxlan"] as const) {
  Deno.test({
    name:
      `LXC on ${backend}: a container on one host pings a container on another, and with --ip-masq the underlay's gateway`,
    ignore: lxcMissing !== undefined,
    ...INTEGRATION,
    async fn() {
      await using lab = await Lab.create();
      await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: backend } });
      const hosts = [await lab.addHost(), await lab.addHost()];
      for (const host of hosts) lab.startAgent(host, ["--bridge=lxcbr0", "--ip-masq"]);
      const containers = [];
      for (const host of hosts) {
        const line = await lab.waitReady(host);
        const env = parseEnvFile(await Deno.readTextFile(host.subnetFile));
        const [gateway, prefixLen] = env.get("FLANNEL_SUBNET")!.split("/");
        const mtu = env.get("FLANNEL_MTU")!;
        // The flannel charm's health line, then the agent's own fields.
        assert.match(
          line,
          new RegExp(
            `^ready lxcbr:${gateway} subnet:${gateway}/${prefixLen} mtu:${mtu} backend:${backend} peers:\\d bridge:lxcbr0$`,
          ),
        );
        const address = gateway.replace(/\.1$/, ".2");
        containers.push(
          await startLxcContainer(lab, host, {
            bridge: "lxcbr0",
            address: `${address}/${prefixLen}`,
            gateway,
            mtu,
          }),
        );
      }
      const [c1, c2] = containers;
      assert.ok(await containerPings(c1, c2.ip), `${c1.name} → ${c2.ip}`);
      assert.ok(await containerPings(c2, c1.ip), `${c2.name} → ${c1.ip}`);
      assert.ok(
        await containerPings(c1, `${UNDERLAY_PREFIX}.1`),
        "ip-masq: the container reaches the underlay's gateway",
      );
    },
  });
}

Deno.test({
  name:
    "Docker: dockerd configured from overlay docker-opts; a container on one host reaches a container on another",
  ignore: dockerMissing !== undefined,
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "vxlan" } });
    const hosts = [await lab.addHost(), await lab.addHost()];
    for (const host of hosts) lab.startAgent(host, ["--ip-masq"]);
    const containers = [];
    for (const host of hosts) {
      await lab.waitReady(host);
      const opts = await lab.overlay(host.ns, ["docker-opts", `--subnet-file=${host.subnetFile}`]);
      assert.equal(opts.code, 0, opts.stderr);
      const flags = opts.stdout.trim().split(" ");
      assert.ok(flags.includes("--ip-masq=false"), opts.stdout); // overlay masquerades, not Docker
      const daemon = await startDockerd(lab, host, flags);
      const container = await daemon.run(`${host.name}-c1`);
      const subnet = parseEnvFile(await Deno.readTextFile(host.subnetFile)).get("FLANNEL_SUBNET")!;
      assert.ok(
        container.ip.startsWith(subnet.replace(/\.1\/\d+$/, ".")),
        `${container.ip} is in ${subnet}`,
      );
      containers.push(container);
    }
    const [c1, c2] = containers;
    assert.ok(await containerPings(c1, c2.ip), `${c1.name} → ${c2.ip}`);
    assert.ok(await containerPings(c2, c1.ip), `${c2.name} → ${c1.ip}`);
  },
});
