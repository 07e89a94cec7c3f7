/**
 * The command line as an operator uses it, against a real etcd: config, leases, run,
 * --health, wait, and every bad input giving one line, the right exit code, and no change.
 */
import assert from "node:assert/strict";
import {
  freePort,
  INTEGRATION,
  overlay,
  spawnOverlay,
  startEtcd,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { HEARTBEAT_STALE_MS } from "../lib/health.ts";

let prefixCounter = 0;

Deno.test("every command answers --help with exit 0", async () => {
  for (
    const args of [
      ["--help"],
      ["run", "--help"],
      ["--health", "--help"],
      ["wait", "--help"],
      ["config", "--help"],
      ["config", "set", "--help"],
      ["config", "get", "--help"],
      ["leases", "--help"],
      ["status", "--help"],
      ["cleanup", "--help"],
      ["docker-opts", "--help"],
      ["systemd-unit", "--help"],
      ["cloud-init", "--help"],
    ]
  ) {
    const result = await overlay(args);
    assert.equal(result.code, 0, args.join(" "));
    assert.match(result.stdout, /Usage: overlay/);
  }
  const version = await overlay(["version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^overlay \d+\.\d+\.\d+\n$/);
});

Deno.test("bad flags are one-line errors with exit code 2", async () => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [
      ["run", "--no-such-flag"],
      /^overlay: overlay run: unknown flag --no-such-flag \(see: overlay run --help\)$/m,
    ],
    [
      ["run", "--ipmasq"],
      /unknown flag --ipmasq \(did you mean --ip-masq\?\) \(see: overlay run --help\)/,
    ],
    [
      ["run", "--etcd-endpoint=x"],
      /unknown flag --etcd-endpoint \(did you mean --etcd-endpoints\?\)/,
    ],
    [["cleanup", "--ip-mask"], /did you mean --ip-masq\?.*see: overlay cleanup --help/],
    [
      ["status", "--iface=eth0"],
      /--iface is not a flag of this command \(see: overlay status --help\)/,
    ],
    [["run", "--iface"], /--iface needs a value \(see: overlay run --help\)/],
    [["run", "--ip-masq=maybe"], /--ip-masq="maybe" is not a boolean/],
    [
      ["run", "--kube-subnet-mgr"],
      /--kube-subnet-mgr is flanneld's Kubernetes mode, which overlay does not implement/,
    ],
    [["run", "--iface-regex", "("], /--iface-regex "\(" is not a regular expression/],
    [["run", "--subnet-lease-renew-margin", "1440"], /out of range \(use 1\.\.1439 minutes/],
    [["run", "-v", "loud"], /-v "loud" is not a verbosity/],
    [["run", "--etcd-endpoints", "not a url"], /--etcd-endpoints "not a url" is not an etcd URL/],
    [["run", "--etcd-endpoints", "ftp://127.0.0.1:2379"], /is not an etcd URL/],
    [["run", "--subnet-lease-ttl", "soon"], /--subnet-lease-ttl "soon" is not a duration/],
    [["run", "--healthz-port", "99999"], /--healthz-port "99999" is not a port/],
    [["run", "--public-ip", "1.2.3"], /--public-ip "1.2.3" is not an IPv4 address/],
    [["run", "--log-format", "xml"], /--log-format "xml" is not a format \(use text or json\)/],
    [["run", "--log-level", "loud"], /--log-level "loud" is not a level/],
    [["run", "--etcd-certfile", "/x.pem"], /--etcd-certfile and --etcd-keyfile go together/],
    [["run", "--etcd-prefix", "coreos"], /--etcd-prefix "coreos" must start with "\/"/],
    [["wait", "--timeout", "0s"], /--timeout "0s" must be more than 0/],
    [
      ["run", "--subnet-lease-renew-margin", "0"],
      /--subnet-lease-renew-margin "0" must be more than 0/,
    ],
    [["config", "frob"], /unknown action "frob"/],
    [["leases", "extra"], /unexpected argument "extra"/],
  ];
  for (const [args, message] of cases) {
    const result = await overlay(args);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  }
  const kube = await overlay(["run"], { env: { FLANNELD_KUBE_SUBNET_MGR: "true" } });
  assert.equal(kube.code, 2, kube.stderr);
  assert.match(
    kube.stderr,
    /FLANNELD_KUBE_SUBNET_MGR=true is flanneld's Kubernetes mode, which overlay does not implement/,
  );
  // A bad value from an environment variable names the variable too.
  const fromEnv = await overlay(["run"], { env: { OVERLAY_HEALTHZ_PORT: "abc" } });
  assert.equal(fromEnv.code, 2, fromEnv.stderr);
  assert.match(
    fromEnv.stderr,
    /^overlay: --healthz-port "abc" is not a port \(use 1\.\.65535\) \(from OVERLAY_HEALTHZ_PORT\)\n$/,
  );
});

Deno.test({
  name:
    "an unreachable etcd: commands name it with the fix; run waits, says why, and SIGTERM leaves nothing",
  ...INTEGRATION,
  async fn() {
    await using dir = await tempDir();
    const closedPort = freePort();
    const endpoint = `http://127.0.0.1:${closedPort}`;
    const refused =
      `etcd at ${endpoint}: connection refused \\(is etcd running\\? see --etcd-endpoints\\)`;
    const leases = await overlay(["leases", `--etcd-endpoints=${endpoint}`]);
    assert.equal(leases.code, 1);
    assert.match(leases.stderr, new RegExp(`^overlay: ${refused}\n$`));

    const locate = [`--subnet-file=${dir}/subnet.env`, `--state-dir=${dir}/state`];
    // lo, and an address from TEST-NET-1 to publish (a loopback one is refused): it never
    // gets as far as sending anything.
    const healthPort = freePort();
    const agent = spawnOverlay([
      "run",
      `--etcd-endpoints=${endpoint}`,
      "--iface=lo",
      "--public-ip=192.0.2.1",
      "--healthz-ip=127.0.0.1",
      `--healthz-port=${healthPort}`,
      ...locate,
    ]);
    try {
      const health = await waitFor(async () => {
        const result = await overlay(["--health", ...locate]);
        return /waiting-for-etcd/.test(result.stdout) ? result : undefined;
      }, { timeoutMs: 10_000, what: "health to say waiting-for-etcd" });
      assert.equal(health.code, 1);
      assert.match(health.stdout, new RegExp(`^not-ready waiting-for-etcd: ${refused}\n$`));
      // The health server answers from the start, with the same reason.
      const get = async (path: string) => {
        const response = await fetch(`http://127.0.0.1:${healthPort}${path}`);
        return [response.status, await response.text()] as const;
      };
      assert.deepEqual(await get("/healthz"), [200, "ok\n"]);
      const [status, body] = await get("/readyz");
      assert.equal(status, 503);
      assert.match(body, new RegExp(`^not-ready waiting-for-etcd: ${refused}\n$`));
      assert.match((await get("/metrics"))[1], /^overlay_etcd_up 0$/m);
      await new Promise((resolve) => setTimeout(resolve, 2_500)); // a few retries
      const said = agent.log().split("\n").filter((line) => line.includes("waiting-for-etcd"));
      assert.equal(said.length, 1, `the reason is logged once, not per try:\n${agent.log()}`);
      // Past the heartbeat's staleness bound, health still gives the reason: the agent
      // beats while it waits.
      await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_STALE_MS + 1_000));
      const later = await overlay(["--health", ...locate]);
      assert.match(later.stdout, new RegExp(`^not-ready waiting-for-etcd: ${refused}\n$`));
    } finally {
      assert.equal(await agent.stop("SIGTERM"), 0);
    }
    assert.deepEqual([...Deno.readDirSync(`${dir}`)], [], "nothing left behind");
  },
});

Deno.test({
  name: "the command line against a real etcd",
  ...INTEGRATION,
  async fn(t) {
    await using etcd = await startEtcd();
    const prefix = () => `/cli${++prefixCounter}/coreos.com/network`;
    const etcdFlags = (p: string) => [`--etcd-endpoints=${etcd.endpoint}`, `--etcd-prefix=${p}`];
    const storedKeys = async (p: string) => (await etcd.client.getAll().prefix(p).keys()).sort();

    await t.step(
      "config set validates, writes flannel's JSON, and config get reads it back",
      async () => {
        const p = prefix();
        const set = await overlay([
          "config",
          "set",
          ...etcdFlags(p),
          `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","Port":7890}}`,
        ]);
        assert.equal(set.code, 0, set.stderr);
        assert.equal(
          await etcd.client.get(`${p}/config`).string(),
          `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","Port":7890}}`,
        );
        const get = await overlay(["config", "get", ...etcdFlags(p)]);
        assert.equal(
          get.stdout,
          `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","Port":7890}}\n`,
        );
        const fromStdin = await overlay(["config", "set", ...etcdFlags(p), "-"], {
          stdin: `{"Network":"10.10.0.0/16"}`,
        });
        assert.equal(fromStdin.code, 0, fromStdin.stderr);
      },
    );

    await t.step("config get without a config says how to set one (exit 2)", async () => {
      const result = await overlay(["config", "get", ...etcdFlags(prefix())]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /key not found \(set it with: overlay config set/);
    });

    await t.step("an invalid config is refused and the stored one is unchanged", async () => {
      const p = prefix();
      await overlay(["config", "set", ...etcdFlags(p), `{"Network":"10.10.0.0/16"}`]);
      for (
        const bad of [
          `{"Network":`,
          `{"Network":"10.10.0.0/16","SubnetLen":40}`,
          `{"Network":"10.10.0.0/16","SubnetMin":"10.10.1.7"}`,
        ]
      ) {
        const result = await overlay(["config", "set", ...etcdFlags(p), bad]);
        assert.equal(result.code, 2, bad);
        assert.match(result.stderr, /^overlay: Network config: .*nothing was written\n$/);
      }
      assert.equal(await etcd.client.get(`${p}/config`).string(), `{"Network":"10.10.0.0/16"}`);
    });

    await t.step(
      "run without a config, or with a malformed one, waits and says why; stopped, it leaves nothing",
      async () => {
        await using dir = await tempDir();
        const p = prefix();
        const locate = [`--subnet-file=${dir}/s.env`, `--state-dir=${dir}/state`];
        const agent = spawnOverlay([
          "run",
          ...etcdFlags(p),
          "--iface=lo",
          "--public-ip=192.0.2.1",
          ...locate,
        ]);
        const healthSays = (pattern: RegExp) =>
          waitFor(async () => {
            const { stdout } = await overlay(["--health", ...locate]);
            return pattern.test(stdout) ? stdout : undefined;
          }, { what: `health to match ${pattern}` });
        try {
          assert.equal(
            await healthSays(/^not-ready waiting-for-config/),
            "not-ready waiting-for-config\n",
          );
          await etcd.client.put(`${p}/config`).value(`{"Network":"banana"}`);
          assert.match(
            await healthSays(/^not-ready invalid-config/),
            /^not-ready invalid-config: "Network" "banana" is not an IPv4 CIDR .*\(fix it with: overlay config set\)\n$/,
          );
        } finally {
          assert.equal(await agent.stop("SIGTERM"), 0);
        }
        assert.deepEqual([...Deno.readDirSync(`${dir}`)], []);
        assert.deepEqual(await storedKeys(`${p}/subnets/`), []);
      },
    );

    await t.step("an exhausted network exits 1 with the reason and takes no lease", async () => {
      await using dir = await tempDir();
      const p = prefix();
      await etcd.client.put(`${p}/config`).value(
        `{"Network":"10.10.0.0/16","SubnetMin":"10.10.1.0","SubnetMax":"10.10.1.0"}`,
      );
      await etcd.client.put(`${p}/subnets/10.10.1.0-24`).value(
        `{"PublicIP":"192.0.2.99","PublicIPv6":null}`,
      );
      const result = await overlay([
        "run",
        ...etcdFlags(p),
        "--iface=lo",
        "--public-ip=192.0.2.1",
        `--subnet-file=${dir}/s.env`,
        `--state-dir=${dir}/state`,
      ]);
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /overlay: Network 10.10.0.0\/16 is exhausted: all 1 \/24 subnets from 10.10.1.0 to 10.10.1.0 are leased/,
      );
      assert.deepEqual([...Deno.readDirSync(`${dir}`)].map((e) => e.name), []);
      assert.deepEqual(await storedKeys(`${p}/subnets/`), [`${p}/subnets/10.10.1.0-24`]);
    });

    await t.step("wait times out with the reason when no agent runs", async () => {
      await using dir = await tempDir();
      const started = Date.now();
      const result = await overlay([
        "wait",
        "--timeout=1s",
        `--subnet-file=${dir}/s.env`,
        `--state-dir=${dir}`,
      ]);
      assert.equal(result.code, 1);
      assert.ok(Date.now() - started >= 1000);
      assert.match(result.stderr, /^overlay wait: not ready after 1s: daemon not running/);
    });

    await t.step("flags have OVERLAY_* environment mirrors", async () => {
      const p = prefix();
      await etcd.client.put(`${p}/config`).value(`{"Network":"10.30.0.0/16"}`);
      const result = await overlay(["config", "get"], {
        env: { OVERLAY_ETCD_ENDPOINTS: etcd.endpoint, OVERLAY_ETCD_PREFIX: p },
      });
      assert.equal(result.stdout, `{"Network":"10.30.0.0/16"}\n`);
    });
  },
});
