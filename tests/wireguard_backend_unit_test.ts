/** The wireguard backend's lease handling and refusals, without devices. */
import assert from "node:assert/strict";
import type { Underlay } from "../lib/underlay.ts";
import { parseNetworkConfig } from "../lib/config.ts";
import { decodeLeaseValue, type Lease } from "../lib/lease.ts";
import { WireguardBackend } from "../lib/backends/wireguard.ts";
import { Mailbox } from "../lib/wireguard/mailbox.ts";

const UNDERLAY = { name: "eth0", mtu: 1500, publicIp: 0xac1ffe0b } as unknown as Underlay;
const KEY = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

function peerLease(value: string, subnet = 0x0a0a0500): Lease {
  const attrs = decodeLeaseValue(value);
  if (typeof attrs === "string") throw new Error(attrs);
  return {
    subnet: { ip: subnet, prefixLen: 24 },
    attrs,
    etcdLeaseId: "1",
    modRevision: "2",
    createRevision: "2",
  };
}

async function withBackend(
  config: string,
  body: (backend: WireguardBackend, stateDir: string) => void,
): Promise<void> {
  const stateDir = await Deno.makeTempDir();
  try {
    body(
      new WireguardBackend({
        config: parseNetworkConfig(config),
        underlay: UNDERLAY,
        stateDir,
        device: "flannel-wg",
      }),
      stateDir,
    );
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
}

const WG = `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard"}}`;

Deno.test("the lease carries flannel's BackendData and the MTU is underlay − 80", async () => {
  await withBackend(WG, (backend, stateDir) => {
    assert.equal(backend.mtu, 1420);
    assert.equal(backend.device, "flannel-wg");
    const data = backend.backendData as { PublicKey: string; Port: number };
    assert.match(data.PublicKey, /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(data.Port, 51820);
    assert.deepEqual(backend.ownClaims, [`PublicKey ${data.PublicKey}`]);
    assert.deepEqual(backend.owned().files, [`${stateDir}/wgkey`]);
  });
});

Deno.test("peers' BackendData is checked; one PublicKey is one claim", async () => {
  await withBackend(WG, (backend) => {
    const good = peerLease(
      `{"PublicIP":"172.31.254.12","BackendType":"wireguard","BackendData":{"PublicKey":"${KEY}"}}`,
    );
    assert.equal(backend.checkPeer(good), undefined);
    assert.deepEqual(backend.claims(good), [`PublicKey ${KEY}`]);
    const withPort = peerLease(
      `{"PublicIP":"172.31.254.12","BackendType":"wireguard","BackendData":{"PublicKey":"${KEY}","Port":51000}}`,
    );
    assert.equal(backend.checkPeer(withPort), undefined);
    for (
      const [data, reason] of [
        [`{}`, /PublicKey is not a WireGuard public key/],
        [`{"PublicKey":"short"}`, /PublicKey is not a WireGuard public key/],
        [`{"PublicKey":42}`, /PublicKey is not a WireGuard public key/],
        [`{"PublicKey":"${KEY}","Port":70000}`, /Port is not a UDP port/],
        [`{"PublicKey":"${KEY}","Port":"51820"}`, /Port is not a UDP port/],
      ] as const
    ) {
      const lease = peerLease(
        `{"PublicIP":"172.31.254.12","BackendType":"wireguard","BackendData":${data}}`,
      );
      assert.match(backend.checkPeer(lease) ?? "", reason, data);
    }
  });
});

Deno.test("peers' BackendData keys match in any case, as flanneld's decoder reads them", async () => {
  await withBackend(WG, (backend) => {
    const lower = peerLease(
      `{"PublicIP":"172.31.254.12","BackendType":"wireguard","BackendData":{"publickey":"${KEY}","PORT":51000}}`,
    );
    assert.equal(backend.checkPeer(lower), undefined);
    assert.deepEqual(backend.claims(lower), [`PublicKey ${KEY}`]);
    const badPort = peerLease(
      `{"PublicIP":"172.31.254.12","BackendType":"wireguard","BackendData":{"PublicKey":"${KEY}","port":70000}}`,
    );
    assert.match(backend.checkPeer(badPort) ?? "", /BackendData.Port is not a UDP port/);
  });
});

Deno.test("networks the wireguard backend does not carry are refused with the reason", async () => {
  await assert.rejects(
    () =>
      withBackend(
        `{"Network":"10.10.0.0/16","EnableIPv6":true,"IPv6Network":"fd10::/48","Backend":{"Type":"wireguard"}}`,
        () => {},
      ),
    /carries IPv4 only.*"EnableIPv6": false/,
  );
  await assert.rejects(
    () =>
      withBackend(
        `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","Mode":"ipv6"}}`,
        () => {},
      ),
    /"Mode" "ipv6" needs an IPv6 underlay/,
  );
});

Deno.test("the mailbox hands the latest value across, once", () => {
  const box = new Mailbox(1024);
  const reader = new Mailbox(box.buffer);
  assert.equal(reader.read(), undefined);
  box.write({ a: 1 });
  box.write([{ b: 2 }]);
  assert.deepEqual(reader.read(), [{ b: 2 }]);
  assert.equal(reader.read(), undefined);
  assert.throws(() => box.write("x".repeat(2000)), /do not fit/);
});
