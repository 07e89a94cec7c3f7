/**
 * The WireGuard kernel path's messages, byte for byte. This machine's kernel has no
 * wireguard module, so nothing here reaches a real WireGuard device: each expected
 * message was derived by hand from include/uapi/linux/wireguard.h and linux/genetlink.h
 * (the layout in the comments, field by field) and then checked against what
 * wireguard-tools' `wg` (Debian's 1.0.20210914) sends for the same command. `wg` cannot
 * reach a missing module either, so it is run against tests/fixtures/fake_genl.c, an
 * LD_PRELOAD stand-in for the kernel's generic netlink that records what `wg` sends and
 * answers a dump with our hand-made reply; the "wg agrees" tests do that again on every
 * run where gcc and wg exist. Sequence number 1, family id 0x1b (the stand-in's).
 *
 * Keys: private 01..20, preshared 41..60, peer 81..a0, second peer 11..30 (32 bytes
 * counting up from the first), device public key c1..e0.
 */
import assert from "node:assert/strict";
import { familyRequest, GENL_ID_CTRL, parseFamilyId } from "../ffi/genetlink_codec.ts";
import { Netlink } from "../ffi/netlink.ts";
import { encodeRequests, formatAddress, type Message, type Request } from "../ffi/netlink_codec.ts";
import {
  type DeviceStatus,
  getDeviceRequest,
  parseDevice,
  parseSockaddr,
  setDeviceRequest,
  sockaddr,
} from "../ffi/wireguard_codec.ts";
import { runCommand } from "../lab/run.ts";
import { parseIp4 } from "../lib/ip.ts";
import { parseIp6 } from "../lib/ip6.ts";

const ip = (text: string) => parseIp4(text)!;
const ip6 = (text: string) => parseIp6(text)!;
const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const bytes = (text: string) => new Uint8Array(text.match(/../g)!.map((h) => parseInt(h, 16)));
/** 32 key bytes counting up from `first`. */
const key = (first: number) => new Uint8Array(32).map((_, i) => first + i);
const base64 = (k: Uint8Array) => btoa(String.fromCharCode(...k));

const FAMILY = 0x1b;
const PRIVATE = key(0x01);
const PSK = key(0x41);
const PEER = key(0x81);
const PEER_B = key(0x11);
const K_PRIVATE = hex(PRIVATE);
const K_PSK = hex(PSK);
const K_PEER = hex(PEER);
const K_PEER_B = hex(PEER_B);
const K_PUBLIC = hex(key(0xc1));

/** The header every wireguard request starts with: nlmsghdr then genlmsghdr. */
function header(length: number, flags: string, cmd: string): string {
  // u32 len | u16 type 0x1b (the family id) | u16 flags | u32 seq 1 | u32 pid 0
  // genlmsghdr: u8 cmd, u8 version 1, u16 reserved 0
  return length.toString(16).padStart(2, "0") + "000000" + "1b00" + flags + "01000000" +
    "00000000" + cmd + "010000";
}

const CASES: [string, () => Request, string][] = [
  [
    // nlmsghdr: len 0x24 = 36, type GENL_ID_CTRL 0x10, flags REQUEST|ACK 0x0005;
    // genlmsghdr: CTRL_CMD_GETFAMILY 3, version 1; CTRL_ATTR_FAMILY_NAME (2), len 14:
    // "wireguard" and its NUL (10 bytes) padded to 12.
    "genl ctrl get name wireguard (the family lookup wg makes first)",
    () => familyRequest("wireguard"),
    "24000000" + "1000" + "0500" + "01000000" + "00000000" + "03010000" +
    "0e000200" + "776972656775617264000000",
  ],
  [
    // 96 bytes, WG_CMD_SET_DEVICE (1), REQUEST|ACK:
    //   WGDEVICE_A_IFNAME (2), len 15: "flannel-wg\0", padded to 16
    //   WGDEVICE_A_PRIVATE_KEY (3), len 36: the 32 key bytes
    //   WGDEVICE_A_LISTEN_PORT (6), len 6: u16 51820 = 0xca6c, host order (6c ca), pad 2
    //   WGDEVICE_A_FWMARK (7), len 8: u32 0 (setconf turns a fwmark off)
    //   WGDEVICE_A_FLAGS (5), len 8: u32 WGDEVICE_F_REPLACE_PEERS (1)
    "wg setconf flannel-wg <[Interface] PrivateKey, ListenPort 51820>",
    () =>
      setDeviceRequest(FAMILY, {
        name: "flannel-wg",
        privateKey: PRIVATE,
        listenPort: 51820,
        fwmark: 0,
        replacePeers: true,
      }),
    header(0x60, "0500", "01") +
    "0f000200" + "666c616e6e656c2d77670000" +
    "24000300" + K_PRIVATE +
    "06000600" + "6cca0000" +
    "08000700" + "00000000" +
    "08000500" + "01000000",
  ],
  [
    // 184 bytes:
    //   IFNAME as above (16)
    //   WGDEVICE_A_PEERS (8 | NLA_F_NESTED 0x8000 = 0x8008), len 0x94 = 148
    //     peer (type 0 | NLA_F_NESTED = 0x8000), len 0x90 = 144
    //       WGPEER_A_PUBLIC_KEY (1), len 36
    //       WGPEER_A_PRESHARED_KEY (2), len 36
    //       WGPEER_A_ENDPOINT (4), len 20: sockaddr_in, 16 bytes: u16 AF_INET 2 (02 00),
    //         port 51820 big endian (ca 6c), 172.31.254.12 (ac 1f fe 0c), 8 zero bytes
    //       WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL (5), len 6: u16 25 (19 00), pad 2
    //       WGPEER_A_FLAGS (3), len 8: WGPEER_F_REPLACE_ALLOWEDIPS (2)
    //       WGPEER_A_ALLOWEDIPS (9 | nested = 0x8009), len 32
    //         allowed IP (type 0 | nested), len 28
    //           WGALLOWEDIP_A_FAMILY (1), len 6: u16 AF_INET 2, pad 2
    //           WGALLOWEDIP_A_IPADDR (2), len 8: 10.10.2.0 (0a 0a 02 00)
    //           WGALLOWEDIP_A_CIDR_MASK (3), len 5: u8 24 (0x18), pad 3
    "wg set flannel-wg peer <81..a0> preshared-key <41..60> endpoint 172.31.254.12:51820 " +
    "persistent-keepalive 25 allowed-ips 10.10.2.0/24",
    () =>
      setDeviceRequest(FAMILY, {
        name: "flannel-wg",
        peers: [{
          publicKey: PEER,
          presharedKey: PSK,
          endpoint: { ip: ip("172.31.254.12"), port: 51820 },
          keepaliveSeconds: 25,
          replaceAllowedIps: true,
          allowedIps: [{ ip: ip("10.10.2.0"), prefixLen: 24 }],
        }],
      }),
    header(0xb8, "0500", "01") +
    "0f000200" + "666c616e6e656c2d77670000" +
    "94000880" +
    "90000080" +
    "24000100" + K_PEER +
    "24000200" + K_PSK +
    "14000400" + "0200" + "ca6c" + "ac1ffe0c" + "0000000000000000" +
    "06000500" + "19000000" +
    "08000300" + "02000000" +
    "20000980" +
    "1c000080" + "06000100" + "02000000" + "08000200" + "0a0a0200" + "05000300" + "18000000",
  ],
  [
    // 200 bytes; no preshared key attribute (not given):
    //   PEERS len 0xa4 = 164 { peer len 0xa0 = 160 {
    //     PUBLIC_KEY
    //     ENDPOINT len 0x20 = 32: sockaddr_in6, 28 bytes: u16 AF_INET6 10 (0a 00), port
    //       51821 big endian (ca 6d), u32 flowinfo 0, fd00::12 (16 bytes), u32 scope id 0
    //     PERSISTENT_KEEPALIVE_INTERVAL len 6: 0 (off)
    //     FLAGS: REPLACE_ALLOWEDIPS
    //     ALLOWEDIPS len 0x48 = 72 {
    //       len 0x28 = 40 { FAMILY AF_INET6 (0a 00), IPADDR len 0x14 = 20: fd10:0:0:2::,
    //                       CIDR_MASK 64 (0x40) }
    //       len 28 { FAMILY AF_INET, IPADDR 10.10.2.0, CIDR_MASK 24 } } } }
    "wg set flannel-wg peer <81..a0> endpoint [fd00::12]:51821 persistent-keepalive 0 " +
    "allowed-ips fd10:0:0:2::/64,10.10.2.0/24",
    () =>
      setDeviceRequest(FAMILY, {
        name: "flannel-wg",
        peers: [{
          publicKey: PEER,
          endpoint: { ip: ip6("fd00::12"), port: 51821 },
          keepaliveSeconds: 0,
          replaceAllowedIps: true,
          allowedIps: [
            { ip: ip6("fd10:0:0:2::"), prefixLen: 64 },
            { ip: ip("10.10.2.0"), prefixLen: 24 },
          ],
        }],
      }),
    header(0xc8, "0500", "01") +
    "0f000200" + "666c616e6e656c2d77670000" +
    "a4000880" +
    "a0000080" +
    "24000100" + K_PEER +
    "20000400" + "0a00" + "ca6d" + "00000000" + "fd000000000000000000000000000012" + "00000000" +
    "06000500" + "00000000" +
    "08000300" + "02000000" +
    "48000980" +
    "28000080" + "06000100" + "0a000000" + "14000200" + "fd100000000000020000000000000000" +
    "05000300" + "40000000" +
    "1c000080" + "06000100" + "02000000" + "08000200" + "0a0a0200" + "05000300" + "18000000",
  ],
  [
    // 88 bytes: PEERS len 0x34 = 52 { peer len 0x30 = 48 { PUBLIC_KEY, FLAGS
    // WGPEER_F_REMOVE_ME (1) } }
    "wg set flannel-wg peer <81..a0> remove",
    () =>
      setDeviceRequest(FAMILY, { name: "flannel-wg", peers: [{ publicKey: PEER, remove: true }] }),
    header(0x58, "0500", "01") +
    "0f000200" + "666c616e6e656c2d77670000" +
    "34000880" + "30000080" + "24000100" + K_PEER + "08000300" + "01000000",
  ],
  [
    // 36 bytes, WG_CMD_GET_DEVICE (0), flags REQUEST|ACK|DUMP (0x0305: the kernel takes
    // GET_DEVICE only as a dump); IFNAME.
    "wg show flannel-wg dump",
    () => getDeviceRequest(FAMILY, "flannel-wg"),
    header(0x24, "0503", "00") + "0f000200" + "666c616e6e656c2d77670000",
  ],
];

for (const [command, build, expected] of CASES) {
  Deno.test(`wireguard netlink bytes for: ${command}`, () => {
    assert.equal(hex(encodeRequests([build()], 1)), expected);
  });
}

Deno.test("netlink bytes for: ip link add flannel-wg mtu 1420 type wireguard", () => {
  // iproute2 6.1 (strace -e trace=sendmsg -e write=3, in a throwaway namespace; the kernel
  // then answered EOPNOTSUPP): 76 bytes as ours; RTM_NEWLINK REQUEST|ACK|EXCL|CREATE;
  // ifinfomsg all zero; IFLA_MTU 1420, IFLA_IFNAME, IFLA_LINKINFO { IFLA_INFO_KIND
  // "wireguard" (len 13, no NUL) }, no IFLA_INFO_DATA (a wireguard link has no settings
  // there). Ours: IFNAME before MTU, KIND with its NUL (len 14, the same 16 bytes padded)
  // and NLA_F_NESTED on LINKINFO; the kernel reads both alike.
  const netlink = new Netlink();
  try {
    const request = netlink.linkCreateRequest({ name: "flannel-wg", kind: "wireguard", mtu: 1420 });
    assert.equal(
      hex(encodeRequests([request], 1)),
      "4c000000" + "1000" + "0506" + "01000000" + "00000000" +
        "00000000" + "00000000" + "00000000" + "00000000" +
        "0f000300" + "666c616e6e656c2d77670000" +
        "08000400" + "8c050000" +
        "14001280" + "0e000100" + "776972656775617264000000",
    );
  } finally {
    netlink.close();
  }
});

Deno.test("the controller's answer gives the family id; an answer without one gives none", () => {
  // CTRL_CMD_NEWFAMILY (1), version 2; CTRL_ATTR_FAMILY_NAME "wireguard", CTRL_ATTR_FAMILY_ID
  // u16 0x1b (len 6, padded).
  const body = bytes("01020000" + "0e000200776972656775617264000000" + "060001001b000000");
  assert.equal(parseFamilyId({ type: GENL_ID_CTRL, body: new DataView(body.buffer) }), 0x1b);
  const none = bytes("01020000" + "0e000200776972656775617264000000");
  assert.equal(parseFamilyId({ type: GENL_ID_CTRL, body: new DataView(none.buffer) }), undefined);
});

Deno.test("endpoints round-trip through sockaddr_in and sockaddr_in6 bytes", () => {
  for (
    const endpoint of [{ ip: ip("192.0.2.7"), port: 51820 }, { ip: ip6("2001:db8::7"), port: 1 }]
  ) {
    const raw = sockaddr(endpoint);
    assert.equal(raw.length, typeof endpoint.ip === "bigint" ? 28 : 16);
    assert.deepEqual(parseSockaddr(new DataView(raw.buffer)), endpoint);
  }
  assert.equal(parseSockaddr(new DataView(new Uint8Array(12).buffer)), undefined);
  assert.throws(() => sockaddr({ ip: 1, port: 70000 }), RangeError);
});

Deno.test("keys that are not 32 bytes are refused before anything is sent", () => {
  assert.throws(
    () => setDeviceRequest(FAMILY, { name: "flannel-wg", privateKey: new Uint8Array(31) }),
    /Invalid WireGuard key: 31 bytes/,
  );
});

/**
 * A WG_CMD_GET_DEVICE dump in two messages, as the kernel writes it (attribute order of
 * drivers/net/wireguard/netlink.c's get_device_dump): the first with the device and peer
 * 81..a0, the second, because the first was full, with the device's name again, the rest
 * of that peer's allowed IPs (public key and WGPEER_A_ALLOWEDIPS only) and peer 11..30.
 * Flags NLM_F_MULTI (2).
 */
const DUMP = [
  // 324 bytes, WG_CMD_GET_DEVICE (0), version 1
  "44010000" + "1b00" + "0200" + "01000000" + "00000000" + "00010000" +
  "06000600" + "6cca0000" + //             LISTEN_PORT 51820
  "08000700" + "00000000" + //             FWMARK 0
  "08000100" + "07000000" + //             IFINDEX 7
  "0f000200" + "666c616e6e656c2d77670000" + // IFNAME "flannel-wg"
  "24000300" + K_PRIVATE + //              PRIVATE_KEY
  "24000400" + K_PUBLIC + //               PUBLIC_KEY
  "c0000880" + //                          PEERS, len 192
  "bc000080" + //                            peer, len 188
  "24000100" + K_PEER + //                     PUBLIC_KEY
  "24000200" + K_PSK + //                      PRESHARED_KEY
  "14000600" + "0081246900000000" + "0065cd1d00000000" + // LAST_HANDSHAKE_TIME:
  //                                           timespec 1764000000 s, 500000000 ns
  "06000500" + "19000000" + //                 KEEPALIVE 25
  "0c000800" + "40e2010000000000" + //         TX_BYTES u64 123456
  "0c000700" + "f1fb090000000000" + //         RX_BYTES u64 654321
  "08000a00" + "01000000" + //                 PROTOCOL_VERSION 1
  "14000400" + "0200ca6cac1ffe0c0000000000000000" + // ENDPOINT 172.31.254.12:51820
  "20000980" + //                              ALLOWEDIPS, len 32
  "1c000080" + "06000100" + "02000000" + "08000200" + "0a0a0200" + "05000300" + "18000000",
  // 292 bytes
  "24010000" + "1b00" + "0200" + "01000000" + "00000000" + "00010000" +
  "0f000200" + "666c616e6e656c2d77670000" + // IFNAME
  "00010880" + //                          PEERS, len 256
  "54000080" + //                            peer 81..a0 continued, len 84
  "24000100" + K_PEER +
  "2c000980" + //                              ALLOWEDIPS, len 44 { len 40: fd10:0:0:2::/64 }
  "28000080" + "06000100" + "0a000000" + "14000200" + "fd100000000000020000000000000000" +
  "05000300" + "40000000" +
  "a8000080" + //                            peer 11..30, len 168: never handshaked
  "24000100" + K_PEER_B +
  "24000200" + "00".repeat(32) + //            PRESHARED_KEY all zero: none
  "14000600" + "00".repeat(16) + //            LAST_HANDSHAKE_TIME 0: never
  "06000500" + "00000000" + //                 KEEPALIVE off
  "0c000800" + "0000000000000000" +
  "0c000700" + "0000000000000000" +
  "08000a00" + "01000000" +
  "20000400" + "0a00ca6d00000000fd000000000000000000000000000013" + "00000000", // [fd00::13]:51821
];

function dumpMessages(): Message[] {
  return DUMP.map((text) => {
    const raw = bytes(text);
    return { type: FAMILY, body: new DataView(raw.slice(16).buffer) };
  });
}

/**
 * A device as `wg show NAME dump` prints it (wireguard-tools' dump_print), from what we
 * parsed; the keys we do not keep (private, preshared) are given.
 */
function wgDump(device: DeviceStatus, privateKey: Uint8Array, psks: string[]): string {
  const lines = [
    [base64(privateKey), base64(device.publicKey!), device.listenPort, device.fwmark || "off"]
      .join("\t"),
  ];
  for (const [i, peer] of device.peers.entries()) {
    const endpoint = peer.endpoint
      ? typeof peer.endpoint.ip === "bigint"
        ? `[${formatAddress(peer.endpoint.ip)}]:${peer.endpoint.port}`
        : `${formatAddress(peer.endpoint.ip)}:${peer.endpoint.port}`
      : "(none)";
    const allowed = peer.allowedIps.map((a) => `${formatAddress(a.ip)}/${a.prefixLen}`);
    lines.push([
      base64(peer.publicKey),
      psks[i],
      endpoint,
      allowed.length ? allowed.join(",") : "(none)",
      Math.floor(peer.lastHandshakeMs / 1000),
      peer.rxBytes,
      peer.txBytes,
      peer.keepaliveSeconds || "off",
    ].join("\t"));
  }
  return lines.join("\n");
}

Deno.test("a GET_DEVICE dump parses into the device and its peers, merged across messages", () => {
  const device = parseDevice(dumpMessages())!;
  assert.equal(device.name, "flannel-wg");
  assert.equal(device.index, 7);
  assert.equal(device.listenPort, 51820);
  assert.deepEqual(device.publicKey, key(0xc1));
  assert.equal(device.peers.length, 2);
  const [a, b] = device.peers;
  assert.deepEqual(a.publicKey, PEER);
  assert.deepEqual(a.endpoint, { ip: ip("172.31.254.12"), port: 51820 });
  assert.equal(a.lastHandshakeMs, 1764000000500);
  assert.equal(a.rxBytes, 654321);
  assert.equal(a.txBytes, 123456);
  assert.equal(a.keepaliveSeconds, 25);
  assert.deepEqual(a.allowedIps, [
    { ip: ip("10.10.2.0"), prefixLen: 24 },
    { ip: ip6("fd10:0:0:2::"), prefixLen: 64 },
  ]);
  assert.deepEqual(b.publicKey, PEER_B);
  assert.deepEqual(b.endpoint, { ip: ip6("fd00::13"), port: 51821 });
  assert.equal(b.lastHandshakeMs, 0);
  assert.deepEqual(b.allowedIps, []);
});

Deno.test("a truncated or garbled dump yields what is whole and never throws", () => {
  const whole = bytes(DUMP[0]).slice(16);
  for (let cut = 0; cut < whole.length; cut += 7) {
    const body = new DataView(whole.slice(0, cut).buffer);
    const device = parseDevice([{ type: FAMILY, body }]);
    for (const peer of device?.peers ?? []) assert.equal(peer.publicKey.length, 32);
  }
  const garbage = new Uint8Array(300).map((_, i) => (i * 73 + 11) & 0xff);
  parseDevice([{ type: FAMILY, body: new DataView(garbage.buffer) }]);
});

// ---- wg agrees: the same commands through wireguard-tools and the fake genetlink ----

const shim = await buildShim();
if (typeof shim === "string") console.error(`wg cross-check ignored: ${shim}`);

/** Builds tests/fixtures/fake_genl.c; a reason string when gcc or wg is missing. */
async function buildShim(): Promise<{ dir: string; so: string } | string> {
  if ((await runCommand(["wg", "--version"])).code !== 0) {
    return "no wg (apt install wireguard-tools)";
  }
  const dir = await Deno.makeTempDir({ prefix: "wk-shim-" });
  const so = `${dir}/fake_genl.so`;
  const source = new URL("./fixtures/fake_genl.c", import.meta.url).pathname;
  const built = await runCommand(["gcc", "-shared", "-fPIC", "-o", so, source, "-ldl"]);
  if (built.code !== 0) return `cannot build the fake genetlink (gcc): ${built.stderr.trim()}`;
  return { dir, so };
}

/** Runs `wg ARGS` against the stand-in; what it sent (sequence numbers set to 1) and printed. */
async function wg(args: string[], reply: string[] = []): Promise<{ sent: string[]; out: string }> {
  const { dir, so } = shim as { dir: string; so: string };
  const capture = `${dir}/capture-${crypto.randomUUID()}`;
  await Deno.writeTextFile(`${dir}/reply`, reply.join(""));
  const output = await runCommand(["wg", ...args], {
    env: { LD_PRELOAD: so, FAKE_GENL_CAPTURE: capture, FAKE_GENL_REPLY: `${dir}/reply` },
  });
  assert.equal(output.code, 0, `wg ${args.join(" ")}: ${output.stderr}`);
  const sent = (await Deno.readTextFile(capture)).trim().split("\n")
    .map((line) => line.slice(0, 16) + "01000000" + line.slice(24));
  return { sent, out: output.stdout.trim() };
}

Deno.test({
  name: "wg agrees: wg setconf / set / set … remove / show send the bytes we send",
  ignore: typeof shim === "string",
  async fn() {
    const { dir } = shim as { dir: string };
    await Deno.writeTextFile(`${dir}/private`, base64(PRIVATE) + "\n");
    await Deno.writeTextFile(`${dir}/psk`, base64(PSK) + "\n");
    await Deno.writeTextFile(
      `${dir}/conf`,
      `[Interface]\nPrivateKey = ${base64(PRIVATE)}\nListenPort = 51820\n`,
    );
    const commands = [
      ["setconf", "flannel-wg", `${dir}/conf`],
      [
        "set",
        "flannel-wg",
        "peer",
        base64(PEER),
        "preshared-key",
        `${dir}/psk`,
        "endpoint",
        "172.31.254.12:51820",
        "persistent-keepalive",
        "25",
        "allowed-ips",
        "10.10.2.0/24",
      ],
      [
        "set",
        "flannel-wg",
        "peer",
        base64(PEER),
        "endpoint",
        "[fd00::12]:51821",
        "persistent-keepalive",
        "0",
        "allowed-ips",
        "fd10:0:0:2::/64,10.10.2.0/24",
      ],
      ["set", "flannel-wg", "peer", base64(PEER), "remove"],
      ["show", "flannel-wg", "dump"],
    ];
    for (const [i, args] of commands.entries()) {
      const { sent } = await wg(args);
      // First the family lookup, then the command.
      assert.deepEqual(sent, [CASES[0][2], CASES[i + 1][2]], `wg ${args.join(" ")}`);
    }
  },
});

Deno.test({
  name: "wg agrees: wg show dump prints from our hand-made GET_DEVICE reply what we parse",
  ignore: typeof shim === "string",
  async fn() {
    const { out } = await wg(["show", "flannel-wg", "dump"], DUMP);
    const expected = wgDump(parseDevice(dumpMessages())!, PRIVATE, [base64(PSK), "(none)"]);
    assert.equal(out, expected);
    assert.equal(
      out.split("\n")[1],
      [
        base64(PEER),
        base64(PSK),
        "172.31.254.12:51820",
        "10.10.2.0/24,fd10:0:0:2::/64",
        "1764000000",
        "654321",
        "123456",
        "25",
      ].join("\t"),
    );
  },
});

globalThis.addEventListener("unload", () => {
  if (typeof shim !== "string") Deno.removeSync(shim.dir, { recursive: true });
});
