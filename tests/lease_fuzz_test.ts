/**
 * Lease keys and values are written by other hosts, so they are fuzzed: mutated
 * flannel values and keys never throw, and what is accepted is exactly what a
 * well-formed lease would say (checked by encoding it again).
 */
import assert from "node:assert/strict";
import { formatIp4, parseIp4 } from "../lib/ip.ts";
import {
  decodeLeaseValue,
  encodeLeaseValue,
  leaseKey,
  MAX_LEASE_VALUE_BYTES,
  parseLeaseKey,
} from "../lib/lease.ts";

const PREFIX = "/coreos.com/network";

/** A small deterministic generator, so a failure names a seed that reproduces it. */
function generator(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  return {
    below: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)],
  };
}

const SEEDS = [
  '{"PublicIP":"192.0.2.1","PublicIPv6":null}',
  '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:ac:11:00:02"}}',
  '{"PublicIP":"192.0.2.1","BackendType":"host-gw"}',
  '{"PublicIP":"10.0.0.1","BackendType":"udp","BackendData":null}',
];
const PIECES = [
  "{",
  "}",
  "[",
  "]",
  '"',
  ":",
  ",",
  "\\",
  "\\u0000",
  "\u2028",
  "\ud800",
  "null",
  "true",
  "1e309",
  "-0",
  "0x1",
  "256",
  "999999999999",
  "PublicIP",
  "BackendType",
  "BackendData",
  "__proto__",
  "constructor",
  "1.2.3",
  "1.2.3.4.5",
  " ",
  "\n",
  "\t",
  "é",
  "01.2.3.4",
  "1.2.3.04",
];

function mutate(text: string, random: ReturnType<typeof generator>): string {
  let out = text;
  for (let n = 1 + random.below(4); n > 0; n--) {
    const at = random.below(out.length + 1);
    switch (random.below(4)) {
      case 0: // delete a run
        out = out.slice(0, at) + out.slice(at + 1 + random.below(6));
        break;
      case 1: // insert a piece
        out = out.slice(0, at) + random.pick(PIECES) + out.slice(at);
        break;
      case 2: // replace a character
        out = out.slice(0, at) + String.fromCharCode(random.below(0x3000)) + out.slice(at + 1);
        break;
      default: // duplicate a run
        out = out.slice(0, at) + out.slice(at, at + random.below(20)) + out.slice(at);
    }
  }
  return out;
}

Deno.test("fuzz: mutated lease values decode to a lease or a reason, never a throw", () => {
  const random = generator(1);
  let accepted = 0;
  for (let round = 0; round < 20_000; round++) {
    const text = mutate(random.pick(SEEDS), random);
    const bytes = new TextEncoder().encode(text);
    let result: ReturnType<typeof decodeLeaseValue>;
    try {
      result = decodeLeaseValue(random.below(2) ? text : bytes);
    } catch (error) {
      assert.fail(`round ${round}: ${JSON.stringify(text)} threw ${(error as Error).message}`);
    }
    if (typeof result === "string") {
      assert.ok(result.length > 0 && result.length < 200, `round ${round}: reason ${result}`);
      continue;
    }
    accepted++;
    // What is accepted is a real lease: an IPv4 address that prints back, a type, and
    // data that is a plain object; encoding it again decodes to the same.
    assert.equal(parseIp4(formatIp4(result.publicIp)), result.publicIp, `round ${round}`);
    assert.equal(typeof result.backendType, "string");
    if (result.backendData !== undefined) {
      assert.ok(typeof result.backendData === "object" && !Array.isArray(result.backendData));
    }
    // (BackendData is the backend's to check: compared as JSON carries it.)
    const again = decodeLeaseValue(encodeLeaseValue(result));
    assert.equal(JSON.stringify(again), JSON.stringify(result), `round ${round}`);
  }
  assert.ok(accepted > 100, `some mutations stay valid leases (${accepted})`);
});

Deno.test("fuzz: values at and past the size limit, and deep nesting, are refused without work", () => {
  const big = `{"PublicIP":"192.0.2.1","BackendData":{"x":"${"a".repeat(MAX_LEASE_VALUE_BYTES)}"}}`;
  assert.match(decodeLeaseValue(big) as string, /more than 4096/);
  const deep = `{"PublicIP":"192.0.2.1","BackendData":${"[".repeat(2_000)}${"]".repeat(2_000)}}`;
  assert.equal(typeof decodeLeaseValue(deep), "string");
});

Deno.test("fuzz: a lease key parses only when it is the canonical name of its subnet", () => {
  const random = generator(2);
  const seeds = [
    "10.10.16.0-24",
    "10.10.0.0-16",
    "192.168.255.0-28",
    "0.0.0.0-0",
    "10.1.2.3-32",
    // flannel's dual-stack and IPv6-only keys
    "10.10.16.0-24&fd10:0:0:10::-64",
    "0.0.0.0-0&fd10:0:0:10::-64",
    "10.10.16.0-24&2001:db8:1:2:3:4:5:0-112",
    "10.10.16.0-24&fd10::-48",
  ];
  let parsed = 0;
  for (let round = 0; round < 20_000; round++) {
    const name = mutate(random.pick(seeds), random);
    const key = random.below(10) === 0
      ? mutate(`${PREFIX}/subnets/${name}`, random)
      : `${PREFIX}/subnets/${name}`;
    let subnet: ReturnType<typeof parseLeaseKey>;
    try {
      subnet = parseLeaseKey(PREFIX, key);
    } catch (error) {
      assert.fail(`round ${round}: ${JSON.stringify(key)} threw ${(error as Error).message}`);
    }
    if (!subnet) continue;
    parsed++;
    // Accepted keys are exactly the names the agent itself writes: no "010.10…", no
    // host bits, no spaces, no second spelling of one subnet.
    assert.equal(leaseKey(PREFIX, subnet), key, `round ${round}`);
  }
  assert.ok(parsed > 100, `some mutations stay valid keys (${parsed})`);
});
