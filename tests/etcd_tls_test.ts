/**
 * etcd with TLS and client-certificate auth, certificates made here with openssl:
 * the right CA and client certificate work; a wrong CA or a missing client certificate
 * is a clear one-line error.
 */
import assert from "node:assert/strict";
import { freePort, INTEGRATION, overlay, tempDir, waitFor } from "./helpers.ts";

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

Deno.test({
  name: "etcd over TLS with client certificates",
  ...INTEGRATION,
  async fn(t) {
    await using dir = await tempDir();
    await makeCertificates(`${dir}`);
    await Deno.mkdir(`${dir}/other`);
    await makeCa(`${dir}/other`);
    const port = freePort();
    const peerPort = freePort();
    const endpoint = `https://127.0.0.1:${port}`;
    const etcd = new Deno.Command("etcd", {
      args: [
        "--name=tls",
        `--data-dir=${dir}/data`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=tls=http://127.0.0.1:${peerPort}`,
        `--cert-file=${dir}/server.pem`,
        `--key-file=${dir}/server.key`,
        "--client-cert-auth",
        `--trusted-ca-file=${dir}/ca.pem`,
        "--log-level=error",
        "--logger=zap",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
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
