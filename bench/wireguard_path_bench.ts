/**
 * The wireguard backend's userspace path against wireguard-go, side by side in one run,
 * between the same two namespaces: two lab hosts run `overlay run` with Backend wireguard
 * (flannel-wg, port 51820, 10.10.0.0/16), and each also runs a wireguard-go device
 * (port 51830, 10.99.0.0/24) configured with `wg set` as flannel would configure one.
 * iperf3 TCP host to host over each, in alternating rounds (medians), then ping over each.
 */
import { Lab, type LabHost, type LabProcess } from "../lab/lab.ts";
import { waitFor } from "../lab/wait.ts";

export interface WireguardPathBenchResult {
  overlayGbps: number;
  wireguardGoGbps: number;
  samples: { overlay: number[]; wireguardGo: number[] };
  pingAvgMs: { overlay: number; wireguardGo: number };
  dataPath: string;
  /** Drops on either overlay host during the runs, by reason. */
  drops: Record<string, number>;
  /** CPU seconds per second the receiving side used (overlay agent, wireguard-go). */
  receiverCpu: { overlay: number; wireguardGo: number };
  seconds: number;
}

export const WIREGUARD_PATH_TARGETS = { ratio: 1.0, pingRatio: 1.5 };

const ROUNDS = 3;
const WG_GO_PORT = 51830;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function iperf(lab: Lab, server: string, client: string, ip: string, seconds: number) {
  const daemon = lab.spawn(server, ["iperf3", "-s", "-1"]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const result = await lab.exec(client, ["iperf3", "-c", ip, "-t", String(seconds), "-J"]);
  await daemon.stop("SIGKILL");
  if (result.code !== 0) throw new Error(`iperf3 to ${ip} failed: ${result.stdout.slice(-300)}`);
  return JSON.parse(result.stdout).end.sum_received.bits_per_second / 1e9;
}

async function pingAvg(lab: Lab, ns: string, ip: string): Promise<number> {
  const result = await lab.exec(ns, ["ping", "-n", "-q", "-c", "20", "-i", "0.2", ip]);
  const match = /= [\d.]+\/([\d.]+)\//.exec(result.stdout);
  if (!match) throw new Error(`ping ${ip} failed: ${result.stdout}`);
  return Number(match[1]);
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  try {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The PID of the process in `ns` whose command line matches `pattern`. */
async function pidIn(lab: Lab, ns: string, pattern: string): Promise<number> {
  const result = await lab.exec(ns, ["pgrep", "-n", "-f", pattern]);
  const pid = Number(result.stdout.trim().split("\n")[0]);
  if (!pid) throw new Error(`no process "${pattern}" in ${ns}`);
  return pid;
}

export async function wireguardPathBench(seconds = 5): Promise<WireguardPathBenchResult> {
  await using lab = await Lab.create({ prefix: "wgb" });
  const devices: string[] = [];
  const wgGo: LabProcess[] = [];
  try {
    await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "wireguard" } });
    const [h1, h2] = await lab.readyHosts(2);
    const overlayIp = async (host: LabHost) => (await lab.subnetOf(host)).replace("/24", "");
    const ip1 = await overlayIp(h1);
    const ip2 = await overlayIp(h2);

    // wireguard-go on the same two namespaces, configured as flannel's backend would.
    const keys = await Promise.all([h1, h2].map(async () => {
      const key = (await lab.exec(lab.underlayNs, ["wg", "genkey"])).stdout.trim();
      const pub = (await lab.sh(lab.underlayNs, `echo ${key} | wg pubkey`)).stdout.trim();
      return { key, pub };
    }));
    const dir = await Deno.makeTempDir({ prefix: "wgb-" });
    const hosts = [h1, h2];
    for (let i = 0; i < 2; i++) {
      const device = `wgb${crypto.randomUUID().slice(0, 8)}`;
      devices.push(device);
      await Deno.writeTextFile(`${dir}/key${i}`, keys[i].key, { mode: 0o600 });
      wgGo.push(
        lab.spawn(hosts[i].ns, ["wireguard-go", "-f", device], { WG_PROCESS_FOREGROUND: "1" }),
      );
      await waitFor(
        () => Deno.stat(`/var/run/wireguard/${device}.sock`).then(() => true, () => false),
        { timeoutMs: 10_000, what: "wireguard-go's UAPI socket" },
      );
    }
    for (let i = 0; i < 2; i++) {
      const other = 1 - i;
      const set = await lab.exec(hosts[i].ns, [
        "wg",
        "set",
        devices[i],
        "private-key",
        `${dir}/key${i}`,
        "listen-port",
        String(WG_GO_PORT),
        "peer",
        keys[other].pub,
        "endpoint",
        `${hosts[other].ip}:${WG_GO_PORT}`,
        "allowed-ips",
        `10.99.0.${other + 1}/32`,
      ]);
      if (set.code !== 0) throw new Error(`wg set: ${set.stderr}`);
      await lab.ip(hosts[i].ns, "addr", "add", `10.99.0.${i + 1}/32`, "dev", devices[i]);
      await lab.ip(hosts[i].ns, "link", "set", devices[i], "mtu", "1420", "up");
      await lab.ip(hosts[i].ns, "route", "add", "10.99.0.0/24", "dev", devices[i]);
    }
    await Deno.remove(dir, { recursive: true });

    const agentPid = await pidIn(lab, h2.ns, `state-dir=${h2.stateDir}`);
    const wgGoPid = await pidIn(lab, h2.ns, `wireguard-go -f ${devices[1]}`);
    // Warm both up (handshakes, TCP windows) before measuring.
    await lab.ping(h1, ip2, { count: 3 });
    await lab.ping(h1, "10.99.0.2", { count: 3 });
    void ip1;
    const samples = { overlay: [] as number[], wireguardGo: [] as number[] };
    const cpu = { overlay: [] as number[], wireguardGo: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0
        ? ["overlay", "wireguardGo"] as const
        : ["wireguardGo", "overlay"] as const;
      for (const which of order) {
        const pid = which === "overlay" ? agentPid : wgGoPid;
        const before = cpuSeconds(pid);
        const started = performance.now();
        const ip = which === "overlay" ? ip2 : "10.99.0.2";
        samples[which].push(await iperf(lab, h2.ns, h1.ns, ip, seconds));
        cpu[which].push((cpuSeconds(pid) - before) / ((performance.now() - started) / 1000));
      }
    }
    const pingAvgMs = {
      overlay: await pingAvg(lab, h1.ns, ip2),
      wireguardGo: await pingAvg(lab, h1.ns, "10.99.0.2"),
    };
    const drops: Record<string, number> = {};
    let dataPath = "";
    for (const host of [h1, h2]) {
      const status = await lab.status(host);
      dataPath = status.state?.dataPath ?? "";
      for (const [name, value] of Object.entries(status.state?.counters ?? {})) {
        if (name.startsWith("drop_") && value > 0) drops[name] = (drops[name] ?? 0) + value;
      }
    }
    return {
      overlayGbps: median(samples.overlay),
      wireguardGoGbps: median(samples.wireguardGo),
      samples,
      pingAvgMs,
      dataPath,
      drops,
      receiverCpu: { overlay: median(cpu.overlay), wireguardGo: median(cpu.wireguardGo) },
      seconds,
    };
  } finally {
    for (const process of wgGo) await process.stop("SIGTERM");
    for (const device of devices) {
      await Deno.remove(`/var/run/wireguard/${device}.sock`).catch(() => {});
    }
  }
}

if (import.meta.main) {
  console.log(JSON.stringify(await wireguardPathBench(Number(Deno.args[0] ?? 5)), null, 2));
}
