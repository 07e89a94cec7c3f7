/**
 * Known-answer tests for WireGuard's primitives, run against both crypto providers
 * (libsodium through FFI and the node:crypto fallback), and the two checked against
 * each other on random inputs.
 */
import assert from "node:assert/strict";
import { Blake2s, hash, hmac, kdf1, kdf2, kdf3, mac } from "../lib/wireguard/blake2s.ts";
import {
  type CryptoProvider,
  cryptoProvider,
  libsodiumProvider,
  nodeCryptoProvider,
  writeNonce,
} from "../lib/wireguard/crypto.ts";
import { hchacha20 } from "../lib/wireguard/hchacha20.ts";
import { fromHex, toHex } from "./wireguard_helpers.ts";

const PROVIDERS: [string, () => CryptoProvider][] = [
  ["libsodium", libsodiumProvider],
  ["node:crypto", nodeCryptoProvider],
];

const sequence = (length: number, start = 0) =>
  Uint8Array.from({ length }, (_, i) => (start + i) & 255);
const text = (s: string) => new TextEncoder().encode(s);

Deno.test("libsodium is the provider in use on this machine", () => {
  assert.deepEqual(cryptoProvider(), "libsodium");
});

Deno.test("BLAKE2s-256 matches RFC 7693 Appendix B and the unkeyed empty-input KAT", () => {
  assert.deepEqual(
    toHex(hash(new Uint8Array(32), text("abc"))),
    "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
  );
  assert.deepEqual(
    toHex(new Blake2s().digest()),
    "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9",
  );
});

Deno.test("keyed BLAKE2s-256 matches the BLAKE2 reference KAT (key 00..1f, input 00..n-1)", () => {
  // blake2s-kat.txt, the keyed section: input lengths 0..7 and 128.
  const kat: [number, string][] = [
    [0, "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49"],
    [1, "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1"],
    [2, "6bb71300644cd3991b26ccd4d274acd1adeab8b1d7914546c1198bbe9fc9d803"],
    [3, "1d220dbe2ee134661fdf6d9e74b41704710556f2f6e5a091b227697445dbea6b"],
    [4, "f6c3fbadb4cc687a0064a5be6e791bec63b868ad62fba61b3757ef9ca52e05b2"],
    [5, "49c1f21188dfd769aea0e911dd6b41f14dab109d2b85977aa3088b5c707e8598"],
    [6, "fdd8993dcd43f696d44f3cea0ff35345234ec8ee083eb3cada017c7f78c17143"],
    [7, "e6c8125637438d0905b749f46560ac89fd471cf8692e28fab982f73f019b83a9"],
    [128, "0c311f38c35a4fb90d651c289d486856cd1413df9b0677f53ece2cd9e477c60a"],
  ];
  const key = sequence(32);
  for (const [length, expected] of kat) {
    const input = sequence(length);
    assert.deepEqual(
      toHex(new Blake2s(32, key).update(input).digest()),
      expected,
      `length ${length}`,
    );
    // The same input fed in odd-sized pieces gives the same digest.
    const pieces = new Blake2s(32, key);
    for (let i = 0; i < length; i += 7) pieces.update(input, i, Math.min(7, length - i));
    assert.deepEqual(toHex(pieces.digest()), expected, `length ${length} in pieces`);
  }
});

Deno.test("BLAKE2s-128 MAC is the keyed 16-byte variant, not a truncation", () => {
  const key = sequence(32);
  const full = new Blake2s(32, key).update(text("abc")).digest();
  const short = mac(new Uint8Array(16), key, text("abc"));
  assert.deepEqual(short.length, 16);
  assert.ok(toHex(short) !== toHex(full).slice(0, 32));
});

Deno.test("HMAC-BLAKE2s and KDF1/2/3 match wireguard-go's kdf_test vectors", () => {
  const cases = [
    {
      key: "746573742d6b6579",
      input: "746573742d696e707574",
      t0: "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
      t1: "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
      t2: "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24",
    },
    {
      key: "776972656775617264",
      input: "776972656775617264",
      t0: "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
      t1: "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
      t2: "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160",
    },
    {
      key: "",
      input: "",
      t0: "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
      t1: "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
      t2: "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e",
    },
  ];
  for (const c of cases) {
    const [t0, t1, t2] = [new Uint8Array(32), new Uint8Array(32), new Uint8Array(32)];
    kdf3(t0, t1, t2, fromHex(c.key), fromHex(c.input));
    assert.deepEqual([toHex(t0), toHex(t1), toHex(t2)], [c.t0, c.t1, c.t2]);
    t0.fill(0), t1.fill(0);
    kdf2(t0, t1, fromHex(c.key), fromHex(c.input));
    assert.deepEqual([toHex(t0), toHex(t1)], [c.t0, c.t1]);
    t0.fill(0);
    kdf1(t0, fromHex(c.key), fromHex(c.input));
    assert.deepEqual(toHex(t0), c.t0);
  }
  // A key longer than the 64-byte block is hashed first (RFC 2104).
  const long = hmac(new Uint8Array(32), sequence(65), text("abc"));
  const hashed = hmac(new Uint8Array(32), hash(new Uint8Array(32), sequence(65)), text("abc"));
  assert.deepEqual(toHex(long), toHex(hashed));
});

Deno.test("HChaCha20 matches draft-irtf-cfrg-xchacha §2.2.1", () => {
  const out = hchacha20(
    new Uint8Array(32),
    sequence(32),
    fromHex("000000090000004a0000000031415927"),
  );
  assert.deepEqual(toHex(out), "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc");
});

for (const [name, provider] of PROVIDERS) {
  Deno.test(`${name}: X25519 matches RFC 7748 §5.2 and the §6.1 Diffie-Hellman`, () => {
    const c = provider();
    const out = new Uint8Array(32);
    assert.ok(c.x25519(
      out,
      fromHex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
      fromHex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
    ));
    assert.deepEqual(
      toHex(out),
      "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    );
    assert.ok(c.x25519(
      out,
      fromHex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
      fromHex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"),
    ));
    assert.deepEqual(
      toHex(out),
      "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    );
    // §5.2, one iteration of k = u = 9.
    const nine = new Uint8Array(32);
    nine[0] = 9;
    assert.ok(c.x25519(out, nine, nine));
    assert.deepEqual(
      toHex(out),
      "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
    );

    const alice = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const bob = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    const alicePublic = c.x25519Base(new Uint8Array(32), alice);
    const bobPublic = c.x25519Base(new Uint8Array(32), bob);
    assert.deepEqual(
      toHex(alicePublic),
      "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    );
    assert.deepEqual(
      toHex(bobPublic),
      "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    );
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    assert.ok(c.x25519(out, alice, bobPublic));
    assert.deepEqual(toHex(out), shared);
    assert.ok(c.x25519(out, bob, alicePublic));
    assert.deepEqual(toHex(out), shared);
  });

  Deno.test(`${name}: X25519 with a small-order point reports failure`, () => {
    const c = provider();
    assert.ok(!c.x25519(new Uint8Array(32), sequence(32), new Uint8Array(32)));
  });

  Deno.test(`${name}: ChaCha20-Poly1305 matches RFC 8439 §2.8.2`, () => {
    const c = provider();
    const key = sequence(32, 0x80);
    const ad = fromHex("50515253c0c1c2c3c4c5c6c7");
    const plaintext = text(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the " +
        "future, sunscreen would be it.",
    );
    const expected = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6" +
      "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36" +
      "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc" +
      "3ff4def08e4b7a9de576d26586cec64b6116" + "1ae10b594f09e26a7e902ecbd0600691";
    const nonce = fromHex("070000004041424344454647");
    const out = new Uint8Array(plaintext.length + 16);
    c.seal(out, key, nonce, plaintext, ad);
    assert.deepEqual(toHex(out), expected);
    const back = new Uint8Array(plaintext.length);
    assert.ok(c.open(back, key, nonce, out, ad));
    assert.deepEqual(back, plaintext);
    out[0] ^= 1;
    assert.ok(!c.open(back, key, nonce, out, ad));
  });

  Deno.test(`${name}: XChaCha20-Poly1305 matches draft-irtf-cfrg-xchacha A.3.1`, () => {
    const c = provider();
    const key = sequence(32, 0x80);
    const nonce = fromHex("404142434445464748494a4b4c4d4e4f5051525354555657");
    const ad = fromHex("50515253c0c1c2c3c4c5c6c7");
    const plaintext = text(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the " +
        "future, sunscreen would be it.",
    );
    const expected = "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb" +
      "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452" +
      "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9" +
      "21f9664c97637da9768812f615c68b13b52e" + "c0875924c1c7987947deafd8780acf49";
    const out = new Uint8Array(plaintext.length + 16);
    c.xseal(out, key, nonce, plaintext, ad);
    assert.deepEqual(toHex(out), expected);
    const back = new Uint8Array(plaintext.length);
    assert.ok(c.xopen(back, key, nonce, out, ad));
    assert.deepEqual(back, plaintext);
    out[5] ^= 1;
    assert.ok(!c.xopen(back, key, nonce, out, ad));
  });

  Deno.test(`${name}: in-place data-path seal/open round-trips and rejects tampering`, () => {
    const c = provider();
    const key = c.transportKey(sequence(32, 7));
    const buffer = new Uint8Array(2048);
    for (const length of [0, 1, 15, 16, 17, 1420]) {
      const original = sequence(length, length);
      buffer.set(original, 16);
      c.sealInPlace(key, 2 ** 40 + length, buffer, 16, length);
      assert.ok(c.openInPlace(key, 2 ** 40 + length, buffer, 16, length + 16));
      assert.deepEqual(buffer.subarray(16, 16 + length), original);
      c.sealInPlace(key, 5, buffer, 16, length);
      buffer[16 + length] ^= 0x80; // a tag bit
      assert.ok(!c.openInPlace(key, 5, buffer, 16, length + 16));
      assert.ok(!c.openInPlace(key, 5, buffer, 16, 15), "shorter than a tag");
    }
  });
}

Deno.test("the two providers agree on random inputs, the data-path nonce form included", () => {
  const sodium = libsodiumProvider();
  const node = nodeCryptoProvider();
  for (let round = 0; round < 50; round++) {
    const key = sodium.randomBytes(new Uint8Array(32));
    const scalar = sodium.randomBytes(new Uint8Array(32));
    const point = sodium.x25519Base(new Uint8Array(32), sodium.randomBytes(new Uint8Array(32)));
    assert.deepEqual(
      toHex(sodium.x25519Base(new Uint8Array(32), scalar)),
      toHex(node.x25519Base(new Uint8Array(32), scalar)),
    );
    const a = new Uint8Array(32), b = new Uint8Array(32);
    assert.deepEqual(sodium.x25519(a, scalar, point), node.x25519(b, scalar, point));
    assert.deepEqual(toHex(a), toHex(b));

    const length = (round * 37) % 300;
    const plaintext = sodium.randomBytes(new Uint8Array(length));
    const ad = sodium.randomBytes(new Uint8Array(round % 40));
    const nonce = sodium.randomBytes(new Uint8Array(12));
    const [s1, s2] = [new Uint8Array(length + 16), new Uint8Array(length + 16)];
    sodium.seal(s1, key, nonce, plaintext, ad);
    node.seal(s2, key, nonce, plaintext, ad);
    assert.deepEqual(toHex(s1), toHex(s2));
    const xnonce = sodium.randomBytes(new Uint8Array(24));
    sodium.xseal(s1, key, xnonce, plaintext, ad);
    node.xseal(s2, key, xnonce, plaintext, ad);
    assert.deepEqual(toHex(s1), toHex(s2));

    // In place with a counter equals the general form with WireGuard's nonce.
    const counter = round * 1_000_003 + (round % 2) * 2 ** 50;
    const wgNonce = new Uint8Array(12);
    writeNonce(wgNonce, counter);
    sodium.seal(s1, key, wgNonce, plaintext, new Uint8Array(0));
    for (const provider of [sodium, node]) {
      const buffer = new Uint8Array(length + 64);
      buffer.set(plaintext, 16);
      provider.sealInPlace(provider.transportKey(key), counter, buffer, 16, length);
      assert.deepEqual(toHex(buffer.subarray(16, 32 + length)), toHex(s1), provider.name);
    }
  }
});
