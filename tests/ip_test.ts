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
