import assert from "node:assert/strict";
import { ConfigError, parseNetworkConfig } from "../lib/config.ts";
import { formatIp4, formatIp4Net } from "../lib/ip.ts";
import { formatIp6, formatIp6Net } from "../lib/ip6.ts";

Deno.test("flannel's defaults are filled in", () => {
  const config = parseNetworkConfig(`{"Network":"10.10.0.0/16"}`);
  assert.deepEqual(formatIp4Net(config.network), "10.10.0.0/16");
  assert.deepEqual(config.subnetLen, 24);
  assert.deepEqual(formatIp4(config.subnetMin), "10.10.1.0");
  assert.deepEqual(formatIp4(config.subnetMax), "10.10.255.0");
  assert.deepEqual(config.backend, {
    type: "udp",
    port: 8285,
    vni: 1,
    directRouting: false,
  });
});

Deno.test("a small network gets SubnetLen prefix+2", () => {
  assert.deepEqual(parseNetworkConfig(`{"Network":"10.10.0.0/24"}`).subnetLen, 26);
  assert.deepEqual(parseNetworkConfig(`{"Network":"10.10.0.0/22"}`).subnetLen, 24);
});

Deno.test("vxlan defaults and the seed's Port 7890", () => {
  const plain = parseNetworkConfig(`{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan"}}`);
  assert.deepEqual([plain.backend.port, plain.backend.vni], [8472, 1]);
  const seed = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","Port":7890}}`,
  );
  assert.deepEqual(seed.backend.port, 7890);
});

Deno.test("ipip as flannel's: no port, DirectRouting off unless asked", () => {
  const plain = parseNetworkConfig(`{"Network":"10.10.0.0/16","Backend":{"Type":"ipip"}}`);
  assert.deepEqual(plain.backend, { type: "ipip", port: 0, vni: 1, directRouting: false });
  const direct = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}`,
  );
  assert.equal(direct.backend.directRouting, true);
  assert.throws(
    () =>
      parseNetworkConfig(
        `{"Network":"10.10.0.0/16","Backend":{"Type":"ipip","DirectRouting":"yes"}}`,
      ),
    /"Backend.DirectRouting" must be true or false/,
  );
});

Deno.test("wireguard takes flannel's fields and defaults", () => {
  const plain = parseNetworkConfig(`{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard"}}`);
  assert.deepEqual(plain.backend.wireguard, {
    listenPort: 51820,
    listenPortV6: 51821,
    persistentKeepalive: 0,
    mode: "separate",
  });
  assert.equal(plain.backend.port, 51820);
  const psk = "nUlBo5wqHhU+2M5Qs3ZPNIqNuT7RRR5aGz7cXE2n3Ws=";
  const full = parseNetworkConfig(JSON.stringify({
    Network: "10.10.0.0/16",
    Backend: {
      Type: "wireguard",
      ListenPort: 51000,
      ListenPortV6: 51001,
      PSK: psk,
      PersistentKeepaliveInterval: 25,
      Mode: "auto",
    },
  }));
  assert.deepEqual(full.backend.wireguard, {
    listenPort: 51000,
    listenPortV6: 51001,
    psk,
    persistentKeepalive: 25,
    mode: "auto",
  });
  assert.equal(full.backend.port, 51000);
});

Deno.test("unknown fields survive in raw", () => {
  const config = parseNetworkConfig(`{"Network":"10.10.0.0/16","Custom":{"a":1}}`);
  assert.deepEqual(config.raw.Custom, { a: 1 });
});

Deno.test("keys match fields in any case, as flanneld's Go decoder matches them", () => {
  // The operator review's case: flanneld runs host-gw with /26 subnets from this.
  const mixed = parseNetworkConfig(
    `{"Network":"10.30.0.0/16","subnetLen":26,"backend":{"type":"host-gw"}}`,
  );
  assert.equal(mixed.subnetLen, 26);
  assert.equal(mixed.backend.type, "host-gw");
  assert.equal(
    formatIp4Net(parseNetworkConfig(`{"network":"10.1.0.0/16"}`).network),
    "10.1.0.0/16",
  );
  const bounded = parseNetworkConfig(
    `{"NETWORK":"10.10.0.0/16","subnetmin":"10.10.4.0","SubnetMAX":"10.10.9.0"}`,
  );
  assert.deepEqual([formatIp4(bounded.subnetMin), formatIp4(bounded.subnetMax)], [
    "10.10.4.0",
    "10.10.9.0",
  ]);
  const dual = parseNetworkConfig(
    `{"enableipv4":true,"network":"10.10.0.0/16","enableIPV6":true,"ipv6network":"fd10::/48",` +
      `"ipv6subnetlen":80,"IPv6subnetMin":"fd10:0:0:1::","ipv6SubnetMax":"fd10:0:0:2::",` +
      `"Backend":{"Type":"vxlan"}}`,
  );
  assert.equal(formatIp6Net(dual.ipv6!.network), "fd10::/48");
  assert.equal(dual.ipv6!.subnetLen, 80);
  assert.equal(formatIp6(dual.ipv6!.subnetMax), "fd10:0:0:2::");
  assert.equal(
    parseNetworkConfig(
      `{"ENABLEIPV4":false,"EnableIPv6":true,"IPv6Network":"fd10::/48","Backend":{"Type":"vxlan"}}`,
    ).enableIPv4,
    false,
  );
});

Deno.test("Backend's keys match in any case too, wireguard's included", () => {
  const vxlan = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","backend":{"TYPE":"vxlan","vni":7,"port":7890,` +
      `"directrouting":true,"Mtu":1400}}`,
  );
  assert.deepEqual(vxlan.backend, {
    type: "vxlan",
    port: 7890,
    vni: 7,
    directRouting: true,
    mtu: 1400,
  });
  const psk = "nUlBo5wqHhU+2M5Qs3ZPNIqNuT7RRR5aGz7cXE2n3Ws=";
  const wireguard = parseNetworkConfig(JSON.stringify({
    Network: "10.10.0.0/16",
    BACKEND: {
      type: "wireguard",
      listenport: 51000,
      LISTENPORTV6: 51001,
      psk,
      persistentKeepaliveInterval: 25,
      mode: "auto",
    },
  }));
  assert.deepEqual(wireguard.backend.wireguard, {
    listenPort: 51000,
    listenPortV6: 51001,
    psk,
    persistentKeepalive: 25,
    mode: "auto",
  });
  // The values are not folded: flannel has no backend "VXLAN".
  assert.throws(
    () => parseNetworkConfig(`{"Network":"10.10.0.0/16","Backend":{"Type":"VXLAN"}}`),
    /"Backend.Type" "VXLAN" is not supported/,
  );
});

Deno.test("of two keys for one field the later wins, even over an exact one, as in Go", () => {
  // Go's decoder fills the field once per matching key, in order ({"Bar":"1","bar":"2"}
  // gives "2", golang/go#28190): "preferring an exact match" picks a field, not a key.
  const later = parseNetworkConfig(`{"Network":"10.1.0.0/16","network":"10.2.0.0/16"}`);
  assert.equal(formatIp4Net(later.network), "10.2.0.0/16");
  const exactLast = parseNetworkConfig(`{"network":"10.2.0.0/16","Network":"10.1.0.0/16"}`);
  assert.equal(formatIp4Net(exactLast.network), "10.1.0.0/16");
  const backend = parseNetworkConfig(
    `{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":3},"backend":{"Type":"host-gw"}}`,
  );
  assert.deepEqual(backend.backend, { type: "host-gw", port: 0, vni: 1, directRouting: false });
  // What `config set` writes back (the parsed object) reads the same again.
  const again = parseNetworkConfig(JSON.stringify(later.raw));
  assert.equal(formatIp4Net(again.network), "10.2.0.0/16");
  assert.deepEqual(Object.keys(later.raw), ["Network", "network"]);
});

Deno.test("keys fold as Go's do: the Kelvin sign and the long s, no other letters", () => {
  const folded = parseNetworkConfig(`{"Networ\u212a":"10.1.0.0/16","\u017fubnetLen":26}`);
  assert.equal(formatIp4Net(folded.network), "10.1.0.0/16");
  assert.equal(folded.subnetLen, 26);
  // The dotless i folds only to itself in Go: this is no EnableIPv4, and is ignored.
  assert.equal(
    parseNetworkConfig(`{"Network":"10.1.0.0/16","Enable\u0131Pv4":false}`).enableIPv4,
    true,
  );
});

Deno.test("keys that are no field in any case are ignored, as flanneld ignores them", () => {
  const config = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","Networks":["10.20.0.0/16"],"Sub_netLen":8,"SubnetLength":8,` +
      `"EnableNFTables":true,"Backend":{"Type":"vxlan","GBP":true,"Learning":true,"MacPrefix":"0E:2A"}}`,
  );
  assert.equal(config.subnetLen, 24);
  assert.equal(config.backend.type, "vxlan");
  assert.throws(() => parseNetworkConfig(`{" Network":"10.10.0.0/16"}`), /"Network" is missing/);
});

const INVALID: [string, string, RegExp][] = [
  ["not JSON", `{"Network":`, /not valid JSON/],
  ["an array", `[]`, /JSON object/],
  ["no Network", `{}`, /"Network" is missing/],
  ["Network not a CIDR", `{"Network":"10.10.0.0"}`, /not an IPv4 CIDR/],
  ["Network with host bits", `{"Network":"10.10.1.0/16"}`, /host bits set \(use "10.10.0.0\/16"\)/],
  ["Network too small", `{"Network":"10.10.0.0/29"}`, /too small/],
  ["Network the whole address space", `{"Network":"0.0.0.0/0"}`, /overlaps 0\.0\.0\.0\/8/],
  ["Network over loopback", `{"Network":"127.0.0.0/16"}`, /overlaps 127\.0\.0\.0\/8 \(loopback\)/],
  ["Network over multicast", `{"Network":"224.1.0.0/16"}`, /multicast and reserved/],
  [
    "SubnetLen not above Network",
    `{"Network":"10.10.0.0/16","SubnetLen":16}`,
    /"SubnetLen" 16 is out of range/,
  ],
  [
    "SubnetLen over 30",
    `{"Network":"10.10.0.0/16","SubnetLen":31}`,
    /"SubnetLen" 31 is out of range/,
  ],
  ["SubnetLen not integer", `{"Network":"10.10.0.0/16","SubnetLen":"24"}`, /must be an integer/],
  [
    "SubnetMin misaligned",
    `{"Network":"10.10.0.0/16","SubnetMin":"10.10.1.5"}`,
    /not on a \/24 boundary \(use "10.10.1.0"\)/,
  ],
  ["SubnetMax outside", `{"Network":"10.10.0.0/16","SubnetMax":"10.11.0.0"}`, /outside "Network"/],
  [
    "SubnetMin above SubnetMax",
    `{"Network":"10.10.0.0/16","SubnetMin":"10.10.9.0","SubnetMax":"10.10.2.0"}`,
    /above "SubnetMax"/,
  ],
  ["SubnetMin not an IP", `{"Network":"10.10.0.0/16","SubnetMin":"x"}`, /not an IPv4 address/],
  [
    "unknown backend",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"geneve"}}`,
    /not supported \(use one of udp, vxlan, host-gw, ipip, wireguard\)/,
  ],
  [
    "bad port",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"udp","Port":70000}}`,
    /not a UDP port/,
  ],
  [
    "wireguard PSK not a key",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","PSK":"secret"}}`,
    /"Backend.PSK" must be 44 characters of base64 for 32 bytes \(make one with: wg genpsk\)/,
  ],
  [
    "wireguard bad Mode",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","Mode":"both"}}`,
    /"Backend.Mode" "both" is not a wireguard mode \(use one of separate, auto, ipv4, ipv6\)/,
  ],
  [
    "wireguard bad ListenPort",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","ListenPort":65536}}`,
    /"Backend.ListenPort" 65536 is not a UDP port/,
  ],
  [
    "wireguard negative keepalive",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","PersistentKeepaliveInterval":-1}}`,
    /"Backend.PersistentKeepaliveInterval" -1 is out of range/,
  ],
  [
    "wireguard keepalive as a duration string",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","PersistentKeepaliveInterval":"25s"}}`,
    /must be an integer/,
  ],
  ["bad VNI", `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}`, /VNI/],
  ["Backend not object", `{"Network":"10.10.0.0/16","Backend":"udp"}`, /must be an object/],
  [
    "IPv6 without IPv6Network",
    `{"Network":"10.10.0.0/16","EnableIPv6":true}`,
    /"IPv6Network" is missing/,
  ],
  ["no family", `{"EnableIPv4":false}`, /both false/],
  [
    "udp in an IPv6-only network",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/48","Backend":{"Type":"udp"}}`,
    /"udp" needs IPv4 .*use vxlan or host-gw/,
  ],
  [
    "wireguard with IPv6",
    `{"Network":"10.10.0.0/16","EnableIPv6":true,"IPv6Network":"fd10::/48","Backend":{"Type":"wireguard"}}`,
    /"wireguard" carries IPv4 only here/,
  ],
  [
    "ipip with IPv6",
    `{"Network":"10.10.0.0/16","EnableIPv6":true,"IPv6Network":"fd10::/48","Backend":{"Type":"ipip"}}`,
    /"ipip" carries IPv4 only, as flannel's/,
  ],
  ["EnableIPv6 not a boolean", `{"Network":"10.10.0.0/16","EnableIPv6":"yes"}`, /true or false/],
  [
    "IPv6Network not a CIDR",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::"}`,
    /not an IPv6 CIDR/,
  ],
  [
    "IPv6Network host bits",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::1/48"}`,
    /host bits set \(use "fd10::\/48"\)/,
  ],
  [
    "IPv6Network link-local",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fe80::/64"}`,
    /link-local/,
  ],
  [
    "IPv6Network too small",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/125"}`,
    /too small/,
  ],
  [
    "IPv6SubnetLen too close to the prefix",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/48","IPv6SubnetLen":49}`,
    /"IPv6SubnetLen" 49 is out of range for fd10::\/48 \(use 50..126/,
  ],
  [
    "IPv6SubnetLen above 126",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/48","IPv6SubnetLen":127}`,
    /out of range/,
  ],
  [
    "IPv6SubnetMin misaligned",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/48","IPv6SubnetMin":"fd10:0:0:1::1"}`,
    /not on a \/64 boundary \(use "fd10:0:0:1::"\)/,
  ],
  [
    "a lowercase Network with host bits",
    `{"network":"10.10.1.0/16"}`,
    /^"Network" "10.10.1.0\/16" has host bits set/,
  ],
  ["a lowercase Network not a string", `{"network":16}`, /^"Network" must be a string CIDR/],
  [
    "a lowercase SubnetLen out of range",
    `{"Network":"10.10.0.0/16","subnetlen":31}`,
    /^"SubnetLen" 31 is out of range/,
  ],
  [
    "an uppercase SubnetMin misaligned",
    `{"Network":"10.10.0.0/16","SUBNETMIN":"10.10.1.5"}`,
    /^"SubnetMin" "10.10.1.5" is not on a \/24 boundary/,
  ],
  [
    "a lowercase EnableIPv6 not a boolean",
    `{"Network":"10.10.0.0/16","enableipv6":"yes"}`,
    /^"EnableIPv6" must be true or false/,
  ],
  [
    "a lowercase IPv6Network with host bits",
    `{"EnableIPv4":false,"enableipv6":true,"ipv6network":"fd10::1/48"}`,
    /^"IPv6Network" "fd10::1\/48" has host bits set/,
  ],
  [
    "a lowercase backend type unknown",
    `{"Network":"10.10.0.0/16","backend":{"type":"geneve"}}`,
    /^"Backend.Type" "geneve" is not supported/,
  ],
  [
    "a lowercase backend not an object",
    `{"Network":"10.10.0.0/16","backend":"udp"}`,
    /^"Backend" must be an object/,
  ],
  [
    "a lowercase VNI out of range",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","vni":16777216}}`,
    /^"Backend.VNI" 16777216 is out of range/,
  ],
  [
    "a lowercase DirectRouting not a boolean",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","directRouting":1}}`,
    /^"Backend.DirectRouting" must be true or false/,
  ],
  [
    "a lowercase wireguard psk not a key",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard","psk":"secret"}}`,
    /^"Backend.PSK" must be 44 characters/,
  ],
  [
    "a later lowercase Port that is no port",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"udp","Port":8285,"port":70000}}`,
    /^"Backend.Port" 70000 is not a UDP port/,
  ],
  [
    "IPv6SubnetMax outside",
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/48","IPv6SubnetMax":"fd11::"}`,
    /outside "IPv6Network"/,
  ],
];

Deno.test("IPv6 fields get flannel's defaults, dual stack and IPv6-only", () => {
  const dual = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","EnableIPv6":true,"IPv6Network":"fd10::/48"}`,
  );
  assert.equal(dual.enableIPv4, true);
  assert.equal(formatIp6Net(dual.ipv6!.network), "fd10::/48");
  assert.equal(dual.ipv6!.subnetLen, 64);
  assert.equal(formatIp6(dual.ipv6!.subnetMin), "fd10:0:0:1::");
  assert.equal(formatIp6(dual.ipv6!.subnetMax), "fd10:0:0:ffff::");
  const only = parseNetworkConfig(
    `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/120","Backend":{"Type":"vxlan"}}`,
  );
  assert.equal(only.enableIPv4, false);
  assert.equal(only.ipv6!.subnetLen, 122);
  assert.equal(formatIp4Net(only.network), "0.0.0.0/0");
  const bounded = parseNetworkConfig(
    `{"Network":"10.10.0.0/16","EnableIPv6":true,"IPv6Network":"fd10::/48","IPv6SubnetLen":80,` +
      `"IPv6SubnetMin":"fd10:0:0:1::","IPv6SubnetMax":"fd10:0:0:2::"}`,
  );
  assert.equal(bounded.ipv6!.subnetLen, 80);
  assert.equal(bounded.ipv6!.subnetMax - bounded.ipv6!.subnetMin, 1n << 64n);
  assert.equal(
    parseNetworkConfig(`{"Network":"10.10.0.0/16","EnableIPv6":false}`).ipv6,
    undefined,
  );
});

for (const [what, text, message] of INVALID) {
  Deno.test(`config with ${what} is refused with a message naming the field`, () => {
    assert.throws(() => parseNetworkConfig(text), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
  });
}
