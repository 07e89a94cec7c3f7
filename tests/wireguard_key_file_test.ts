import assert from "node:assert/strict";
import { keyFilePath, loadOrCreateKey } from "../lib/wireguard/key_file.ts";

Deno.test("the key file is made once with mode 0600 and reused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = keyFilePath(`${dir}/state`, undefined);
    assert.equal(path, `${dir}/state/wgkey`);
    const first = loadOrCreateKey(path);
    assert.equal(first.created, true);
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    assert.match(Deno.readTextFileSync(path), /^[A-Za-z0-9+/]{43}=\n$/);
    const second = loadOrCreateKey(path);
    assert.equal(second.created, false);
    assert.deepEqual([second.privateKey, second.publicKey], [first.privateKey, first.publicKey]);
    // flanneld writes it 0400 without a newline: that is read as well.
    Deno.writeTextFileSync(path, first.privateKey, { mode: 0o400 });
    Deno.chmodSync(path, 0o400);
    assert.equal(loadOrCreateKey(path).publicKey, first.publicKey);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WIREGUARD_KEY_FILE names the key file, as for flanneld", () => {
  assert.equal(keyFilePath("/var/lib/overlay", "/run/flannel/wgkey"), "/run/flannel/wgkey");
});

Deno.test("a key file others may read, or without a key, is refused with the fix", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/wgkey`;
    const made = loadOrCreateKey(path);
    Deno.chmodSync(path, 0o644);
    assert.throws(() => loadOrCreateKey(path), /has mode 0644.*chmod 600/);
    Deno.chmodSync(path, 0o600);
    Deno.writeTextFileSync(path, "not a key\n");
    assert.throws(() => loadOrCreateKey(path), /does not hold a base64 private key/);
    assert.notEqual(Deno.readTextFileSync(path), made.privateKey); // left alone, not replaced
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
