/**
 * flanneld's flags and environment, table-driven: every flanneld v0.20 flag outside
 * Kubernetes mode, in each of Go's spellings, with its FLANNELD_* mirror, overlay's own
 * OVERLAY_* mirror winning over it and the command line over both; flanneld's defaults;
 * the Kubernetes-mode flags refused in one line.
 */
import assert from "node:assert/strict";
import { UsageError } from "../lib/errors.ts";
import { parseFlags, RUN_FLAGS } from "../lib/flags.ts";

/** flanneld's flag, a value to give it, and flanneld's default (v0.20.2 main.go). */
const FLANNELD_FLAGS: [string, string, string | boolean | undefined][] = [
  ["etcd-endpoints", "http://10.0.0.5:2379", "http://127.0.0.1:4001,http://127.0.0.1:2379"],
  ["etcd-prefix", "/blue/network", "/coreos.com/network"],
  ["etcd-keyfile", "/etc/ssl/key.pem", undefined],
  ["etcd-certfile", "/etc/ssl/cert.pem", undefined],
  ["etcd-cafile", "/etc/ssl/ca.pem", undefined],
  ["etcd-username", "flannel", undefined],
  ["etcd-password", "secret", undefined],
  ["iface-can-reach", "10.0.0.5", undefined],
  ["subnet-file", "/run/other/subnet.env", "/run/flannel/subnet.env"],
  ["public-ip", "192.0.2.7", undefined],
  ["public-ipv6", "2001:db8::7", undefined],
  ["subnet-lease-renew-margin", "30", "60"],
  ["healthz-ip", "127.0.0.1", "0.0.0.0"],
  ["healthz-port", "8081", "0"],
  ["iptables-resync", "10", "5"],
  ["v", "2", "0"],
];
const REPEATABLE = [["iface", "eth1"], ["iface-regex", "^10\\."]];
const BOOLEANS: [string, boolean][] = [["ip-masq", false], ["iptables-forward-rules", true]];
const KUBERNETES = [
  "kube-subnet-mgr",
  "kube-api-url=https://k8s",
  "kube-annotation-prefix=x",
  "kubeconfig-file=/k",
  "net-config-path=/etc/kube-flannel/net-conf.json",
  "set-node-network-unavailable=false",
];

function withEnv<T>(env: Record<string, string>, fn: () => T): T {
  const saved = Object.keys(env).map((k) => [k, Deno.env.get(k)] as const);
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  try {
    return fn();
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

const parse = (args: string[]) => parseFlags("overlay run", args, RUN_FLAGS);
const env = (name: string, prefix: string) =>
  `${prefix}_${name.toUpperCase().replaceAll("-", "_")}`;

for (const [name, value, flannelDefault] of FLANNELD_FLAGS) {
  Deno.test(`--${name}: Go's spellings, FLANNELD_* and OVERLAY_* mirrors, flanneld's default`, () => {
    for (
      const args of [[`--${name}=${value}`], [`-${name}=${value}`], [`-${name}`, value], [
        `--${name}`,
        value,
      ]]
    ) {
      const parsed = parse(args);
      assert.equal(parsed.values[name as never], value, args.join(" "));
      assert.equal(parsed.sources[name as never], "command line");
    }
    const fromFlanneld = withEnv({ [env(name, "FLANNELD")]: value }, () => parse([]));
    assert.equal(fromFlanneld.values[name as never], value);
    assert.equal(fromFlanneld.sources[name as never], env(name, "FLANNELD"));
    const both = withEnv(
      { [env(name, "FLANNELD")]: "from-flanneld", [env(name, "OVERLAY")]: value },
      () => parse([]),
    );
    assert.equal(both.values[name as never], value, "OVERLAY_* wins over FLANNELD_*");
    assert.equal(both.sources[name as never], env(name, "OVERLAY"));
    const flag = withEnv(
      { [env(name, "OVERLAY")]: "from-env" },
      () => parse([`--${name}=${value}`]),
    );
    assert.equal(flag.values[name as never], value, "the command line wins");
    assert.equal(parse([]).values[name as never], flannelDefault, "flanneld's default");
  });
}

for (const [name, value] of REPEATABLE) {
  Deno.test(`--${name} repeats, in order, and has FLANNELD_${name.toUpperCase().replace("-", "_")}`, () => {
    const parsed = parse([`--${name}=${value}`, `-${name}`, "second", `--${name}`, "third"]);
    assert.deepEqual(parsed.values[name as never], [value, "second", "third"]);
    const fromEnv = withEnv({ [env(name, "FLANNELD")]: value }, () => parse([]));
    assert.deepEqual(fromEnv.values[name as never], [value]);
    assert.equal(parse([]).values[name as never], undefined);
  });
}

for (const [name, flannelDefault] of BOOLEANS) {
  Deno.test(`--${name}: bare, =true/=false, FLANNELD_*, default ${flannelDefault}`, () => {
    assert.equal(parse([`--${name}`]).values[name as never], true);
    assert.equal(parse([`-${name}=false`]).values[name as never], false);
    assert.equal(parse([`--${name}=true`]).values[name as never], true);
    assert.equal(
      withEnv({ [env(name, "FLANNELD")]: String(!flannelDefault) }, () => parse([])).values[
        name as never
      ],
      !flannelDefault,
    );
    assert.equal(parse([]).values[name as never], flannelDefault);
  });
}

Deno.test("flanneld's Kubernetes-mode flags are refused in one line", () => {
  for (const flag of KUBERNETES) {
    assert.throws(() => parse([`--${flag}`]), (error: Error) => {
      assert.ok(error instanceof UsageError);
      assert.match(
        error.message,
        /is flanneld's Kubernetes mode, which overlay does not implement/,
      );
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
  }
});

Deno.test("klog's -vmodule and -log_backtrace_at are accepted and ignored, -v sets the verbosity", () => {
  const parsed = parse(["-v=3", "-vmodule=foo=2", "--log_backtrace_at", "x.go:1"]);
  assert.equal(parsed.values.v, "3");
  assert.deepEqual(parsed.positionals, []);
});
