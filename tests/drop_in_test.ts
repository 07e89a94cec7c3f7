/**
 * overlay in flanneld's place: the interface-selection flags on a host with several
 * interfaces, flanneld's environment file, and its iptables flags, on real hosts in
 * namespaces with a real etcd.
 */
import assert from "node:assert/strict";
import { INTEGRATION, overlayArgv, waitFor } from "./helpers.ts";
import { Lab } from "../lab/lab.ts";

const PROBE = new URL("./fixtures/underlay_probe.ts", import.meta.url).pathname;

Deno.test({
  name:
    "interface selection as flanneld's: --iface in order, --iface-regex by IP then name, --iface-can-reach; IPv6 too",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    const host = await lab.addHost(); // eth0 172.31.254.11/24, default route via .1
    const side = await lab.addNamespace("side");
    await lab.cable(host.ns, "eth1", side);
    await lab.ip(host.ns, "addr", "add", "172.31.253.11/24", "dev", "eth1");
    await lab.ip(host.ns, "link", "set", "eth1", "up");
    await lab.ip(side, "addr", "add", "172.31.253.1/24", "dev", "eth0");
    await lab.ip(side, "link", "set", "eth0", "up");
    const choose = async (choice: Record<string, unknown>) =>
      JSON.parse(
        (await lab.exec(host.ns, ["deno", "run", "-A", PROBE, JSON.stringify(choice)])).stdout,
      );
    const cases: [Record<string, unknown>, string, string?][] = [
      [{}, "eth0"], // the default route's interface
      [{ ifaces: ["eth1"] }, "eth1"],
      [{ ifaces: ["nope0", "eth1", "eth0"] }, "eth1"], // the first that exists
      [{ ifaces: ["172.31.253.11"] }, "eth1"], // by address
      [{ ifaceRegexes: ["^172\\.31\\.253\\."] }, "eth1"], // by address first
      [{ ifaceRegexes: ["^eth1$"] }, "eth1"], // then by name
      [{ ifaceRegexes: ["^nomatch", "h1$"] }, "eth1"], // in order
      [{ ifaces: ["nope0"], ifaceRegexes: ["^eth0$"] }, "eth0"], // regexes after --iface
      [{ ifaceCanReach: "172.31.253.1" }, "eth1"], // as `ip route get`
      [{ ifaceCanReach: "172.31.254.1" }, "eth0"],
      [{ publicIp: "172.31.253.11" }, "eth1"], // the interface holding --public-ip
      [{ ifaces: ["eth0"], publicIp: "203.0.113.9" }, "eth0", "203.0.113.9"], // behind NAT
    ];
    for (const [choice, name, publicIp] of cases) {
      const chosen = await choose(choice);
      assert.equal(chosen.name, name, JSON.stringify(choice) + " → " + JSON.stringify(chosen));
      if (publicIp) assert.equal(chosen.publicIp, publicIp);
    }
    // IPv6: the chosen interface's global address is the PublicIPv6; an IPv6 address names
    // its interface; an IPv6-only network takes the IPv6 default route's interface.
    await lab.ip(host.ns, "addr", "add", "fd00:253::11/64", "dev", "eth1", "nodad");
    await lab.ip(host.ns, "-6", "route", "add", "default", "via", "fd00:253::1", "dev", "eth1");
    const v6cases: [Record<string, unknown>, string, string | undefined][] = [
      [{}, "eth0", undefined], // eth0 has no global IPv6 address
      [{ ifaces: ["fd00:253::11"] }, "eth1", "fd00:253::11"],
      [{ ifaces: ["eth1"], publicIpv6: "2001:db8::9" }, "eth1", "2001:db8::9"],
      [{ ipv4: false }, "eth1", "fd00:253::11"], // the IPv6 default route's
      [{ ipv4: false, ifaceRegexes: ["^fd00:253:"] }, "eth1", "fd00:253::11"],
    ];
    for (const [choice, name, publicIpv6] of v6cases) {
      const chosen = await choose(choice);
      assert.equal(chosen.name, name, JSON.stringify(choice) + " → " + JSON.stringify(chosen));
      assert.equal(chosen.publicIpv6, publicIpv6, JSON.stringify(choice));
    }
    assert.match(
      (await choose({ ipv4: false, ifaces: ["eth0"] })).error,
      /--iface "eth0": no interface with a global IPv6 address matches \(have: eth1\)/,
    );
    const none = await choose({ ifaces: ["nope0"], ifaceRegexes: ["^zz"] });
    assert.match(
      none.error,
      /--iface "nope0", --iface-regex "\^zz": no such IPv4 interface here \(have: .*eth1 \(172\.31\.253\.11\)/,
    );
    // With no route toward it (this host's network has no default route now), says so.
    await lab.ip(host.ns, "route", "del", "default");
    assert.match(
      (await choose({ ifaceCanReach: "198.51.100.9" })).error,
      /--iface-can-reach 198\.51\.100\.9: no route toward it here \(have: /,
    );
  },
});

Deno.test({
  name:
    "flanneld's environment file works unchanged: FLANNELD_* variables, and the log says where each came from",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "vxlan" } });
    const host = await lab.addHost();
    // No flags but where the state goes: what a flanneld unit's EnvironmentFile would hold.
    const agent = lab.spawn(host.ns, [
      ...overlayArgv(),
      "run",
      `--subnet-file=${host.subnetFile}`,
      `--state-dir=${host.stateDir}`,
    ], {
      FLANNELD_ETCD_ENDPOINTS: lab.etcdEndpoint,
      FLANNELD_IFACE: "eth0",
      FLANNELD_IP_MASQ: "true",
      FLANNELD_IPTABLES_RESYNC: "1",
      OVERLAY_SUBNET_LEASE_RENEW_MARGIN: "30",
      FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "45",
    });
    await waitFor(async () => (await lab.health(host)).code === 0, {
      timeoutMs: 20_000,
      what: "ready from FLANNELD_* alone",
    }).catch((error) => {
      throw new Error(`${error.message}\n${agent.log()}`);
    });
    const line = agent.log().split("\n").find((l) => l.includes(" configuration "))!;
    assert.match(
      line,
      /etcd-endpoints="http:\/\/172\.31\.254\.1:2379 \(from FLANNELD_ETCD_ENDPOINTS\)"/,
    );
    assert.match(line, /iface="eth0 \(from FLANNELD_IFACE\)"/);
    assert.match(line, /subnet-lease-renew-margin="30 \(from OVERLAY_SUBNET_LEASE_RENEW_MARGIN\)"/);
    const rules = (await lab.exec(host.ns, ["iptables-save", "-t", "nat"])).stdout;
    assert.match(rules, /-A POSTROUTING -j OVERLAY-POST-/, "FLANNELD_IP_MASQ=true took effect");
    // FLANNELD_IPTABLES_RESYNC=1: a deleted rule is back within a couple of seconds.
    const chain = /:(OVERLAY-POST-\w+)/.exec(rules)![1];
    await lab.sh(host.ns, `iptables -t nat -D ${chain} 1`);
    await waitFor(
      async () =>
        (await lab.exec(host.ns, ["iptables", "-t", "nat", "-S", chain])).stdout.split("\n")
          .filter((l) => l.startsWith("-A")).length === 4,
      {
        timeoutMs: 3_000,
        what: "the rule restored within the 1 s resync",
      },
    );
    await agent.stop();
  },
});

Deno.test({
  name:
    "--iptables-forward-rules (on by default, as flanneld's) accepts the Network in FORWARD; =false installs nothing",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "host-gw" } });
    const [h1, h2] = [await lab.addHost(), await lab.addHost()];
    lab.startAgent(h1);
    lab.startAgent(h2, ["--iptables-forward-rules=false"]);
    await lab.waitReady(h1);
    await lab.waitReady(h2);
    const filter = async (host: typeof h1) =>
      (await lab.exec(host.ns, ["iptables-save", "-t", "filter"])).stdout;
    const on = await filter(h1);
    assert.match(on, /-A FORWARD -j OVERLAY-FWD-\w+/);
    assert.match(on, /-A OVERLAY-FWD-\w+ -s 10\.10\.0\.0\/16 .*-j ACCEPT/);
    assert.match(on, /-A OVERLAY-FWD-\w+ -d 10\.10\.0\.0\/16 .*-j ACCEPT/);
    assert.doesNotMatch(
      (await lab.exec(h1.ns, ["iptables-save", "-t", "nat"])).stdout,
      /OVERLAY-POST/,
    );
    assert.doesNotMatch(await filter(h2), /OVERLAY-/);
  },
});

Deno.test({
  name: "overlay refuses to start next to a running flanneld, in one line",
  ...INTEGRATION,
  async fn() {
    await using lab = await Lab.create();
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
    const host = await lab.addHost();
    const fake = `${lab.dir}/flanneld`; // a process called flanneld, in the host's namespace
    await Deno.copyFile("/bin/sleep", fake);
    await Deno.chmod(fake, 0o755);
    const flanneld = lab.spawn(host.ns, [fake, "30"]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const run = await lab.overlay(host.ns, ["run", ...lab.agentFlags(host)]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /^overlay: flanneld \(pid \d+\) runs on this host: stop it first \(e\.g\. systemctl stop flanneld\)/m,
    );
    await flanneld.stop("SIGKILL");
  },
});
