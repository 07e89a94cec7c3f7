/**
 * etcd with TLS and client-certificate auth, certificates made here with openssl:
 * the right CA and client certificate work; a wrong CA or a missing client certificate
 * is a clear one-line error.
 */
import assert from "node:assert/strict";
import { freePort, INTEGRATION, overlay, startEtcd, tempDir, waitFor } from "./helpers.ts";

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (output.code !== 0) {
    throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** A self-signed CA, `${name}.pem` and `${name}.key` in `dir`. */
async function makeCa(dir: string, name = "ca"): Promise<void> {
  const subject = `/CN=${name}`;
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    subject,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
  );
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
async function makeCertificates(dir: string, name = "ca"): Promise<void> {
  await makeCa(dir, name);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1\n# etcd's JSON gateway dials etcd itself with the server certificate.\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  await Deno.writeTextFile(`${dir}/client.ext`, "extendedKeyUsage=clientAuth\n");
  for (const who of ["server", "client"]) {
    await openssl(
      dir,
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${who}`,
      "-keyout",
      `${who}.key`,
      "-out",
      `${who}.csr`,
    );
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${who}.csr`,
      "-CA",
      `${name}.pem`,
      "-CAkey",
      `${name}.key`,
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      `${who}.ext`,
      "-out",
      `${who}.pem`,
    );
  }
}

/** etcd over TLS with client-certificate auth, its certificates from `certs` (see makeCertificates). */
function startTlsEtcd(certs: string, dataDir: string) {
  const port = freePort();
  const peerPort = freePort();
  const endpoint = `https://127.0.0.1:${port}`;
  const etcd = new Deno.Command("etcd", {
    args: [
      "--name=tls",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=tls=http://127.0.0.1:${peerPort}`,
      `--cert-file=${certs}/server.pem`,
      `--key-file=${certs}/server.key`,
      "--client-cert-auth",
      `--trusted-ca-file=${certs}/ca.pem`,
      "--log-level=error",
      "--logger=zap",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  return { endpoint, etcd };
}

Deno.test({
  name: "etcd over TLS with client certificates",
  ...INTEGRATION,
  async fn(t) {
    await using dir = await tempDir();
    await makeCertificates(`${dir}`);
    await Deno.mkdir(`${dir}/other`);
    await makeCa(`${dir}/other`);
    const { endpoint, etcd } = startTlsEtcd(`${dir}`, `${dir}/data`);
    try {
      const tls = [
        `--etcd-endpoints=${endpoint}`,
        `--etcd-cafile=${dir}/ca.pem`,
        `--etcd-certfile=${dir}/client.pem`,
        `--etcd-keyfile=${dir}/client.key`,
      ];
      await waitFor(
        async () =>
          (await overlay(["config", "set", ...tls, `{"Network":"10.10.0.0/16"}`])).code === 0,
        { timeoutMs: 15_000, what: "etcd over TLS" },
      );

      await t.step("the right CA and client certificate read and write the config", async () => {
        const get = await overlay(["config", "get", ...tls]);
        assert.equal(get.code, 0, get.stderr);
        assert.equal(get.stdout, `{"Network":"10.10.0.0/16"}\n`);
      });

      const tlsFailure =
        /^overlay: etcd at https:\/\/127\.0\.0\.1:\d+: TLS failed: .*\(check --etcd-cafile, --etcd-certfile, --etcd-keyfile\)\n$/;
      const failures: [string, string[]][] = [
        ["a wrong CA", [
          `--etcd-cafile=${dir}/other/ca.pem`,
          `--etcd-certfile=${dir}/client.pem`,
          `--etcd-keyfile=${dir}/client.key`,
        ]],
        ["a missing client certificate", [`--etcd-cafile=${dir}/ca.pem`]],
      ];
      for (const [what, flags] of failures) {
        await t.step(`${what} is a one-line TLS error that names the flags`, async () => {
          const result = await overlay(["config", "get", `--etcd-endpoints=${endpoint}`, ...flags]);
          assert.equal(result.code, 1);
          assert.match(result.stderr, tlsFailure);
        });
      }

      await t.step("an unreadable certificate file is a usage error", async () => {
        const result = await overlay([
          "config",
          "get",
          `--etcd-endpoints=${endpoint}`,
          `--etcd-cafile=${dir}/missing.pem`,
        ]);
        assert.equal(result.code, 2);
        assert.match(
          result.stderr,
          /--etcd-cafile ".*missing\.pem": .*\(give a readable PEM file\)/,
        );
      });
    } finally {
      etcd.kill("SIGKILL");
      await etcd.status;
    }
  },
});

Deno.test({
  name:
    "with --etcd-cafile only that CA is trusted: a certificate for the right name from another, publicly trusted CA is refused",
  ...INTEGRATION,
  async fn() {
    await using dir = await tempDir();
    await Deno.mkdir(`${dir}/ours`);
    await Deno.mkdir(`${dir}/impostor`);
    await makeCertificates(`${dir}/ours`);
    await makeCertificates(`${dir}/impostor`);
    // The impostor's etcd has a valid certificate for 127.0.0.1 from a CA this process
    // trusts as a system root (as a public CA would be), just not the CA the operator named.
    const { endpoint, etcd } = startTlsEtcd(`${dir}/impostor`, `${dir}/data`);
    const env = { DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: `${dir}/impostor/ca.pem` };
    try {
      const impostorFlags = [
        `--etcd-endpoints=${endpoint}`,
        `--etcd-certfile=${dir}/impostor/client.pem`,
        `--etcd-keyfile=${dir}/impostor/client.key`,
      ];
      // Without --etcd-cafile the system roots apply: the impostor is trusted (etcd is up).
      await waitFor(
        async () =>
          (await overlay(["config", "set", ...impostorFlags, `{"Network":"10.10.0.0/16"}`], {
            env,
          })).code === 0,
        { timeoutMs: 15_000, what: "the impostor etcd" },
      );
      const pinned = await overlay(
        ["config", "get", ...impostorFlags, `--etcd-cafile=${dir}/ours/ca.pem`],
        { env },
      );
      assert.equal(pinned.code, 1, pinned.stdout);
      assert.match(pinned.stderr, /TLS failed: .*\(check --etcd-cafile/);
    } finally {
      etcd.kill("SIGKILL");
      await etcd.status;
    }
  },
});

Deno.test({
  name:
    "etcd authentication: the password from a file works, and a password over http:// is warned about",
  ...INTEGRATION,
  async fn() {
    await using etcd = await startEtcd();
    await using dir = await tempDir();
    const etcdctl = (...args: string[]) =>
      new Deno.Command("etcdctl", { args: [`--endpoints=${etcd.endpoint}`, ...args] }).output();
    await etcdctl("user", "add", "root:rootpw");
    await etcdctl("auth", "enable");
    await Deno.writeTextFile(`${dir}/password`, "rootpw\n");
    const flags = [
      `--etcd-endpoints=${etcd.endpoint}`,
      "--etcd-username=root",
      `--etcd-password-file=${dir}/password`,
    ];
    const set = await overlay(["config", "set", ...flags, `{"Network":"10.10.0.0/16"}`]);
    assert.equal(set.code, 0, set.stderr);
    const lines = set.stderr.trim().split("\n").filter((l) => /plain http:\/\//.test(l));
    assert.equal(lines.length, 1, set.stderr);
    const wrong = await overlay(["config", "get", ...flags.slice(0, 2), "--etcd-password=nope"]);
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /authentication failed \(check --etcd-username and --etcd-password\)/,
    );
    const both = await overlay(["config", "get", ...flags, "--etcd-password=x"]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /give one, not both/);
  },
});
