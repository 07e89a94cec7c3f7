import { parseIp6Net } from "../lib/ip6.ts";
import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "../lib/duration.ts";
import { parseIp4Net } from "../lib/ip.ts";
import { formatSubnetFile, parseEnvFile } from "../lib/subnet_file.ts";

Deno.test("durations read as operators write them", () => {
  assert.deepEqual(parseDuration("24h"), 86_400_000);
  assert.deepEqual(parseDuration("1h30m"), 5_400_000);
  assert.deepEqual(parseDuration("500ms"), 500);
  assert.deepEqual(parseDuration("60"), 60_000);
  assert.deepEqual(parseDuration("60", "m"), 3_600_000);
  for (const bad of ["", "h", "5x", "1h 30m", "-5s"]) {
    assert.deepEqual(parseDuration(bad), undefined, bad);
  }
  assert.deepEqual(formatDuration(86_340_000), "23h59m");
  assert.deepEqual(formatDuration(45_000), "45s");
});

Deno.test("the subnet file has flannel's names and the first usable address", () => {
  const ipv4 = { network: parseIp4Net("10.10.0.0/16")!, subnet: parseIp4Net("10.10.16.0/24")! };
  const text = formatSubnetFile({ ipv4, mtu: 1472, ipMasq: false });
  assert.deepEqual(
    text,
    "FLANNEL_NETWORK=10.10.0.0/16\nFLANNEL_SUBNET=10.10.16.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
  );
  assert.deepEqual(parseEnvFile(text).get("FLANNEL_SUBNET"), "10.10.16.1/24");
  // Dual stack and IPv6-only, in flannel's WriteSubnetFile order.
  const ipv6 = { network: parseIp6Net("fd10::/48")!, subnet: parseIp6Net("fd10:0:0:10::/64")! };
  assert.equal(
    formatSubnetFile({ ipv4, ipv6, mtu: 1450, ipMasq: true }),
    "FLANNEL_NETWORK=10.10.0.0/16\nFLANNEL_SUBNET=10.10.16.1/24\n" +
      "FLANNEL_IPV6_NETWORK=fd10::/48\nFLANNEL_IPV6_SUBNET=fd10:0:0:10::1/64\n" +
      "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  assert.equal(
    formatSubnetFile({ ipv6, mtu: 1430, ipMasq: false }),
    "FLANNEL_IPV6_NETWORK=fd10::/48\nFLANNEL_IPV6_SUBNET=fd10:0:0:10::1/64\n" +
      "FLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
  );
});
