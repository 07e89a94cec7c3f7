/**
 * `overlay run` as an operator sees it, on hosts in network namespaces with a real
 * etcd: readiness and --health, the subnet file and lease values, restarts, lease loss,
 * /healthz and /readyz, and config changes while hosts hold leases.
 */
import assert from "node:assert/strict";
import { exitCodeWithin, INTEGRATION, waitFor } from "./helpers.ts";
import { Lab } from "../lab/lab.ts";

Deno.test({
  name: "the agent on hosts in namespaces",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const h1 = await lab.addHost();
    const h2 = await lab.addHost();

    await t.step("before the agent runs, --health says not-ready and wait times out", async () => {
      const health = await lab.health(h1);
      assert.equal(health.code, 1);
      assert.match(health.stdout, /^not-ready daemon not running/);
      const wait = await lab.overlay(h1.ns, [
        "wait",
        "--timeout=1s",
        `--subnet-file=${h1.subnetFile}`,
        `--state-dir=${h1.stateDir}`,
      ]);
      assert.equal(wait.code, 1);
      assert.match(wait.stderr, /^overlay wait: not ready after 1s: daemon not running/);
    });

    await t.step(
      "run leases a subnet, writes the subnet file and reports ready with its peers",
      async () => {
        await lab.etcdctl("put", "/coreos.com/network/subnets/10.10.200.0-24", "not json"); // someone's garbage
        lab.startAgent(h1);
        lab.startAgent(h2);
        const line = await lab.waitReady(h1);
        await lab.waitReady(h2);
        assert.match(line, /^ready subnet:10\.10\.\d+\.1\/24 mtu:1472 backend:udp peers:\d$/);
        await waitFor(async () => (await lab.health(h1)).stdout.includes("peers:1"), {
          what: "peers:1",
        });
        const subnet = /subnet:(\S+)/.exec(line)![1];
        assert.equal(
          await Deno.readTextFile(h1.subnetFile),
          `FLANNEL_NETWORK=10.10.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n`,
        );
        const key = `/coreos.com/network/subnets/${subnet.replace(".1/", ".0-")}`;
        const stored = await lab.etcdctl("get", key, "--print-value-only");
        assert.equal(stored.stdout.trim(), `{"PublicIP":"${h1.ip}","PublicIPv6":null}`);
        assert.match(
          lab.agent(h1)!.log(),
          /WARN {2}skipping a lease in etcd: it is not used for routing key=.*10.10.200.0-24 reason="value is not JSON"/,
        );
        await lab.etcdctl("del", "/coreos.com/network/subnets/10.10.200.0-24");

        const table = await lab.overlay(lab.underlayNs, [
          "leases",
          `--etcd-endpoints=${lab.etcdEndpoint}`,
        ]);
        assert.match(table.stdout, /^SUBNET\s+PUBLIC-IP\s+BACKEND\s+EXPIRES-IN\s+RESERVATION\n/);
        assert.match(
          table.stdout,
          new RegExp(`${subnet.replace(".1/", ".0/")}\\s+${h1.ip}\\s+udp\\s+23h59m\\s+no`),
        );
        // Sorted as addresses; a lease no agent routes to is named with why.
        for (const key of ["10.10.9.0-24", "10.10.100.0-24", "10.99.0.0-24"]) {
          await lab.etcdctl(
            "put",
            `/coreos.com/network/subnets/${key}`,
            `{"PublicIP":"172.31.254.90","BackendType":"udp"}`,
          );
        }
        const sorted = await lab.overlay(lab.underlayNs, [
          "leases",
          `--etcd-endpoints=${lab.etcdEndpoint}`,
        ]);
        const order = sorted.stdout.split("\n").map((line) => line.split(/\s+/)[0])
          .filter((cell) => ["10.10.9.0/24", "10.10.100.0/24", "10.99.0.0/24"].includes(cell));
        assert.deepEqual(order, ["10.10.9.0/24", "10.10.100.0/24", "10.99.0.0/24"]);
        assert.match(sorted.stderr, /agents do not route to 10\.99\.0\.0\/24: /);
        assert.doesNotMatch(sorted.stderr, /10\.10\.9\.0/);
        for (const key of ["10.10.9.0-24", "10.10.100.0-24", "10.99.0.0-24"]) {
          await lab.etcdctl("del", `/coreos.com/network/subnets/${key}`);
        }
      },
    );

    await t.step("changing Network while leases exist is refused without --force", async () => {
      const refused = await lab.overlay(lab.underlayNs, [
        "config",
        "set",
        `--etcd-endpoints=${lab.etcdEndpoint}`,
        `{"Network":"10.20.0.0/16"}`,
      ]);
      assert.equal(refused.code, 2);
      assert.match(
        refused.stderr,
        /Refusing to change Network 10.10.0.0\/16 → 10.20.0.0\/16 while 2 lease\(s\) exist.*--force/,
      );
      const other = await lab.overlay(lab.underlayNs, [
        "config",
        "set",
        `--etcd-endpoints=${lab.etcdEndpoint}`,
        `{"Network":"10.10.0.0/16","SubnetMax":"10.10.250.0","Backend":{"Type":"udp"}}`,
      ]);
      assert.equal(other.code, 0, "other fields may change while leases exist");
    });

    await t.step("/healthz answers while alive and /readyz once ready", async () => {
      const h3 = await lab.readyHost(["--healthz-ip=127.0.0.1", "--healthz-port=9911"]);
      const probe =
        `for (const p of ["/healthz", "/readyz"]) { const r = await fetch("http://127.0.0.1:9911" + p); console.log(r.status, (await r.text()).trim()); }`;
      const result = await lab.exec(h3.ns, ["deno", "eval", probe]);
      const [healthz, readyz] = result.stdout.trim().split("\n");
      assert.equal(healthz, "200 ok");
      assert.match(readyz, /^200 ready subnet:10\.10\.\d+\.1\/24 mtu:1472 backend:udp peers:2$/);
      assert.equal(await lab.agent(h3)!.stop(), 0);
    });

    await t.step("a restarted agent keeps its subnet", async () => {
      const before = await Deno.readTextFile(h2.subnetFile);
      assert.equal(await lab.agent(h2)!.stop(), 0);
      assert.match(lab.agent(h2)!.log(), /stopped; the lease is kept/);
      lab.startAgent(h2);
      await lab.waitReady(h2);
      assert.equal(await Deno.readTextFile(h2.subnetFile), before);
      assert.match(lab.agent(h2)!.log(), /reusing this host's existing lease/);
    });

    await t.step("a killed agent is not-ready even though its state file says ready", async () => {
      const agent = lab.agent(h2)!;
      await agent.stop("SIGKILL");
      const health = await lab.health(h2);
      assert.equal(health.code, 1);
      assert.match(
        health.stdout,
        /^not-ready (daemon not running \(pid \d+ has exited\)|device flannel0 missing)\n$/,
      );
      lab.startAgent(h2);
      await lab.waitReady(h2);
    });

    await t.step(
      "an agent whose lease an admin deletes says 'lease lost' and exits 1",
      async () => {
        const subnet = /FLANNEL_SUBNET=(\S+)/.exec(await Deno.readTextFile(h1.subnetFile))![1];
        await lab.etcdctl("del", `/coreos.com/network/subnets/${subnet.replace(".1/", ".0-")}`);
        const agent = lab.agent(h1)!;
        const code = await exitCodeWithin(agent.child, 5000);
        assert.equal(code, 1, agent.log());
        assert.match(agent.log(), /lease lost: this host no longer owns its subnet/);
        assert.equal((await lab.health(h1)).code, 1);
      },
    );
  },
});
