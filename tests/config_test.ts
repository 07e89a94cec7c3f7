import assert from "node:assert/strict";
import { ConfigError, parseNetworkConfig } from "../lib/config.ts";
import { formatIp4, formatIp4Net } from "../lib/ip.ts";

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

Deno.test("unknown fields survive in raw", () => {
  const config = parseNetworkConfig(`{"Network":"10.10.0.0/16","Custom":{"a":1}}`);
  assert.deepEqual(config.raw.Custom, { a: 1 });
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
    `{"Network":"10.10.0.0/16","Backend":{"Type":"wireguard"}}`,
    /not supported \(use one of udp, vxlan, host-gw, ipip\)/,
  ],
  [
    "bad port",
    `{"Network":"10.10.0.0/16","Backend":{"Type":"udp","Port":70000}}`,
    /not a UDP port/,
  ],
  ["bad VNI", `{"Network":"10.10.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}`, /VNI/],
  ["Backend not object", `{"Network":"10.10.0.0/16","Backend":"udp"}`, /must be an object/],
  ["IPv6 asked for", `{"Network":"10.10.0.0/16","EnableIPv6":true}`, /EnableIPv6/],
];

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
