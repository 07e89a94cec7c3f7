/**
 * The wireguard backend's private key file, with flannel's semantics: one base64 line as
 * `wg genkey` writes it, made once and reused on every restart so a host keeps its
 * PublicKey (and its peers' sessions) across restarts. flanneld keeps it in
 * `/run/flannel/wgkey`; overlay keeps it in its state folder (`<state-dir>/wgkey`), and
 * both honour `WIREGUARD_KEY_FILE`.
 *
 * The file is a secret: it is made with mode 0600 (flanneld makes it 0400), and a file
 * that group or others may read, or that holds no valid key, is refused with an error that
 * names the fix instead of being silently replaced (a replaced key would change the
 * host's identity behind its peers' backs).
 */
import { type CryptoProvider, defaultCryptoProvider } from "./crypto.ts";
import { encodeKey, parseKey } from "./keys.ts";
import { generatePrivateKey } from "./noise.ts";

/** The key file's name in the state folder. */
export const KEY_FILE_NAME = "wgkey";

export interface WireguardKeys {
  /** Base64, as `wg genkey` prints it. */
  readonly privateKey: string;
  /** Base64, as `wg pubkey` prints it: what the lease's BackendData carries. */
  readonly publicKey: string;
  /** The file the key lives in. */
  readonly path: string;
  /** True when this call made the file. */
  readonly created: boolean;
}

/** `WIREGUARD_KEY_FILE` when set (as flanneld reads it), else `<stateDir>/wgkey`. */
export function keyFilePath(stateDir: string, env = Deno.env.get("WIREGUARD_KEY_FILE")): string {
  return env ? env : `${stateDir.replace(/\/+$/, "")}/${KEY_FILE_NAME}`;
}

/**
 * Reads the private key at `path`, or makes one there (mode 0600, its folder 0700 when
 * made) when there is no file. Throws when the file is readable by group or others, or
 * does not hold one base64 key.
 */
export function loadOrCreateKey(
  path: string,
  crypto: CryptoProvider = defaultCryptoProvider(),
): WireguardKeys {
  let text: string | undefined;
  try {
    const info = Deno.statSync(path);
    if (!info.isFile) {
      throw new Error(`WireGuard key file "${path}" is not a regular file (remove it)`);
    }
    const mode = (info.mode ?? 0) & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new Error(
        `WireGuard key file "${path}" has mode 0${mode.toString(8)}: others may read the ` +
          `private key (fix it with: chmod 600 ${path})`,
      );
    }
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (text !== undefined) {
    let key: Uint8Array;
    try {
      key = parseKey(text.trim(), "private key");
    } catch {
      throw new Error(
        `WireGuard key file "${path}" does not hold a base64 private key as \`wg genkey\` ` +
          `writes it (remove the file to have a new key made, and the host gets a new PublicKey)`,
      );
    }
    return { ...derive(crypto, key), path, created: false };
  }
  const key = generatePrivateKey(crypto);
  const slash = path.lastIndexOf("/");
  if (slash > 0) Deno.mkdirSync(path.slice(0, slash), { recursive: true, mode: 0o700 });
  // createNew: never overwrite a key another process wrote meanwhile.
  const file = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
  try {
    file.writeSync(new TextEncoder().encode(encodeKey(key) + "\n"));
    file.syncSync();
  } finally {
    file.close();
  }
  Deno.chmodSync(path, 0o600); // the umask may have taken bits off, never added: make it exact
  return { ...derive(crypto, key), path, created: true };
}

function derive(
  crypto: CryptoProvider,
  key: Uint8Array,
): { privateKey: string; publicKey: string } {
  const publicKey = new Uint8Array(32);
  crypto.x25519Base(publicKey, key);
  return { privateKey: encodeKey(key), publicKey: encodeKey(publicKey) };
}
