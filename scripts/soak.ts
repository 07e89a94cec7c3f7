/**
 * deno task soak [--minutes 30]: iperf3 and ping through the udp backend while peers join
 * and leave every few seconds. Passes when agent RSS grows less than 10 %, no ping between
 * the hosts that stay is lost, and the staying agents log no error. Not part of CI.
 */
import { parseArgs } from "node:util";
import { Lab } from "../lab/lab.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { minutes: { type: "string", default: "30" } },
});
const minutes = Number(values.minutes);
const rss = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) / 1024;
const say = (text: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${text}`);

const lab = await Lab.create({ prefix: "ovsoak" });
const cleanup = async () => {
  await lab.dispose();
};
Deno.addSignalListener("SIGINT", async () => {
  await cleanup();
  Deno.exit(130);
});
let ok = false;
try {
  await lab.setConfig({ Network: "10.10.0.0/16", Backend: { Type: "udp" } });
  const [h1, h2] = [await lab.addHost(), await lab.addHost()];
  const churn = [await lab.addHost(), await lab.addHost(), await lab.addHost()];
  for (const host of [h1, h2]) lab.startAgent(host);
  await lab.waitReady(h1);
  await lab.waitReady(h2);
  const [c1, c2] = [await lab.addContainer(h1), await lab.addContainer(h2)];
  const seconds = Math.round(minutes * 60);
  const server = lab.spawn(c2.ns, ["iperf3", "-s"]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  // A modest, steady load (100 Mbit/s) so churn and measurement share the cores with it.
  const iperf = lab.spawn(c1.ns, [
    "iperf3",
    "-c",
    c2.ip,
    "-t",
    String(seconds),
    "-b",
    "100M",
    "-i",
    "60",
  ]);
  const ping = lab.spawn(c1.ns, ["ping", "-n", "-i", "0.2", "-W", "1", c2.ip]);
  const pid = lab.agent(h1)!.child.pid;
  await new Promise((resolve) => setTimeout(resolve, 30_000)); // warm up before the RSS baseline
  const rssStart = rss(pid);
  say(`soak for ${minutes} min: h1 agent RSS ${rssStart.toFixed(1)} MB after warm-up`);
  const end = Date.now() + seconds * 1000 - 30_000;
  let joins = 0;
  let leaves = 0;
  let turn = 0;
  const running = new Set<string>();
  while (Date.now() < end) {
    const host = churn[turn++ % churn.length];
    if (running.has(host.name)) {
      await lab.agent(host)!.stop();
      const subnet =
        /FLANNEL_SUBNET=(\S+)\.1\/24/.exec(await Deno.readTextFile(host.subnetFile))![1];
      await lab.etcdctl("del", `/coreos.com/network/subnets/${subnet}.0-24`);
      running.delete(host.name);
      leaves++;
    } else {
      lab.startAgent(host);
      await lab.waitReady(host);
      running.add(host.name);
      joins++;
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
    if ((joins + leaves) % 20 === 0) {
      say(`${joins} joins, ${leaves} leaves; h1 RSS ${rss(pid).toFixed(1)} MB`);
    }
  }
  const rssEnd = rss(pid);
  await ping.stop("SIGINT");
  await iperf.stop("SIGINT");
  await server.stop("SIGKILL");
  const pings = /(\d+) packets transmitted, (\d+) received/.exec(ping.log());
  const [sent, received] = pings ? [Number(pings[1]), Number(pings[2])] : [0, 0];
  const errors = [h1, h2].flatMap((host) =>
    lab.agent(host)!.log().split("\n").filter((line) => / ERROR /.test(line))
  );
  const growth = (100 * (rssEnd - rssStart)) / rssStart;
  say(`joins ${joins}, leaves ${leaves}; pings ${received}/${sent} (lost ${sent - received})`);
  say(
    `h1 agent RSS ${rssStart.toFixed(1)} → ${rssEnd.toFixed(1)} MB (${growth >= 0 ? "+" : ""}${
      growth.toFixed(1)
    } %); errors in the logs: ${errors.length}`,
  );
  for (const line of errors.slice(0, 5)) say(`  ${line}`);
  ok = growth < 10 && sent === received && errors.length === 0;
  say(ok ? "soak passed" : "soak FAILED");
} finally {
  await cleanup();
}
Deno.exit(ok ? 0 : 1);
