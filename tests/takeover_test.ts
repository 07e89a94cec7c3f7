/**
 * Replacing flanneld on a live host, for each backend: three hosts run flanneld (the
 * stand-in in fixtures/flanneld_standin.ts, which does and leaves exactly what flanneld
 * v0.20.2 does and leaves), with containers on bridges made from the subnet file as
 * Docker would. One host switches to overlay with the same flags, then a second (so
 * the first meets an overlay peer too), then the first goes back to flanneld. Through all
 * of it: the subnet and the containers' addresses never change, traffic returns within
 * 2 s of overlay becoming ready, and nothing is duplicated on the host.
 */
import assert from "node:assert/strict";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost } from "../lab/lab.ts";

const STANDIN = new URL("./fixtures/flanneld_standin.ts", import.meta.url).pathname;
const PREFIX = "/coreos.com/network";

/**
 * The stand-in; or, where OVERLAY_TEST_FLANNELD names a flanneld v0.20 binary (built from
 * flannel's source, say), the real flanneld with the same flags.
 */
const REAL_FLANNELD = Deno.env.get("OVERLAY_TEST_FLANNELD");

async function startFlanneld(lab: Lab, host: LabHost) {
  // On a flannel host Docker turned forwarding on; the stand-in plays that part too.
  if (REAL_FLANNELD) await lab.sh(host.ns, "echo 1 > /proc/sys/net/ipv4/ip_forward");
  const process = lab.spawn(
    host.ns,
    REAL_FLANNELD
      ? [
        REAL_FLANNELD,
        `--etcd-endpoints=${lab.etcdEndpoint}`,
        "--iface=eth0",
        `--subnet-file=${host.subnetFile}`,
        "--ip-masq",
      ]
      : [
        "deno",
        "run",
        "-A",
        "--unstable-net",
        STANDIN,
        JSON.stringify({
          etcd: lab.etcdEndpoint,
          publicIp: host.ip,
          subnetFile: host.subnetFile,
          ipMasq: true,
        }),
      ],
  );
  const running = REAL_FLANNELD ? "Running backend" : "flanneld stand-in: running";
  return await waitFor(() => process.log().includes(running) ? process : undefined, {
    timeoutMs: 20_000,
    what: `flanneld stand-in on ${host.name}`,
  }).catch((error) => {
    throw new Error(`${error.message}\n${process.log()}`);
  });
}

/** Milliseconds until `from` pings `to` (retrying), or a failure after `limitMs`. */
async function reachable(lab: Lab, from: LabContainer, to: LabContainer, limitMs: number) {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await lab.ping(from, to.ip, { timeoutS: 0.3 }) !== undefined) {
      return performance.now() - started;
    }
  }
  throw new Error(`${from.name} cannot reach ${to.name} (${to.ip}) within ${limitMs} ms`);
}

/** The host's state as an operator would check it for duplicates and leftovers. */
async function hostLook(lab: Lab, host: LabHost) {
  const run = async (...argv: string[]) => (await lab.exec(host.ns, argv)).stdout;
  const routes = (await run("ip", "-4", "route")).split("\n").filter(Boolean);
  const destinations = routes.map((r) => r.split(" ")[0]);
  return {
    routes,
    duplicateRoutes: destinations.filter((d, i) => destinations.indexOf(d) !== i),
    vxlanDevices: (await run("ip", "-o", "-d", "link", "show", "type", "vxlan")).split("\n")
      .filter(Boolean).length,
    rules: await run("iptables-save"),
  };
}

for (const backend of ["udp", "vxlan", "host-gw"] as const) {
  Deno.test({
    name:
      `${backend}: a live host switches from flanneld to overlay and back; subnets and container addresses stay, traffic returns within 2 s, nothing duplicated`,
    ...INTEGRATION,
    async fn(t) {
      await using lab = await Lab.create();
      await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: backend } });
      const hosts = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
      const flanneld = new Map<LabHost, Awaited<ReturnType<typeof startFlanneld>>>();
      for (const host of hosts) flanneld.set(host, await startFlanneld(lab, host));
      const containers: LabContainer[] = [];
      for (const host of hosts) containers.push(await lab.addContainer(host));
      const [h1, h2] = hosts;
      const [c1, c2, c3] = containers;
      for (const [a, b] of [[c1, c2], [c2, c1], [c1, c3], [c3, c2]]) {
        await reachable(lab, a, b, 5_000); // flanneld's cluster works
      }
      const subnetFile = await Deno.readTextFile(h1.subnetFile);
      const leaseKey = `${PREFIX}/subnets/${(await lab.subnetOf(h1)).replace("/", "-")}`;
      const leaseValue = (await lab.etcdctl("get", leaseKey, "--print-value-only")).stdout;

      const switchToOverlay = async (host: LabHost, container: LabContainer) => {
        await flanneld.get(host)!.stop("SIGTERM");
        lab.startAgent(host, ["--ip-masq", "--iface=eth0"]);
        await lab.waitReady(host);
        const ready = performance.now();
        const peers = containers.filter((c) => c !== container);
        for (const peer of peers) {
          await reachable(lab, peer, container, 2_000);
          await reachable(lab, container, peer, 2_000);
        }
        return performance.now() - ready;
      };

      await t.step("h1 switches: same subnet and lease, traffic back within 2 s", async () => {
        const ms = await switchToOverlay(h1, c1);
        console.log(
          `${backend}: h1's containers reachable both ways ${ms.toFixed(0)} ms after ready`,
        );
        assert.equal(await Deno.readTextFile(h1.subnetFile), subnetFile, "subnet file unchanged");
        assert.equal(
          (await lab.etcdctl("get", leaseKey, "--print-value-only")).stdout,
          leaseValue,
          "the lease (and its VtepMAC) unchanged: peers reprogram nothing",
        );
        assert.equal(
          (await lab.exec(c1.ns, ["ip", "-4", "-o", "addr", "show", "eth0"])).stdout
            .includes(c1.ip),
          true,
          "the container keeps its address",
        );
      });

      await t.step("nothing duplicated, nothing stale, each leftover handled once", async () => {
        const look = await hostLook(lab, h1);
        assert.deepEqual(look.duplicateRoutes, []);
        assert.doesNotMatch(look.rules, /FLANNEL-/, "flanneld's chains are gone");
        assert.equal(
          look.rules.split("\n").filter((l) => / -j MASQUERADE/.test(l)).length,
          2,
          "one masquerade rule set (overlay's), not two",
        );
        const subnets = new Set(
          (await lab.etcdctl("get", "--prefix", `${PREFIX}/subnets/`, "--keys-only")).stdout
            .split("\n").filter(Boolean).map((k) => k.split("/").pop()!.replace("-", "/")),
        );
        for (const route of look.routes.filter((r) => r.startsWith("10.10."))) {
          const dst = route.split(" ")[0];
          assert.ok(
            subnets.has(dst) || dst === "10.10.0.0/16" || route.includes("proto kernel"),
            `no stale route: ${route}`,
          );
        }
        if (backend === "vxlan") assert.equal(look.vxlanDevices, 1, "one vxlan device");
        if (backend !== "udp") {
          // flanneld's peer routes became overlay's: marked, and no conflict reported.
          await waitFor(
            async () =>
              (await hostLook(lab, h1)).routes.filter((r) => /^10\.10\.\d+\.0\/24 via/.test(r))
                .every((r) => r.includes("proto 111")),
            { what: "peer routes carrying the mark" },
          );
          const state = (await lab.status(h1)).state!;
          assert.deepEqual(state.conflicts ?? [], []);
        }
        const log = lab.agent(h1)!.log();
        assert.equal(
          log.split("\n").filter((l) => l.includes("taking over from flanneld")).length,
          1,
        );
        assert.equal(
          log.split("\n").filter((l) => l.includes("removed flanneld's iptables chains")).length,
          1,
        );
        if (backend === "vxlan") {
          assert.match(log, /adopting the existing vxlan device device=flannel\.1/);
        }
      });

      await t.step("h2 switches too, next to an overlay host and a flanneld host", async () => {
        const ms = await switchToOverlay(h2, c2);
        console.log(
          `${backend}: h2's containers reachable both ways ${ms.toFixed(0)} ms after ready`,
        );
        assert.deepEqual((await hostLook(lab, h2)).duplicateRoutes, []);
      });

      await t.step("h1 goes back to flanneld: same subnet, traffic returns", async () => {
        assert.equal(await lab.agent(h1)!.stop(), 0);
        const cleanup = await lab.overlay(h1.ns, [
          "cleanup",
          ...lab.agentFlags(h1),
          "--ip-masq",
          "--iface=eth0",
          "--keep-lease",
        ]);
        assert.equal(cleanup.code, 0, cleanup.stderr);
        assert.equal(await Deno.readTextFile(h1.subnetFile), subnetFile, "the subnet file is kept");
        flanneld.set(h1, await startFlanneld(lab, h1));
        for (const peer of [c2, c3]) {
          await reachable(lab, peer, c1, 5_000);
          await reachable(lab, c1, peer, 5_000);
        }
        assert.equal(await Deno.readTextFile(h1.subnetFile), subnetFile, "same subnet again");
        const look = await hostLook(lab, h1);
        assert.deepEqual(look.duplicateRoutes, []);
        assert.doesNotMatch(look.rules, /OVERLAY-/, "overlay's rules went with cleanup");
      });
    },
  });
}
