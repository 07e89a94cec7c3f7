/**
 * How operators run it on hosts: the container bridge, ip-masq, Docker options, the
 * systemd notify protocol and unit, cloud-init user-data checked by cloud-init's own
 * schema checker, cleanup, and two networks on one host.
 */
import assert from "node:assert/strict";
import { UnixDatagramListener } from "./unix_listener.ts";
import { INTEGRATION, overlay, tempDir, waitFor } from "./helpers.ts";
import { Lab, type LabHost, UNDERLAY_PREFIX } from "../lab/lab.ts";

Deno.test({
  name: "bridge and ip-masq on hosts in namespaces",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    for (const host of [h1, h2]) lab.startAgent(host, ["--bridge=lxcbr0", "--ip-masq"]);
    await lab.waitReady(h1);
    await lab.waitReady(h2);

    await t.step(
      "--bridge makes lxcbr0 with the subnet's first address and the overlay MTU",
      async () => {
        const health = await lab.health(h1);
        const gateway = (await lab.subnetOf(h1)).replace(".0/24", ".1");
        assert.match(
          health.stdout,
          new RegExp(
            `^ready lxcbr:${
              gateway.replaceAll(".", "\\.")
            } subnet:${gateway}/24 mtu:1472 backend:udp peers:1 bridge:lxcbr0\n$`,
          ),
        );
        const link = await lab.exec(h1.ns, ["ip", "-o", "link", "show", "lxcbr0"]);
        assert.match(link.stdout, / mtu 1472 /);
        const address = await lab.exec(h1.ns, ["ip", "-o", "-4", "addr", "show", "lxcbr0"]);
        assert.match(address.stdout, new RegExp(`inet ${gateway}/24 `));
      },
    );

    const [c1, c2] = [
      await lab.addContainer(h1, { bridge: "lxcbr0" }),
      await lab.addContainer(h2, { bridge: "lxcbr0" }),
    ];

    await t.step(
      "containers on the bridges of two hosts reach each other, unmasqueraded",
      async () => {
        const capture = lab.spawn(c2.ns, [
          "tcpdump",
          "-i",
          "eth0",
          "-n",
          "-l",
          "-c",
          "1",
          "icmp and icmp[icmptype] == icmp-echo",
        ]);
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.notEqual(await lab.ping(c1, c2.ip), undefined);
        await capture.child.status;
        assert.match(
          capture.log(),
          new RegExp(
            `IP ${c1.ip.replaceAll(".", "\\.")} > ${
              c2.ip.replaceAll(".", "\\.")
            }: ICMP echo request`,
          ),
        );
      },
    );

    await t.step(
      "a container reaches a host outside the overlay, which sees the overlay host's address",
      async () => {
        const outside = `${UNDERLAY_PREFIX}.1`; // the underlay switch: no route to the overlay
        const capture = lab.spawn(lab.underlayNs, [
          "tcpdump",
          "-i",
          "sw",
          "-n",
          "-l",
          "-c",
          "1",
          `icmp and dst host ${outside}`,
        ]);
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.notEqual(await lab.ping(c1, outside), undefined);
        await capture.child.status;
        assert.match(
          capture.log(),
          new RegExp(
            `IP ${h1.ip.replaceAll(".", "\\.")} > ${
              outside.replaceAll(".", "\\.")
            }: ICMP echo request`,
          ),
        );
      },
    );

    await t.step("the rules are flannel's, once: restarting never duplicates them", async () => {
      const rules = async () => (await lab.exec(h1.ns, ["iptables-save"])).stdout;
      const before = await rules();
      assert.equal(
        before.split("\n").filter((l) => /^-A POSTROUTING -j OVERLAY-POST-/.test(l)).length,
        1,
      );
      assert.equal(
        before.split("\n").filter((l) => /^-A FORWARD -j OVERLAY-FWD-/.test(l)).length,
        1,
      );
      assert.equal(before.split("\n").filter((l) => /^-A OVERLAY-POST-/.test(l)).length, 4);
      assert.match(
        before,
        /-A OVERLAY-POST-\w+ -s 10\.10\.0\.0\/16 -d 10\.10\.0\.0\/16 .*-j RETURN/,
      );
      assert.match(
        before,
        /-A OVERLAY-POST-\w+ -s 10\.10\.0\.0\/16 ! -d 224\.0\.0\.0\/4 .*-j MASQUERADE/,
      );
      assert.equal(await lab.agent(h1)!.stop(), 0);
      lab.startAgent(h1, ["--bridge=lxcbr0", "--ip-masq"]);
      await lab.waitReady(h1);
      const count = (text: string) =>
        text.split("\n").filter((l) => /^-A (POSTROUTING|FORWARD|OVERLAY-)/.test(l)).length;
      assert.equal(count(await rules()), count(before));
      assert.match(lab.agent(h1)!.log(), /adopted the container bridge/);
    });

    await t.step("a rule deleted by hand is restored within 10 s", async () => {
      const save = (await lab.exec(h1.ns, ["iptables-save", "-t", "nat"])).stdout;
      const chain = /:(OVERLAY-POST-\w+)/.exec(save)![1];
      await lab.sh(h1.ns, `iptables -t nat -D ${chain} 2`);
      await waitFor(
        async () =>
          (await lab.exec(h1.ns, ["iptables", "-t", "nat", "-S", chain])).stdout.split("\n").filter(
            (l) => l.startsWith("-A"),
          ).length === 4,
        { timeoutMs: 12_000, what: "rule restored" },
      );
    });

    await t.step(
      "restarted without --ip-masq and --bridge: its masquerading goes, the bridge stays on record for cleanup",
      async () => {
        const rules = async () => (await lab.exec(h1.ns, ["iptables-save"])).stdout;
        assert.equal(await lab.agent(h1)!.stop(), 0);
        lab.startAgent(h1);
        await lab.waitReady(h1);
        const after = await rules();
        assert.doesNotMatch(after, /MASQUERADE|OVERLAY-POST-/);
        assert.match(
          after,
          /^-A FORWARD -j OVERLAY-FWD-/m,
          "FORWARD accept rules stay (flannel's default)",
        );
        assert.match(await Deno.readTextFile(h1.subnetFile), /^FLANNEL_IPMASQ=false$/m);
        assert.equal((await lab.exec(h1.ns, ["ip", "link", "show", "lxcbr0"])).code, 0);
        assert.equal(await lab.agent(h1)!.stop(), 0);
        const cleanup = await lab.overlay(h1.ns, ["cleanup", ...lab.agentFlags(h1)]);
        assert.equal(cleanup.code, 0, cleanup.stderr);
        assert.doesNotMatch(await rules(), /OVERLAY-/);
        assert.equal(
          (await lab.exec(h1.ns, ["ip", "link", "show", "lxcbr0"])).code,
          1,
          "the bridge it made is gone",
        );
      },
    );

    await t.step(
      "overlay cleanup removes the rules, bridge, subnet file and lease, and nothing else",
      async () => {
        const subnet = await lab.subnetOf(h2);
        await lab.sh(
          h2.ns,
          "iptables -t nat -N SOMEONE-ELSES && iptables -t nat -A POSTROUTING -j SOMEONE-ELSES",
        );
        assert.equal(await lab.agent(h2)!.stop(), 0);
        const cleanup = await lab.overlay(h2.ns, [
          "cleanup",
          ...lab.agentFlags(h2),
          "--bridge=lxcbr0",
        ]);
        assert.equal(cleanup.code, 0, cleanup.stderr);
        const save = (await lab.exec(h2.ns, ["iptables-save"])).stdout;
        assert.doesNotMatch(save, /OVERLAY-/);
        assert.match(save, /-A POSTROUTING -j SOMEONE-ELSES/);
        assert.equal((await lab.exec(h2.ns, ["ip", "link", "show", "lxcbr0"])).code, 1);
        assert.equal((await lab.exec(h2.ns, ["ip", "link", "show", "eth0"])).code, 0);
        await assert.rejects(Deno.stat(h2.subnetFile));
        const lease = await lab.etcdctl(
          "get",
          `/coreos.com/network/subnets/${subnet.replace("/", "-")}`,
        );
        assert.equal(lease.stdout, "");
      },
    );
  },
});

Deno.test({
  name:
    "overlay cleanup says what it did: with etcd down the lease is NOT released (exit 1) until a run once etcd is back",
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create({ prefix: "cst" });
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const host = await lab.addHost();
    const flags = [...lab.agentFlags(host), "--bridge=lxcbr0", "--ip-masq"];
    lab.startAgent(host, ["--bridge=lxcbr0", "--ip-masq"]);
    await lab.waitReady(host);
    const subnet = await lab.subnetOf(host);
    const key = `/coreos.com/network/subnets/${subnet.replace("/", "-")}`;
    const made = [...Deno.readDirSync(host.stateDir)].find((e) => e.name.endsWith(".made.json"))!;
    const inventory = `${host.stateDir}/${made.name}`;
    // What the agent left, to play the operator's case of a record that outlived its things.
    const saved = {
      inventory: await Deno.readTextFile(inventory),
      subnetFile: await Deno.readTextFile(host.subnetFile),
    };
    const restore = async () => {
      await Deno.writeTextFile(inventory, saved.inventory);
      await Deno.writeTextFile(host.subnetFile, saved.subnetFile);
    };
    const cleanup = () => lab.overlay(host.ns, ["cleanup", ...flags]);
    const leaseValue = async () => (await lab.etcdctl("get", "--print-value-only", key)).stdout;
    assert.equal(await lab.agent(host)!.stop(), 0);

    await t.step("etcd down: the host is cleaned, the lease is NOT released, exit 1", async () => {
      await lab.stopEtcdMember(0);
      const result = await cleanup();
      assert.equal(result.code, 1, result.stdout + result.stderr);
      const lines = result.stdout.trimEnd().split("\n");
      assert.match(
        lines[0],
        /^removed: iptables chains OVERLAY-POST-\w+ and OVERLAY-FWD-\w+, device flannel0, bridge lxcbr0$/,
      );
      assert.equal(
        lines[1],
        `subnet ${subnet} NOT released: etcd at http://${UNDERLAY_PREFIX}.1:2379: connection refused ` +
          "(is etcd running? see --etcd-endpoints) (the lease stays until its TTL runs out; " +
          "run cleanup again when etcd is back)",
      );
      assert.equal(lines[2], `kept for the next cleanup: ${host.subnetFile}, ${inventory}`);
      assert.equal(lines.length, 3, result.stdout);
      assert.doesNotMatch((await lab.exec(host.ns, ["iptables-save"])).stdout, /OVERLAY-/);
      assert.equal((await lab.exec(host.ns, ["ip", "link", "show", "lxcbr0"])).code, 1);
      await Deno.stat(host.subnetFile);
    });

    await t.step("etcd back: the next run releases the lease, exit 0", async () => {
      lab.startEtcdMember(0);
      await waitFor(async () => (await lab.etcdctl("endpoint", "health")).code === 0, {
        what: "etcd back",
      });
      assert.notEqual(await leaseValue(), "", "the lease outlived the first cleanup");
      const result = await cleanup();
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(
        result.stdout,
        `removed: ${host.subnetFile}, ${inventory}\nsubnet ${subnet} released\n`,
      );
      assert.equal(await leaseValue(), "");
      await assert.rejects(Deno.stat(host.subnetFile), Deno.errors.NotFound);
      await assert.rejects(Deno.stat(inventory), Deno.errors.NotFound);
    });

    await t.step("a run after that finds nothing left, exit 0", async () => {
      const result = await cleanup();
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(result.stdout, "nothing left to remove\n");
      assert.match(result.stderr, /no record of what overlay made/);
    });

    await t.step(
      "a record that outlived what it names: all already gone, nothing claimed removed, exit 0",
      async () => {
        await restore();
        const result = await cleanup();
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.equal(
          result.stdout,
          `removed: ${host.subnetFile}, ${inventory}\n` +
            `already gone: iptables chains ${/OVERLAY-POST-\w+/.exec(saved.inventory)![0]} and ` +
            `${/OVERLAY-FWD-\w+/.exec(saved.inventory)![0]}, device flannel0, bridge lxcbr0\n` +
            `subnet ${subnet} already gone (no lease at ${key})\n`,
        );
      },
    );

    await t.step(
      "a lease another host holds now, or a reservation, is left alone, exit 0",
      async () => {
        const other = `{"PublicIP":"${UNDERLAY_PREFIX}.99","BackendType":"udp"}`;
        const grant = await lab.etcdctl("lease", "grant", "600");
        const id = /lease (\w+) granted/.exec(grant.stdout)![1];
        await lab.etcdctl("put", `--lease=${id}`, key, other);
        await restore();
        const taken = await cleanup();
        assert.equal(taken.code, 0, taken.stdout + taken.stderr);
        assert.match(
          taken.stdout,
          new RegExp(
            `^subnet ${subnet} left alone: now held by another host \\(${UNDERLAY_PREFIX}\\.99\\)$`,
            "m",
          ),
        );
        assert.equal(await leaseValue(), `${other}\n`);
        const mine = `{"PublicIP":"${host.ip}","BackendType":"udp"}`;
        await lab.etcdctl("put", key, mine); // no etcd lease: a reservation
        await restore();
        const reserved = await cleanup();
        assert.equal(reserved.code, 0, reserved.stdout + reserved.stderr);
        assert.match(
          reserved.stdout,
          new RegExp(`^subnet ${subnet} left alone: it is a reservation$`, "m"),
        );
        assert.equal(await leaseValue(), `${mine}\n`);
      },
    );

    await t.step(
      "a chain someone else's rule still jumps to is NOT removed (exit 1) and stays recorded",
      async () => {
        const chain = /OVERLAY-POST-\w+/.exec(saved.inventory)![0];
        await lab.sh(
          host.ns,
          `iptables -t nat -N ${chain} && iptables -t nat -N SOMEONE-ELSES && ` +
            `iptables -t nat -A SOMEONE-ELSES -j ${chain}`,
        );
        await restore();
        const result = await cleanup();
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(
          result.stdout,
          new RegExp(
            `^NOT removed: iptables chain ${chain} \\(iptables -t nat -X ${chain}: .+\\)$`,
            "m",
          ),
        );
        assert.match(result.stdout, new RegExp(`^kept for the next cleanup: ${inventory}$`, "m"));
        await lab.sh(
          host.ns,
          "iptables -t nat -F SOMEONE-ELSES && iptables -t nat -X SOMEONE-ELSES",
        );
        const again = await cleanup();
        assert.equal(again.code, 0, again.stdout + again.stderr);
        assert.match(
          again.stdout,
          new RegExp(`^removed: iptables chain ${chain}, ${inventory}$`, "m"),
        );
        assert.doesNotMatch((await lab.exec(host.ns, ["iptables-save"])).stdout, /OVERLAY-/);
      },
    );
  },
});

Deno.test({
  name: "the agent tells systemd READY=1 over $NOTIFY_SOCKET once it is ready",
  ...INTEGRATION,
  async fn() {
    await using dir = await tempDir();
    const socket = `${dir}/notify.sock`;
    const listener = new UnixDatagramListener(socket);
    try {
      await using lab = await Lab.create();
      await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
      const host = await lab.addHost();
      lab.startAgent(host, [], { env: { NOTIFY_SOCKET: socket } });
      const message = await waitFor(() => listener.receive(), {
        timeoutMs: 20_000,
        what: "sd_notify datagram",
      });
      assert.match(
        message,
        /^READY=1\nSTATUS=ready subnet:10\.10\.\d+\.1\/24 mtu:1472 backend:udp peers:0\nMAINPID=\d+$/,
      );
      assert.equal((await lab.health(host)).code, 0, "ready is only sent once --health agrees");
      await lab.agent(host)!.stop();
      assert.equal(await waitFor(() => listener.receive(), { what: "STOPPING=1" }), "STOPPING=1");
    } finally {
      listener.close();
    }
  },
});

Deno.test("systemd-unit prints a notify unit with only the capabilities the agent needs", async () => {
  const result = await overlay(["systemd-unit"]);
  assert.equal(result.code, 0);
  for (
    const line of [
      "Type=notify",
      "ExecStart=/usr/local/bin/overlay run",
      "Restart=on-failure",
      "StartLimitIntervalSec=0", // never gives up restarting (a host that boots before etcd)
      "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
      "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
      "EnvironmentFile=-/etc/overlay/overlay.env",
      "TimeoutStartSec=infinity", // READY=1 may come long after boot, when etcd does
    ]
  ) {
    assert.ok(result.stdout.split("\n").includes(line), line);
  }
  // A path with a space is quoted, % doubled; a relative or multi-line one is refused.
  const spaced = await overlay(["systemd-unit", "--binary=/opt/my tools/overlay%1"]);
  assert.match(spaced.stdout, /^ExecStart="\/opt\/my tools\/overlay%%1" run$/m);
  for (const binary of ["overlay", "/x\nExecStartPre=/bin/rm -rf /"]) {
    const refused = await overlay(["systemd-unit", `--binary=${binary}`]);
    assert.equal(refused.code, 2, refused.stdout);
    assert.match(refused.stderr, /--binary .*: give an absolute path on one line/);
  }
});

Deno.test("docker-opts reads the subnet file as flannel's mk-docker-opts does", async () => {
  await using dir = await tempDir();
  const file = `${dir}/subnet.env`;
  await Deno.writeTextFile(
    file,
    "FLANNEL_NETWORK=10.10.0.0/16\nFLANNEL_SUBNET=10.10.16.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
  );
  const opts = await overlay(["docker-opts", `--subnet-file=${file}`]);
  assert.equal(opts.stdout, "--bip=10.10.16.1/24 --ip-masq=false --mtu=1472\n");
  // What mk-docker-opts.sh writes (checked byte for byte against the script's output).
  const mkDockerOpts =
    'DOCKER_OPT_BIP="--bip=10.10.16.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.10.16.1/24 --ip-masq=false --mtu=1472 "\n';
  const env = await overlay(["docker-opts", `--subnet-file=${file}`, "--format=env"]);
  assert.equal(env.stdout, mkDockerOpts);
  // The script's own options, as a flannel unit calls it: it writes the file.
  const written = `${dir}/docker`;
  for (
    const [options, expected] of [
      [[], mkDockerOpts],
      [
        ["-k", "DOCKER_NETWORK_OPTIONS"],
        mkDockerOpts.replace("DOCKER_OPTS=", "DOCKER_NETWORK_OPTIONS="),
      ],
      [["-c", "-m"], 'DOCKER_OPTS=" --bip=10.10.16.1/24 --mtu=1472 "\n'],
      [["-i"], mkDockerOpts.split("\n").slice(0, 3).join("\n") + "\n"],
    ] as [string[], string][]
  ) {
    const result = await overlay(["docker-opts", "-f", file, "-d", written, ...options]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await Deno.readTextFile(written), expected, options.join(" "));
  }
  const json = await overlay(["docker-opts", `--subnet-file=${file}`, "--format=json"]);
  assert.deepEqual(JSON.parse(json.stdout), { bip: "10.10.16.1/24", "ip-masq": false, mtu: 1472 });
  // Dual stack: Docker gets its IPv6 options too (mk-docker-opts.sh has none: names are ours).
  await Deno.writeTextFile(
    file,
    "FLANNEL_NETWORK=10.10.0.0/16\nFLANNEL_SUBNET=10.10.16.1/24\nFLANNEL_IPV6_NETWORK=fd10::/48\n" +
      "FLANNEL_IPV6_SUBNET=fd10:0:0:10::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
  );
  assert.equal(
    (await overlay(["docker-opts", `--subnet-file=${file}`])).stdout,
    "--bip=10.10.16.1/24 --ip-masq=true --mtu=1450 --ipv6 --fixed-cidr-v6=fd10:0:0:10::1/64\n",
  );
  assert.deepEqual(
    JSON.parse((await overlay(["docker-opts", `--subnet-file=${file}`, "--format=json"])).stdout),
    {
      bip: "10.10.16.1/24",
      "ip-masq": true,
      mtu: 1450,
      ipv6: true,
      "fixed-cidr-v6": "fd10:0:0:10::1/64",
    },
  );
  // IPv6-only: no --bip.
  await Deno.writeTextFile(
    file,
    "FLANNEL_IPV6_NETWORK=fd10::/48\nFLANNEL_IPV6_SUBNET=fd10:0:0:10::1/64\nFLANNEL_MTU=1450\n",
  );
  assert.equal(
    (await overlay(["docker-opts", `--subnet-file=${file}`])).stdout,
    "--ip-masq=true --mtu=1450 --ipv6 --fixed-cidr-v6=fd10:0:0:10::1/64\n",
  );
  const missing = await overlay(["docker-opts", `--subnet-file=${dir}/nope.env`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Subnet file ".*nope.env" not found \(is overlay run up\?/);
  const badFormat = await overlay(["docker-opts", `--subnet-file=${file}`, "--format=yaml"]);
  assert.equal(badFormat.code, 2);
  // What it prints lands on dockerd's command line: a tampered file prints nothing.
  for (
    const bad of [
      "FLANNEL_SUBNET=10.10.16.1/24 --insecure-registry=evil\nFLANNEL_MTU=1472\n",
      "FLANNEL_SUBNET=10.10.16.1/24\nFLANNEL_MTU=1472; rm -rf /\n",
      "FLANNEL_SUBNET=10.10.16.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=maybe\n",
      "FLANNEL_IPV6_SUBNET=fd10::1/64 --userns-remap=x\nFLANNEL_MTU=1472\n",
      "FLANNEL_MTU=1472\n",
    ]
  ) {
    await Deno.writeTextFile(file, bad);
    const result = await overlay(["docker-opts", `--subnet-file=${file}`]);
    assert.equal(result.code, 1, bad);
    assert.equal(result.stdout, "", bad);
    assert.match(result.stderr, /does not hold a valid FLANNEL_SUBNET/);
  }
});

/** user-data checked by cloud-init's own schema checker, then read by its YAML parser. */
async function checkUserData(dir: string, text: string) {
  const file = `${dir}/user-data`;
  await Deno.writeTextFile(file, text);
  const schema = await new Deno.Command("cloud-init", {
    args: ["schema", "--config-file", file],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(schema.stdout) + new TextDecoder().decode(schema.stderr);
  assert.equal(schema.code, 0, said);
  assert.match(said, /Valid cloud-config/);
  const parsed = await new Deno.Command("python3", {
    args: [
      "-c",
      "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
      file,
    ],
    stdout: "piped",
  }).output();
  return JSON.parse(new TextDecoder().decode(parsed.stdout));
}

/** A systemd EnvironmentFile's KEY="value" lines, unescaped. */
function readEnvironmentFile(text: string): Record<string, string> {
  return Object.fromEntries(
    text.trim().split("\n").map((line) => {
      const [, key, quoted] = /^([A-Z_]+)="(.*)"$/.exec(line)!;
      return [key, quoted.replace(/\\(.)/g, "$1")];
    }),
  );
}

Deno.test("cloud-init user-data passes cloud-init's own schema check", async () => {
  await using dir = await tempDir();
  const sha = "ab".repeat(32);
  const result = await overlay([
    "cloud-init",
    "--binary-url=https://releases.example/overlay",
    `--sha256=${sha}`,
    "--etcd-endpoints=https://10.0.0.5:2379",
    "--bridge=lxcbr0",
    "--ip-masq",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^#cloud-config\n/);
  const config = await checkUserData(`${dir}`, result.stdout);
  assert.match(
    config.runcmd[0][2],
    new RegExp(`echo '${sha}  /usr/local/bin/overlay.download' \\| sha256sum -c -`),
  );
  assert.deepEqual(readEnvironmentFile(config.write_files[1].content), {
    OVERLAY_ETCD_ENDPOINTS: "https://10.0.0.5:2379",
    OVERLAY_BRIDGE: "lxcbr0",
    OVERLAY_IP_MASQ: "true",
  });
  assert.deepEqual(config.runcmd[2], [
    "systemctl",
    "enable",
    "--now",
    "--no-block",
    "overlay.service",
  ]);
  assert.deepEqual(config.runcmd[3], ["/usr/local/bin/overlay", "wait", "--timeout", "120s"]);
  assert.match(config.write_files[0].content, /^TimeoutStartSec=infinity$/m);
  assert.match(config.write_files[0].content, /^ExecStart=\/usr\/local\/bin\/overlay run$/m);
  const bad = await overlay(["cloud-init", "--binary-url=https://x/overlay", "--sha256=123"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--sha256 must be 64 hex digits/);
  // What `overlay run` would refuse at every boot is refused here.
  const base = ["cloud-init", "--binary-url=https://x/overlay", `--sha256=${sha}`];
  for (
    const [extra, message] of [
      [[], /--etcd-endpoints is required/],
      [["--etcd-endpoints=https://e:2379", "--public-ip=999.1.1.1"], /is not an IPv4 address/],
      [["--etcd-endpoints=https://e:2379", "--public-ip=127.0.0.1"], /is a loopback address/],
      [["--etcd-endpoints=https://e:2379", "--iface-regex=(["], /is not a regular expression/],
      [["--etcd-endpoints=https://e:2379", "--bridge=far-too-long-a-name"], /is not a device name/],
      [["--etcd-endpoints=https://e:2379", "--binary=relative/overlay"], /give an absolute path/],
    ] as [string[], RegExp][]
  ) {
    const refused = await overlay([...base, ...extra]);
    assert.equal(refused.code, 2, `${extra}: ${refused.stdout}`);
    assert.match(refused.stderr, message);
  }
  // The shell's own OVERLAY_* variables (a password perhaps) are not copied in.
  const shell = await overlay([...base, "--etcd-endpoints=https://e:2379"], {
    env: { OVERLAY_ETCD_PASSWORD: "from-my-shell", OVERLAY_ETCD_USERNAME: "me" },
  });
  assert.equal(shell.code, 0, shell.stderr);
  assert.doesNotMatch(shell.stdout, /from-my-shell|OVERLAY_ETCD_USERNAME/);
  assert.match(shell.stderr, /not copied into the user-data .*OVERLAY_ETCD_USERNAME/);
});

Deno.test("cloud-init user-data keeps hostile values intact: quotes, colon-space, #, $ and backslashes", async () => {
  await using dir = await tempDir();
  const hostile = {
    url: `https://files.example/o'v"er: lay #1?a=$(reboot)&b=\`x\``,
    username: `ops: "admin" # not a comment`,
    password: `p@ss: 'w"o$rd\\ #x`,
    prefix: `/odd: "prefix" #1`,
  };
  const result = await overlay([
    "cloud-init",
    `--binary-url=${hostile.url}`,
    `--sha256=${"cd".repeat(32)}`,
    "--etcd-endpoints=https://10.0.0.5:2379",
    `--etcd-username=${hostile.username}`,
    `--etcd-password=${hostile.password}`,
    `--etcd-prefix=${hostile.prefix}`,
  ]);
  assert.equal(result.code, 0, result.stderr);
  const config = await checkUserData(`${dir}`, result.stdout);
  const env = readEnvironmentFile(config.write_files[1].content);
  assert.equal(env.OVERLAY_ETCD_USERNAME, hostile.username);
  assert.equal(env.OVERLAY_ETCD_PASSWORD, hostile.password);
  assert.equal(env.OVERLAY_ETCD_PREFIX, hostile.prefix);
  // The download command, run by sh, receives the URL as one word, unchanged.
  const echo = await new Deno.Command("sh", {
    args: [
      "-c",
      config.runcmd[0][2].split(" && ").find((c: string) => c.startsWith("curl "))!
        .replace(/^curl .*? -o '[^']*' /, "printf %s "),
    ],
    stdout: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(echo.stdout), hostile.url);
  const newline = await overlay([
    "cloud-init",
    "--binary-url=https://x/overlay",
    `--sha256=${"cd".repeat(32)}`,
    "--etcd-endpoints=https://10.0.0.5:2379",
    "--etcd-username=u",
    "--etcd-password=line1\nline2",
  ]);
  assert.equal(newline.code, 2);
  assert.match(newline.stderr, /--etcd-password holds a newline or control character/);
});

Deno.test({
  name: "two networks on one host keep their own leases, devices, files and health",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const second = await lab.overlay(lab.underlayNs, [
      "config",
      "set",
      `--etcd-endpoints=${lab.etcdEndpoint}`,
      "--etcd-prefix=/blue/network",
      `{"Network":"10.20.0.0/16","Backend":{"Type":"udp","Port":8286}}`,
    ]);
    assert.equal(second.code, 0, second.stderr);
    const hosts = [await lab.addHost(), await lab.addHost()];
    const blue = (
      host: LabHost,
    ) => [`--subnet-file=${host.stateDir}/blue.env`, `--state-dir=${host.stateDir}`];
    for (const host of hosts) {
      lab.startAgent(host);
      lab.startAgent(host, ["--etcd-prefix=/blue/network", "--device=blue0", ...blue(host)], {
        name: `${host.name}-blue`,
      });
    }
    for (const host of hosts) {
      await lab.waitReady(host);
      const wait = await lab.overlay(host.ns, ["wait", "--timeout=20s", ...blue(host)]);
      assert.equal(wait.code, 0, wait.stderr + lab.agent(`${host.name}-blue`)!.log());
      assert.match(wait.stdout, /^ready subnet:10\.20\.\d+\.1\/24 mtu:1472 backend:udp peers:1/);
      assert.match((await lab.health(host)).stdout, /^ready subnet:10\.10\.\d+\.1\/24 /);
      const links = (await lab.exec(host.ns, ["ip", "-o", "link"])).stdout;
      assert.match(links, / flannel0: /);
      assert.match(links, / blue0: /);
    }
    const [a, b] = hosts;
    const tunOf = async (file: string) => (await lab.subnetOf(b, file)).replace("/24", "");
    assert.notEqual(await lab.ping(a, await tunOf(b.subnetFile)), undefined, "default network");
    assert.notEqual(
      await lab.ping(a, await tunOf(`${b.stateDir}/blue.env`)),
      undefined,
      "blue network",
    );
    await lab.agent(`${a.name}-blue`)!.stop();
    assert.equal((await lab.overlay(a.ns, ["--health", ...blue(a)])).code, 1, "blue stopped");
    assert.equal((await lab.health(a)).code, 0, "default network unaffected");
  },
});
