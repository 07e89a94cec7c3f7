/**
 * An overlay host on the userspace wireguard path and a host whose WireGuard device is
 * Debian's `wireguard-go`, configured with `wg set` and `ip` exactly as flannel's wireguard
 * backend configures its device from etcd (pkg/backend/wireguard, device.go):
 *
 *   its lease, as flanneld writes it: {"PublicIP":"<ip>","PublicIPv6":null,
 *     "BackendType":"wireguard","BackendData":{"PublicKey":"<base64>"}} (v0.20 has no Port)
 *   wg set <dev> private-key <key file> listen-port 51820
 *   per peer lease: wg set <dev> peer <PublicKey> preshared-key <PSK> persistent-keepalive
 *     <PersistentKeepaliveInterval> endpoint <PublicIP>:<ListenPort> allowed-ips <subnet>
 *   ip addr add <subnet.ip>/32 dev <dev>; ip link set <dev> mtu <underlay − 80> up;
 *   ip route replace <Network> dev <dev>
 *
 * The device name carries a random suffix instead of flannel-wg: wireguard-go's UAPI socket
 * lives in /var/run/wireguard/<dev>.sock, which network namespaces do not separate. The
 * name never shows on the wire.
 */
import assert from "node:assert/strict";
import { INTEGRATION, waitFor } from "./helpers.ts";
import { Lab, type LabContainer, type LabHost, type LabProcess } from "../lab/lab.ts";

const PORT = 51820;
const NETWORK = "10.10.0.0/16";
/** The wireguard-go host's subnet, leased by the test before the overlay host chooses. */
const WG_SUBNET = "10.10.200.0/24";
const WG_ADDRESS = "10.10.200.0";

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

async function must(lab: Lab, ns: string, argv: string[]): Promise<string> {
  const result = await lab.exec(ns, argv);
  if (result.code !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

async function reachableWithin(
  lab: Lab,
  from: LabContainer | LabHost,
  to: string,
  ms: number,
): Promise<number | undefined> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (await lab.ping(from, to, { timeoutS: 0.3 }) !== undefined) {
      return performance.now() - started;
    }
  }
  return undefined;
}

/** wireguard-go on `host`, configured as flanneld's wireguard backend would from etcd. */
async function startFlannelStyleDevice(
  lab: Lab,
  host: LabHost,
  device: string,
  files: { key: string; psk: string },
  peer: { publicKey: string; endpoint: string; subnet: string },
): Promise<LabProcess> {
  const process = lab.spawn(host.ns, ["wireguard-go", "-f", device], {
    WG_PROCESS_FOREGROUND: "1",
  });
  await waitFor(
    () => Deno.stat(`/var/run/wireguard/${device}.sock`).then(() => true, () => false),
    { timeoutMs: 10_000, what: `wireguard-go's UAPI socket for ${device}` },
  );
  await must(lab, host.ns, [
    "wg",
    "set",
    device,
    "private-key",
    files.key,
    "listen-port",
    String(PORT),
  ]);
  await must(lab, host.ns, [
    "wg",
    "set",
    device,
    "peer",
    peer.publicKey,
    "preshared-key",
    files.psk,
    "persistent-keepalive",
    "0",
    "endpoint",
    peer.endpoint,
    "allowed-ips",
    peer.subnet,
  ]);
  await lab.ip(host.ns, "addr", "replace", `${WG_ADDRESS}/32`, "dev", device);
  await lab.ip(host.ns, "link", "set", device, "mtu", "1420", "up");
  await lab.ip(host.ns, "route", "replace", NETWORK, "dev", device);
  return process;
}

Deno.test({
  name: "an overlay host and a wireguard-go host configured as flannel would reach each other",
  ignore: skip !== undefined,
  ...INTEGRATION,
  async fn(t) {
    await using lab = await Lab.create({ prefix: "wgf" });
    const device = `wgf${crypto.randomUUID().slice(0, 8)}`;
    const dir = await Deno.makeTempDir({ prefix: "wgf-keys-" });
    let wireguardGo: LabProcess | undefined;
    try {
      const psk = (await lab.exec(lab.underlayNs, ["wg", "genpsk"])).stdout.trim();
      await Deno.writeTextFile(`${dir}/psk`, psk + "\n", { mode: 0o600 });
      await lab.setConfig({
        Network: NETWORK,
        Backend: { Type: "wireguard", PSK: psk, PersistentKeepaliveInterval: 0 },
      });
      const wgHost = await lab.addHost();
      const ourHost = await lab.addHost();

      // The flannel host: its key as flanneld makes it, its lease as flanneld writes it.
      const wgKey = (await lab.exec(lab.underlayNs, ["wg", "genkey"])).stdout.trim();
      await Deno.writeTextFile(`${dir}/wgkey`, wgKey, { mode: 0o400 });
      const wgPublicKey = (await lab.sh(lab.underlayNs, `wg pubkey < ${dir}/wgkey`)).stdout.trim();
      const grant = await lab.etcdctl("lease", "grant", "600");
      const leaseId = /lease ([0-9a-f]+) granted/.exec(grant.stdout)![1];
      await lab.etcdctl(
        "put",
        `/coreos.com/network/subnets/${WG_SUBNET.replace("/", "-")}`,
        JSON.stringify({
          PublicIP: wgHost.ip,
          PublicIPv6: null,
          BackendType: "wireguard",
          BackendData: { PublicKey: wgPublicKey },
        }),
        `--lease=${leaseId}`,
      );

      lab.startAgent(ourHost);
      await lab.waitReady(ourHost);
      const ourSubnet = await lab.subnetOf(ourHost);
      const ourLease = JSON.parse(
        (await lab.etcdctl(
          "get",
          `/coreos.com/network/subnets/${ourSubnet.replace("/", "-")}`,
          "--print-value-only",
        )).stdout,
      );
      assert.equal(ourLease.BackendType, "wireguard");
      const ourPeer = {
        publicKey: ourLease.BackendData.PublicKey,
        endpoint: `${ourLease.PublicIP}:${PORT}`,
        subnet: ourSubnet,
      };
      wireguardGo = await startFlannelStyleDevice(
        lab,
        wgHost,
        device,
        { key: `${dir}/wgkey`, psk: `${dir}/psk` },
        ourPeer,
      );
      const container = await lab.addContainer(ourHost);

      await t.step("ping both ways: overlay container ↔ the wireguard-go host", async () => {
        assert.notEqual(await reachableWithin(lab, container, WG_ADDRESS, 10_000), undefined);
        assert.notEqual(await reachableWithin(lab, wgHost, container.ip, 10_000), undefined);
        const handshakes = await must(lab, wgHost.ns, ["wg", "show", device, "latest-handshakes"]);
        assert.match(handshakes, new RegExp(`^${escape(ourPeer.publicKey)}\\s+[1-9]\\d+`));
        // Our status shows the handshake and the endpoint flannel's lease names.
        await waitFor(async () => {
          const peer = (await lab.status(ourHost)).state?.peerList?.[0];
          return (peer?.lastHandshake ?? 0) > 0 && peer?.endpoint === `${wgHost.ip}:${PORT}`;
        }, { what: "our status to show the handshake with wireguard-go" });
      });

      await t.step("TCP both ways (our offload path against wireguard-go)", async () => {
        const toUs = await lab.iperf(container.ns, wgHost.ns, container.ip, 2);
        const fromUs = await lab.iperf(wgHost.ns, container.ns, WG_ADDRESS, 2);
        assert.ok(toUs > 0.05 && fromUs > 0.05, `${toUs} / ${fromUs} Gbit/s`);
        const counters = await lab.counters(ourHost);
        assert.equal(counters.drop_decrypt_failed ?? 0, 0);
        assert.equal(counters.drop_not_allowed_source ?? 0, 0);
        console.log(
          `  TCP wireguard-go → overlay ${toUs.toFixed(2)} Gbit/s, overlay → wireguard-go ${
            fromUs.toFixed(2)
          } Gbit/s`,
        );
      });

      await t.step("the overlay agent restarts: traffic resumes within one handshake", async () => {
        assert.equal(await lab.agent(ourHost)!.stop(), 0);
        lab.startAgent(ourHost);
        await lab.waitReady(ourHost);
        const ms = await reachableWithin(lab, wgHost, container.ip, 5_000);
        assert.notEqual(ms, undefined, "wireguard-go host got no answer within 5 s");
        assert.notEqual(await reachableWithin(lab, container, WG_ADDRESS, 5_000), undefined);
      });

      await t.step(
        "wireguard-go restarts (as flanneld would recreate it): both ways again",
        async () => {
          await wireguardGo!.stop("SIGTERM");
          await Deno.remove(`/var/run/wireguard/${device}.sock`).catch(() => {});
          wireguardGo = await startFlannelStyleDevice(
            lab,
            wgHost,
            device,
            { key: `${dir}/wgkey`, psk: `${dir}/psk` },
            ourPeer,
          );
          assert.notEqual(await reachableWithin(lab, wgHost, container.ip, 10_000), undefined);
          assert.notEqual(await reachableWithin(lab, container, WG_ADDRESS, 10_000), undefined);
        },
      );
      await t.step(
        "after rekeys (sessions we initiate renewed every 2 s) both ways still",
        async () => {
          assert.equal(await lab.agent(ourHost)!.stop(), 0);
          lab.startAgent(ourHost, [], { env: { OVERLAY_WG_REKEY_AFTER_MS: "2000" } });
          await lab.waitReady(ourHost);
          // We send first, so the session is ours to renew; traffic keeps it in use.
          assert.notEqual(await reachableWithin(lab, container, WG_ADDRESS, 5_000), undefined);
          const handshake = async () =>
            (await lab.status(ourHost)).state?.peerList?.[0]?.lastHandshake ?? 0;
          const first = await handshake();
          const pings = await lab.exec(container.ns, [
            "ping",
            "-n",
            "-q",
            "-c",
            "30",
            "-i",
            "0.2",
            WG_ADDRESS,
          ]);
          assert.match(pings.stdout, / 0% packet loss/, pings.stdout);
          await waitFor(async () => (await handshake()) - first >= 3_000, {
            what: "two or more rekeys with wireguard-go",
          });
          const seen = await must(lab, wgHost.ns, ["wg", "show", device, "latest-handshakes"]);
          const at = Number(seen.trim().split(/\s+/)[1]) * 1000;
          assert.ok(at >= first + 2_000, `wireguard-go's latest handshake ${at} vs first ${first}`);
          assert.notEqual(await reachableWithin(lab, wgHost, container.ip, 5_000), undefined);
          assert.equal((await lab.counters(ourHost)).drop_decrypt_failed ?? 0, 0);
        },
      );
    } finally {
      await wireguardGo?.stop("SIGTERM");
      await Deno.remove(`/var/run/wireguard/${device}.sock`).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
