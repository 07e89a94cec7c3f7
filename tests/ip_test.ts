import assert from "node:assert/strict";
import {
  formatIp4,
  formatIp4Net,
  netContains,
  netsOverlap,
  parseIp4,
  parseIp4Net,
  prefixMask,
} from "../lib/ip.ts";
import {
  formatIp6,
  formatIp6Net,
  ip6AddressProblem,
  ip6Bytes,
  ip6FromBytes,
  net6Contains,
  nets6Overlap,
  parseIp6,
  parseIp6Net,
  prefixMask6,
  prefixSize6,
} from "../lib/ip6.ts";

Deno.test("dotted quads parse and format round trip, and junk is rejected", () => {
  assert.deepEqual(parseIp4("10.10.16.1"), 0x0a0a1001);
  assert.deepEqual(formatIp4(0x0a0a1001), "10.10.16.1");
  assert.deepEqual(formatIp4(0xffffffff), "255.255.255.255");
  for (const bad of ["10.10.16", "256.1.1.1", "a.b.c.d", "1.2.3.4.5", "", "1.2.3.-4"]) {
    assert.deepEqual(parseIp4(bad), undefined, bad);
  }
  // One spelling per address, as Go reads them (flannel rejects these too).
  for (const other of ["010.10.16.1", "10.10.16.01", " 10.10.16.1", "10.10.16.1\n"]) {
    assert.deepEqual(parseIp4(other), undefined, JSON.stringify(other));
  }
  assert.deepEqual(parseIp4("0.0.0.0"), 0);
});

Deno.test("CIDRs parse strictly or loosely", () => {
  assert.deepEqual(parseIp4Net("10.10.0.0/16", { strict: true }), {
    ip: 0x0a0a0000,
    prefixLen: 16,
  });
  assert.deepEqual(parseIp4Net("10.10.16.1/24", { strict: true }), undefined);
  assert.deepEqual(formatIp4Net(parseIp4Net("10.10.16.1/24")!), "10.10.16.0/24");
  assert.deepEqual(parseIp4Net("10.0.0.0/33"), undefined);
  assert.deepEqual(parseIp4Net("10.0.0.0"), undefined);
  assert.deepEqual(parseIp4Net("0.0.0.0/0"), { ip: 0, prefixLen: 0 });
  assert.deepEqual(parseIp4Net("10.0.0.0/08"), undefined);
});

Deno.test("masks, containment and overlap", () => {
  assert.deepEqual(prefixMask(24), 0xffffff00);
  assert.deepEqual(prefixMask(0), 0);
  assert.deepEqual(prefixMask(32), 0xffffffff);
  const net = parseIp4Net("10.10.0.0/16")!;
  assert.deepEqual(netContains(net, parseIp4("10.10.255.255")!), true);
  assert.deepEqual(netContains(net, parseIp4("10.11.0.0")!), false);
  assert.deepEqual(netsOverlap(net, parseIp4Net("10.10.16.0/24")!), true);
  assert.deepEqual(netsOverlap(parseIp4Net("10.10.16.0/24")!, net), true);
  assert.deepEqual(netsOverlap(net, parseIp4Net("10.11.0.0/16")!), false);
});

Deno.test("IPv6 addresses parse in every RFC 4291 form and format as Go writes them", () => {
  const cases: [string, string][] = [
    ["fd10:0:0:1::", "fd10:0:0:1::"],
    ["FD10:0000:0000:0001:0000:0000:0000:0000", "fd10:0:0:1::"],
    ["::1", "::1"],
    ["::", "::"],
    ["2001:db8::1:0:0:1", "2001:db8::1:0:0:1"], // the first of two equal zero runs
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // one zero group stays
    ["2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"], // the longer run wins
    ["::ffff:10.0.0.1", "::ffff:a00:1"],
    ["fe80::1:2", "fe80::1:2"],
  ];
  for (const [text, canonical] of cases) {
    const ip = parseIp6(text);
    assert.notEqual(ip, undefined, text);
    assert.equal(formatIp6(ip!), canonical, text);
  }
  for (
    const bad of [
      "",
      ":",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "12345::",
      "g::",
      "1:2:3:4:5:6:7::8",
      "::1.2.3",
      "fe80::1%eth0",
      "10.0.0.1",
    ]
  ) {
    assert.equal(parseIp6(bad), undefined, bad);
  }
  assert.deepEqual(
    ip6Bytes(parseIp6("fd10::102")!),
    new Uint8Array([0xfd, 0x10, ...Array(12).fill(0), 1, 2]),
  );
  assert.equal(
    ip6FromBytes(ip6Bytes(parseIp6("fd10:1:2:3:4:5:6:7")!)),
    parseIp6("fd10:1:2:3:4:5:6:7"),
  );
});

Deno.test("IPv6 networks parse strictly or loosely, contain and overlap", () => {
  assert.deepEqual(parseIp6Net("fd10::/48", { strict: true }), {
    ip: 0xfd10n << 112n,
    prefixLen: 48,
  });
  assert.equal(parseIp6Net("fd10::1/64", { strict: true }), undefined);
  assert.equal(formatIp6Net(parseIp6Net("fd10:0:0:1::1/64")!), "fd10:0:0:1::/64");
  for (const bad of ["fd10::/129", "fd10::/", "fd10::/064", "fd10::", "10.0.0.0/8"]) {
    assert.equal(parseIp6Net(bad), undefined, bad);
  }
  const network = parseIp6Net("fd10::/48")!;
  assert.ok(net6Contains(network, parseIp6("fd10:0:0:ffff::1")!));
  assert.ok(!net6Contains(network, parseIp6("fd10:1::")!));
  assert.ok(nets6Overlap(network, parseIp6Net("fd10:0:0:1::/64")!));
  assert.ok(nets6Overlap(parseIp6Net("::/0")!, network));
  assert.ok(!nets6Overlap(network, parseIp6Net("fd11::/48")!));
  assert.equal(formatIp6(prefixMask6(64)), "ffff:ffff:ffff:ffff::");
  assert.equal(prefixSize6(126), 4n);
  assert.equal(ip6AddressProblem(parseIp6("fe80::1")!), "is a link-local address");
  assert.equal(ip6AddressProblem(parseIp6("::1")!), "is a unspecified and loopback address");
  assert.equal(ip6AddressProblem(parseIp6("2001:db8::1")!), undefined);
});
