import assert from "node:assert/strict";
import { parseIp4, parseIp4Net } from "../lib/ip.ts";
import { parseIp6, parseIp6Net } from "../lib/ip6.ts";
import { decodeLeaseValue, encodeLeaseValue, leaseKey, parseLeaseKey } from "../lib/lease.ts";

const PREFIX = "/coreos.com/network";

Deno.test("lease keys are flannel's <ip>-<len> names", () => {
  const subnet = parseIp4Net("10.10.16.0/24")!;
  assert.deepEqual(leaseKey(PREFIX, subnet), "/coreos.com/network/subnets/10.10.16.0-24");
  assert.deepEqual(parseLeaseKey(PREFIX, "/coreos.com/network/subnets/10.10.16.0-24"), {
    subnet,
  });
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

Deno.test("dual-stack lease keys are flannel's <ip>-<len>&<ipv6>-<len>, in one spelling", () => {
  const subnets = {
    subnet: parseIp4Net("10.10.1.0/24")!,
    ipv6Subnet: parseIp6Net("fd10:0:0:1::/64")!,
  };
  const key = "/coreos.com/network/subnets/10.10.1.0-24&fd10:0:0:1::-64";
  assert.equal(leaseKey(PREFIX, subnets), key);
  assert.deepEqual(parseLeaseKey(PREFIX, key), subnets);
  // An IPv6-only lease, as flannel's MakeSubnetKey writes it with an empty IPv4 subnet.
  const only = { subnet: { ip: 0, prefixLen: 0 }, ipv6Subnet: subnets.ipv6Subnet };
  assert.equal(leaseKey(PREFIX, only), "/coreos.com/network/subnets/0.0.0.0-0&fd10:0:0:1::-64");
  assert.deepEqual(parseLeaseKey(PREFIX, leaseKey(PREFIX, only)), only);
  for (
    const bad of [
      "10.10.1.0-24&fd10:0:0:1:0:0:0:0-64", // not the canonical spelling
      "10.10.1.0-24&FD10:0:0:1::-64",
      "10.10.1.0-24&fd10:0:0:1::1-64", // host bits
      "10.10.1.0-24&fd10:0:0:1::-129",
      "10.10.1.0-24&fd10:0:0:1::-064",
      "10.10.1.0-24&fd10:0:0:1::",
      "10.10.1.0-24&",
      "10.10.1.0-24&10.10.2.0-24",
      "10.10.1.0-24&fd10:0:0:1::-64&fd10:0:0:2::-64",
      "10.10.1.0-24&::ffff:10.0.0.0-120",
    ]
  ) {
    assert.equal(parseLeaseKey(PREFIX, `/coreos.com/network/subnets/${bad}`), undefined, bad);
  }
});

Deno.test("dual-stack lease values carry PublicIPv6 and BackendV6Data as flannel writes them", () => {
  const attrs = {
    publicIp: parseIp4("192.0.2.1")!,
    publicIpv6: parseIp6("2001:db8::1")!,
    backendType: "vxlan",
    backendData: { VNI: 1, VtepMAC: "be:73:00:00:00:01" },
    backendV6Data: { VNI: 1, VtepMAC: "be:73:00:00:00:02" },
  };
  const text = encodeLeaseValue(attrs);
  assert.equal(
    text,
    `{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan",` +
      `"BackendData":{"VNI":1,"VtepMAC":"be:73:00:00:00:01"},` +
      `"BackendV6Data":{"VNI":1,"VtepMAC":"be:73:00:00:00:02"}}`,
  );
  assert.deepEqual(decodeLeaseValue(text), attrs);
  // IPv6-only: flannel's empty PublicIP.
  assert.deepEqual(
    decodeLeaseValue(`{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::7","BackendType":"host-gw"}`),
    { publicIp: 0, publicIpv6: parseIp6("2001:db8::7"), backendType: "host-gw" },
  );
  for (
    const bad of [
      `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::g"}`,
      `{"PublicIP":"0.0.0.0","PublicIPv6":7}`,
      `{"PublicIP":"0.0.0.0","PublicIPv6":"10.0.0.1"}`,
      `{"PublicIP":"192.0.2.1","BackendV6Data":"x"}`,
      `{"PublicIP":"192.0.2.1","BackendV6Data":[1]}`,
    ]
  ) {
    assert.equal(typeof decodeLeaseValue(bad), "string", bad);
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

Deno.test("lease value keys match in any case, the later of two winning, as flanneld reads them", () => {
  // A lease written by hand or by another tool: flanneld's Go decoder folds the keys.
  assert.deepEqual(
    decodeLeaseValue(
      `{"publicip":"192.0.2.1","PUBLICIPV6":"2001:db8::1","backendType":"vxlan",` +
        `"backenddata":{"VNI":1},"BackendV6data":{"VNI":1}}`,
    ),
    {
      publicIp: parseIp4("192.0.2.1"),
      publicIpv6: parseIp6("2001:db8::1"),
      backendType: "vxlan",
      backendData: { VNI: 1 },
      backendV6Data: { VNI: 1 },
    },
  );
  const later = decodeLeaseValue(`{"PublicIP":"192.0.2.1","publicIP":"192.0.2.9"}`);
  assert.equal(typeof later === "object" && later.publicIp, parseIp4("192.0.2.9"));
  assert.equal(decodeLeaseValue(`{"publicip":"1.2.3"}`), `PublicIP "1.2.3" is not an IPv4 address`);
  assert.equal(
    decodeLeaseValue(`{"PublicIP":"1.2.3.4","backendtype":7}`),
    "BackendType is not a string",
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
