/**
 * The wireguard backend's kernel path against this machine's kernel, in throwaway
 * namespaces (`wk` and a random suffix, deleted afterwards). Where the kernel has no
 * wireguard module (this machine: `ip link add … type wireguard` answers "Unknown device
 * type"), the probe must say so and creating the device must fail with one line naming
 * the fix; where it has one, a device is made, given a peer, and read back (with `wg show`
 * too when wireguard-tools is installed). Only one of the two runs on a given kernel.
 */
import assert from "node:assert/strict";
import { type CommandOutput, runCommand } from "../lab/run.ts";
import { NO_KERNEL_MODULE } from "../lib/backends/wireguard_kernel.ts";

const RUNNER = new URL("./fixtures/wireguard_kernel_runner.ts", import.meta.url).pathname;
const ROOT = Deno.uid() === 0;
const key = (first: number) =>
  btoa(String.fromCharCode(...new Uint8Array(32).map((_, i) => first + i)));

/** The kernel's own answer, asked in a namespace of its own: can it make a wireguard link? */
const moduleReason = ROOT ? await kernelHasWireguard() : "not root";
if (!ROOT) console.error("wireguard kernel tests ignored: not root");

async function kernelHasWireguard(): Promise<string | undefined> {
  return await withNamespace(async (ns) => {
    const made = await runCommand(["ip", "-n", ns, "link", "add", "wkprobe", "type", "wireguard"]);
    return made.code === 0 ? undefined : `no wireguard module: ${made.stderr.trim()}`;
  });
}

const absent = moduleReason !== undefined && ROOT;
const present = moduleReason === undefined;
if (ROOT && !present) {
  console.error(`wireguard kernel integration test ignored: this kernel has ${moduleReason}`);
}
if (present) console.error("wireguard kernel tests: module present, the no-module test is ignored");

async function withNamespace<T>(body: (ns: string) => Promise<T>): Promise<T> {
  const ns = `wk${crypto.randomUUID().slice(0, 8)}`;
  await run(["ip", "netns", "add", ns]);
  try {
    return await body(ns);
  } finally {
    await runCommand(["ip", "netns", "del", ns]);
  }
}

async function run(argv: string[]): Promise<CommandOutput> {
  const output = await runCommand(argv);
  if (output.code !== 0) {
    throw new Error(`${argv.join(" ")}: exit ${output.code}\n${output.stderr}${output.stdout}`);
  }
  return output;
}

async function runner(ns: string, spec: Record<string, unknown>): Promise<Record<string, unknown>> {
  const output = await run([
    "ip",
    "netns",
    "exec",
    ns,
    Deno.execPath(),
    "run",
    "--allow-all",
    RUNNER,
    JSON.stringify({
      device: "flannel-wg",
      mtu: 1420,
      listenPort: 51820,
      privateKey: key(1),
      ...spec,
    }),
  ]);
  return JSON.parse(output.stdout.trim().split("\n").pop()!);
}

Deno.test({
  name:
    "without the wireguard module the probe says no and creating the device fails with one line naming the fix",
  ignore: !absent,
  async fn() {
    await withNamespace(async (ns) => {
      const result = await runner(ns, {});
      assert.equal(result.available, false);
      assert.equal(result.error, NO_KERNEL_MODULE);
      assert.equal(NO_KERNEL_MODULE.includes("\n"), false);
      // Nothing is left behind.
      const links = await run(["ip", "-n", ns, "-o", "link", "show"]);
      assert.doesNotMatch(links.stdout, /flannel-wg/);
    });
  },
});

Deno.test({
  name: "with the wireguard module a device is made, given a peer, read back and the peer removed",
  ignore: !present,
  async fn() {
    await withNamespace(async (ns) => {
      const peer = {
        publicKey: key(0x81),
        psk: key(0x41),
        endpoint: { ip: "172.31.254.12", port: 51820 },
        keepaliveSeconds: 25,
        allowedIps: [{ ip: "10.10.2.0", prefixLen: 24 }, { ip: "fd10:0:0:2::", prefixLen: 64 }],
      };
      const result = await runner(ns, { peer });
      assert.equal(result.available, true);
      assert.equal(result.error, undefined);
      // Not checked where this was written (no module): the order of allowed IPs in the
      // kernel's dump, and whether a keepalive already went out (tx bytes) when the peer
      // was set; both are compared loosely.
      const [got] = result.peers as Record<string, unknown>[];
      assert.equal((result.peers as unknown[]).length, 1);
      assert.equal(got.publicKey, peer.publicKey);
      assert.equal(got.endpoint, "172.31.254.12:51820");
      assert.equal(got.keepaliveSeconds, 25);
      assert.equal(got.lastHandshakeMs, 0);
      assert.equal(got.rxBytes, 0);
      assert.equal(typeof got.txBytes, "number");
      assert.deepEqual((got.allowedIps as string[]).toSorted(), [
        "10.10.2.0/24",
        "fd10:0:0:2::/64",
      ]);
      assert.equal(result.peersAfterRemove, 0);
      const link = await run(["ip", "-n", ns, "-d", "-o", "link", "show", "flannel-wg"]);
      assert.match(link.stdout, /mtu 1420/);
      assert.match(link.stdout, /wireguard/);
      // A second run adopts the device (a restart) and configures it again.
      const again = await runner(ns, { peer });
      assert.equal(again.error, undefined);
      if ((await runCommand(["wg", "--version"])).code === 0) {
        const shown = await run(["ip", "netns", "exec", ns, "wg", "show", "flannel-wg", "dump"]);
        const [device] = shown.stdout.trim().split("\n");
        assert.equal(device.split("\t")[0], key(1));
        assert.equal(device.split("\t")[2], "51820");
      } else console.error("wg show check skipped: no wg (apt install wireguard-tools)");
    });
  },
});
