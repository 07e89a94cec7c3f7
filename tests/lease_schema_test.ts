import assert from "node:assert/strict";
import { parseIp4, parseIp4Net } from "../lib/ip.ts";
import { decodeLeaseValue, encodeLeaseValue, leaseKey, parseLeaseKey } from "../lib/lease.ts";

const PREFIX = "/coreos.com/network";

Deno.test("lease keys are flannel's <ip>-<len> names", () => {
  const subnet = parseIp4Net("10.10.16.0/24")!;
  assert.deepEqual(leaseKey(PREFIX, subnet), "/coreos.com/network/subnets/10.10.16.0-24");
  assert.deepEqual(parseLeaseKey(PREFIX, "/coreos.com/network/subnets/10.10.16.0-24"), subnet);
  for (
    const bad of [
      "/coreos.com/network/subnets/10.10.16.0",
      "/coreos.com/network/subnets/x-24",
      "/other/subnets/10.10.16.0-24",
      "/coreos.com/network/subnets/10.10.16.1-24",
    ]
  ) {
    assert.deepEqual(parseLeaseKey(PREFIX, bad), undefined, bad);
  }
});

Deno.test("lease values are byte-identical to flannel's", () => {
  const publicIp = parseIp4("192.0.2.1")!;
  assert.deepEqual(
    encodeLeaseValue({ publicIp, backendType: "udp" }),
    `{"PublicIP":"192.0.2.1","PublicIPv6":null}`,
  );
  assert.deepEqual(
    encodeLeaseValue({ publicIp, backendType: "host-gw" }),
    `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}`,
  );
  assert.deepEqual(
    encodeLeaseValue({
      publicIp,
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "be:73:00:00:00:01" },
    }),
    `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"be:73:00:00:00:01"}}`,
  );
});

Deno.test("flannel's lease values decode, with a missing BackendType meaning udp", () => {
  assert.deepEqual(decodeLeaseValue(`{"PublicIP":"192.0.2.1","PublicIPv6":null}`), {
    publicIp: parseIp4("192.0.2.1"),
    backendType: "udp",
  });
  assert.deepEqual(
    decodeLeaseValue(`{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1}}`),
    { publicIp: parseIp4("192.0.2.1"), backendType: "vxlan", backendData: { VNI: 1 } },
  );
});

Deno.test("malformed lease values give a reason instead of throwing", () => {
  const cases = [
    "",
    "garbage",
    "[]",
    "null",
    `{"PublicIP":5}`,
    `{"PublicIP":"1.2.3"}`,
    `{"PublicIP":"1.2.3.4","BackendType":7}`,
    `{"PublicIP":"1.2.3.4","BackendData":[1]}`,
    `{"PublicIP":"1.2.3.4","x":"${"a".repeat(5000)}"}`,
  ];
  for (const text of cases) {
    assert.deepEqual(typeof decodeLeaseValue(text), "string", text.slice(0, 40));
  }
});
