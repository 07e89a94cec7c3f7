/**
 * Interop against the real wireguard-go (Debian's package), configured as flannel's
 * wireguard backend configures a peer:
 *
 *   ns h1: wireguard-go <dev>; wg set <dev> private-key … listen-port 51820
 *          peer <ours> allowed-ips 10.10.1.0/24 endpoint 172.31.254.12:51820 [preshared-key …]
 *          ip addr add 10.10.2.1/32 dev <dev>; ip link set <dev> up;
 *          ip route add 10.10.1.0/24 dev <dev>
 *   ns h2: tests/fixtures/wg_peer.ts — our Device on a UDP socket, owning 10.10.1.1
 *
 * The device name carries a random suffix: wireguard-go's UAPI socket lives in
 * /var/run/wireguard/<dev>.sock, which network namespaces do not separate.
 */
import assert from "node:assert/strict";
import { Lab, type LabHost, type LabProcess } from "../lab/lab.ts";
import { encodeKey } from "../lib/wireguard/keys.ts";
import { generatePrivateKey } from "../lib/wireguard/noise.ts";
import { defaultCryptoProvider } from "../lib/wireguard/crypto.ts";
import { waitFor } from "./helpers.ts";

const FIXTURE = new URL("./fixtures/wg_peer.ts", import.meta.url).pathname;
const PORT = 51820;

function missing(): string | undefined {
  if (Deno.uid() !== 0) return "needs root for network namespaces";
  for (const tool of ["wireguard-go", "wg"]) {
    const found = new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
      .outputSync().success;
    if (!found) return `${tool} is not installed (apt-get install wireguard-go wireguard-tools)`;
  }
  return undefined;
}
const skip = missing();
if (skip) console.warn(`wireguard interop tests skipped: ${skip}`);

interface Setup {
  lab: Lab;
  wgHost: LabHost;
  ourHost: LabHost;
  device: string;
  wgPublicKey: string;
  ourPrivateKey: string;
  /** Our public key as `wg pubkey` derives it from our private key. */
  ourPublicKey: string;
  psk: string | undefined;
  wireguardGo: LabProcess;
  dir: string;
}

/** Fixture results, the JSON line it prints last. */
interface PeerReport {
  provider: string;
  publicKey: string;
  sent: number;
  replies: number;
  badReplies: number;
  answered: number;
  handshakes: number;
  endpoint: string | undefined;
  counters: Record<string, number>;
}

async function withWireguardGo(
  options: { psk: boolean },
  body: (setup: Setup) => Promise<void>,
): Promise<void> {
  const lab = await Lab.create({ prefix: "wgc" });
  const device = `wgc${crypto.randomUUID().slice(0, 8)}`;
  const dir = await Deno.makeTempDir({ prefix: "wgc-keys-" });
  let wireguardGo: LabProcess | undefined;
  try {
    const wgHost = await lab.addHost();
    const ourHost = await lab.addHost();
    const wgPrivateKey = (await run(["wg", "genkey"])).trim();
    await Deno.writeTextFile(`${dir}/wg.key`, wgPrivateKey + "\n");
    const wgPublicKey = (await run(["wg", "pubkey"], wgPrivateKey)).trim();
    const ourPrivateKey = encodeKey(generatePrivateKey(defaultCryptoProvider()));
    const psk = options.psk ? (await run(["wg", "genpsk"])).trim() : undefined;
    if (psk) await Deno.writeTextFile(`${dir}/psk`, psk + "\n");
    const ourPublicKey = (await run(["wg", "pubkey"], ourPrivateKey)).trim();

    wireguardGo = lab.spawn(wgHost.ns, ["wireguard-go", "-f", device], {
      WG_PROCESS_FOREGROUND: "1",
      LOG_LEVEL: "verbose",
    });
    await waitFor(() => exists(`/var/run/wireguard/${device}.sock`), {
      timeoutMs: 10_000,
      what: `wireguard-go's UAPI socket for ${device}`,
    });
    const wgSet = [
      "wg",
      "set",
      device,
      "private-key",
      `${dir}/wg.key`,
      "listen-port",
      String(PORT),
      "peer",
      ourPublicKey,
      "allowed-ips",
      "10.10.1.0/24",
      "endpoint",
      `${ourHost.ip}:${PORT}`,
    ];
    if (psk) wgSet.push("preshared-key", `${dir}/psk`);
    await mustExec(lab, wgHost.ns, wgSet);
    await lab.ip(wgHost.ns, "addr", "add", "10.10.2.1/32", "dev", device);
    await lab.ip(wgHost.ns, "link", "set", device, "up");
    await lab.ip(wgHost.ns, "route", "add", "10.10.1.0/24", "dev", device);
    await body({
      lab,
      wgHost,
      ourHost,
      device,
      wgPublicKey,
      ourPrivateKey,
      ourPublicKey,
      psk,
      wireguardGo,
      dir,
    });
  } finally {
    // SIGTERM lets wireguard-go remove its UAPI socket; then the lab kills the rest.
    await wireguardGo?.stop("SIGTERM");
    await Deno.remove(`/var/run/wireguard/${device}.sock`).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await lab.dispose();
  }
}

function fixtureArgs(setup: Setup, extra: string[]): string[] {
  const args = [
    Deno.execPath(),
    "run",
    "--allow-all",
    "--unstable-net",
    FIXTURE,
    "--private-key",
    setup.ourPrivateKey,
    "--peer-public-key",
    setup.wgPublicKey,
    "--listen-port",
    String(PORT),
    "--allowed-ips",
    "10.10.2.0/24",
    "--address",
    "10.10.1.1",
    "--target",
    "10.10.2.1",
    ...extra,
  ];
  if (setup.psk) args.push("--preshared-key", setup.psk);
  return args;
}

/** Runs the fixture to completion in our namespace and returns its report. */
async function runFixture(setup: Setup, extra: string[]): Promise<PeerReport> {
  const result = await setup.lab.exec(setup.ourHost.ns, fixtureArgs(setup, extra));
  return parseReport(result.stdout, result.stderr + "\n" + setup.wireguardGo.log());
}

function parseReport(stdout: string, context: string): PeerReport {
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`wg_peer fixture printed no report:\n${stdout}\n${context.slice(-3000)}`);
  }
}

async function wgShow(setup: Setup, field: string): Promise<string> {
  return (await mustExec(setup.lab, setup.wgHost.ns, ["wg", "show", setup.device, field])).trim();
}

Deno.test({
  name: "our device initiates to wireguard-go: ICMP echo requests are answered (no PSK)",
  ignore: skip !== undefined,
  fn: () =>
    withWireguardGo({ psk: false }, async (setup) => {
      const report = await runFixture(setup, [
        "--peer-endpoint",
        `${setup.wgHost.ip}:${PORT}`,
        "--ping",
        "3",
        "--timeout-ms",
        "15000",
      ]);
      assert.equal(report.provider, "libsodium");
      assert.equal(report.publicKey, setup.ourPublicKey, "our public key is the one wg derives");
      assert.equal(report.replies, 3, JSON.stringify(report));
      assert.equal(report.badReplies, 0);
      assert.equal(report.handshakes, 1);
      assert.equal(report.counters.decrypt_failed, 0);
      // wireguard-go saw a handshake with our key and counted traffic both ways.
      const handshake = await wgShow(setup, "latest-handshakes");
      assert.match(handshake, new RegExp(`^${escape(report.publicKey)}\\s+[1-9]\\d+$`));
      const transfer = (await wgShow(setup, "transfer")).split(/\s+/);
      assert.ok(Number(transfer[1]) > 0 && Number(transfer[2]) > 0, transfer.join(" "));
    }),
});

Deno.test({
  name: "wireguard-go initiates to our device: its pings are answered (no PSK)",
  ignore: skip !== undefined,
  fn: () =>
    withWireguardGo({ psk: false }, async (setup) => {
      await answersPingsFromWireguardGo(setup);
    }),
});

Deno.test({
  name:
    "with a preshared key: we initiate, then a restarted device with the same key handshakes again",
  ignore: skip !== undefined,
  fn: () =>
    withWireguardGo({ psk: true }, async (setup) => {
      const first = await runFixture(setup, [
        "--peer-endpoint",
        `${setup.wgHost.ip}:${PORT}`,
        "--ping",
        "2",
        "--timeout-ms",
        "15000",
      ]);
      assert.equal(first.replies, 2, JSON.stringify(first));
      // A new process: no session, a newer TAI64N timestamp. wireguard-go must accept it.
      const second = await runFixture(setup, [
        "--peer-endpoint",
        `${setup.wgHost.ip}:${PORT}`,
        "--ping",
        "2",
        "--timeout-ms",
        "15000",
      ]);
      assert.equal(second.replies, 2, JSON.stringify(second));
      assert.equal(second.handshakes, 1);
      assert.equal(second.counters.handshake_failed, 0);
    }),
});

Deno.test({
  name: "with a preshared key: wireguard-go initiates and its pings are answered",
  ignore: skip !== undefined,
  fn: () =>
    withWireguardGo({ psk: true }, async (setup) => {
      await answersPingsFromWireguardGo(setup);
    }),
});

Deno.test({
  name: "a preshared key that does not match wireguard-go's gets no session",
  ignore: skip !== undefined,
  fn: () =>
    withWireguardGo({ psk: true }, async (setup) => {
      const wrong = { ...setup, psk: (await run(["wg", "genpsk"])).trim() };
      const report = await runFixture(wrong, [
        "--peer-endpoint",
        `${setup.wgHost.ip}:${PORT}`,
        "--ping",
        "1",
        "--timeout-ms",
        "3000",
      ]);
      assert.equal(report.replies, 0);
      assert.equal(report.handshakes, 0);
      // wireguard-go accepts the initiation (the PSK enters only at the response) and
      // our side refuses its response.
      assert.ok(report.counters.handshake_failed >= 1, JSON.stringify(report.counters));
    }),
});

/** Starts the fixture answering, pings from wireguard-go's namespace, checks both sides. */
async function answersPingsFromWireguardGo(setup: Setup): Promise<void> {
  // No --peer-endpoint: the fixture learns wireguard-go's address from its initiation.
  const fixture = setup.lab.spawn(
    setup.ourHost.ns,
    fixtureArgs(setup, ["--answer", "3", "--timeout-ms", "15000"]),
  );
  try {
    await waitFor(() => fixture.log().includes("ready"), { timeoutMs: 10_000, what: "fixture" });
    const ping = await setup.lab.exec(setup.wgHost.ns, [
      "ping",
      "-n",
      "-c",
      "3",
      "-i",
      "0.2",
      "-W",
      "3",
      "10.10.1.1",
    ]);
    assert.equal(ping.code, 0, `ping from wireguard-go's side failed:\n${ping.stdout}`);
    assert.match(ping.stdout, /3 packets transmitted, 3 received/);
    await waitFor(() => fixture.log().trim().endsWith("}"), { timeoutMs: 10_000, what: "report" });
    const report = parseReport(fixture.log(), setup.wireguardGo.log());
    assert.equal(report.answered, 3, JSON.stringify(report));
    assert.equal(report.handshakes, 1);
    assert.equal(report.counters.responses_sent, 1);
    assert.equal(report.endpoint, `${setup.wgHost.ip}:${PORT}`);
  } finally {
    await fixture.stop("SIGKILL");
  }
}

async function run(argv: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const output = await child.output();
  if (!output.success) {
    throw new Error(`${argv.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

async function mustExec(lab: Lab, ns: string, argv: string[]): Promise<string> {
  const result = await lab.exec(ns, argv);
  if (result.code !== 0) throw new Error(`${argv.join(" ")} in ${ns}: ${result.stderr.trim()}`);
  return result.stdout;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
