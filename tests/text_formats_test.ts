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
  const text = formatSubnetFile({
    network: parseIp4Net("10.10.0.0/16")!,
    subnet: parseIp4Net("10.10.16.0/24")!,
    mtu: 1472,
    ipMasq: false,
  });
  assert.deepEqual(
    text,
    "FLANNEL_NETWORK=10.10.0.0/16\nFLANNEL_SUBNET=10.10.16.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
  );
  assert.deepEqual(parseEnvFile(text).get("FLANNEL_SUBNET"), "10.10.16.1/24");
});
