/**
 * The etcd client when etcd is in trouble: every error shape the JSON gateway produces,
 * elections, expired tokens, a watch gone silent, the gateway turned off, and a refused
 * request retried with backoff. Against real etcd on loopback (a 3-member cluster where
 * members matter); the partition of a member in a namespace lab is in reliability_test.ts.
 */
import assert from "node:assert/strict";
import {
  describeEtcdError,
  type EtcdOptions,
  EtcdResponseError,
  EtcdUnavailableError,
} from "../lib/etcd.ts";
import { cancelCode, gatewayError, GRPC, parseWatchLine } from "../lib/etcd_gateway.ts";
import { EtcdClient, WATCH_PROGRESS_MS, WATCH_SILENCE_MS } from "../lib/etcd_client.ts";
import { freePort, INTEGRATION, overlay, startEtcd, waitFor } from "./helpers.ts";
import { startEtcdCluster } from "../lab/etcd.ts";

const options = (endpoints: string[], extra: Partial<EtcdOptions> = {}): EtcdOptions => ({
  endpoints,
  prefix: "/coreos.com/network",
  ...extra,
});

Deno.test("every error shape of etcd's gateway reads as one message and code", () => {
  // As etcd 3.4 answered them on this machine (see lib/etcd_gateway.ts): body, HTTP status,
  // and the message, gRPC code and status read from it.
  const compacted = "etcdserver: mvcc: required revision has been compacted";
  const shapes: [string, number, string, number | undefined, number][] = [
    [
      `{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}`,
      503,
      "etcdserver: no leader",
      GRPC.UNAVAILABLE,
      503,
    ],
    [
      `{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}`,
      200,
      "etcdserver: no leader",
      GRPC.UNAVAILABLE,
      503,
    ],
    [
      `{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}`,
      401,
      "etcdserver: invalid auth token",
      GRPC.UNAUTHENTICATED,
      401,
    ],
    [
      `{"error":"${compacted}","message":"${compacted}","code":11}`,
      400,
      compacted,
      GRPC.OUT_OF_RANGE,
      400,
    ],
    ["404 page not found\n", 404, "404 page not found", undefined, 404],
  ];
  for (const [body, status, message, code, httpStatus] of shapes) {
    assert.deepEqual(gatewayError(body, status), { message, code, httpStatus }, body);
  }
  assert.equal(gatewayError(`{"result":{"header":{"revision":"3"}}}`, 200), undefined);
  assert.equal(gatewayError(`{"header":{"revision":"3"},"kvs":[]}`, 200), undefined);
  const line = parseWatchLine(
    `{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}`,
  );
  assert.ok(!("events" in line));
  assert.equal(line.message, "etcdserver: no leader");
  assert.equal(
    cancelCode("rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"),
    GRPC.UNAUTHENTICATED,
  );
  const error = new EtcdResponseError("etcdserver: no leader", 503, 14);
  assert.ok(error.transient && error.memberUnavailable && !error.unauthenticated);
});

Deno.test({
  name:
    "an election: a keepalive while the member has no leader says 'no leader' and is retried until a leader is back",
  ...INTEGRATION,
  async fn() {
    await using cluster = await startEtcdCluster(3);
    const client = new EtcdClient(options([cluster.endpoints[0]]));
    try {
      const lease = await client.leaseGrant(60);
      await cluster.stopMember(1);
      await cluster.stopMember(2);
      // Alone, member 0 loses its leader within an election timeout or two.
      await waitFor(async () => {
        const response = await fetch(`${cluster.endpoints[0]}/v3/kv/range`, {
          method: "POST",
          headers: { "grpc-metadata-hasleader": "true" },
          body: `{"key":"YQ=="}`,
        });
        return /no leader/.test(await response.text());
      }, { timeoutMs: 15_000, what: "member 0 without a leader" });
      const started = Date.now();
      const renewing = client.leaseKeepAlive(lease);
      setTimeout(() => cluster.startMember(1), 2_000);
      const ttl = await renewing;
      assert.ok(ttl > 0, `renewed to ${ttl} s`);
      assert.ok(Date.now() - started >= 1_500, "it waited for the election");
      await cluster.stopMember(1);
      await waitFor(async () => {
        try {
          await client.leaseKeepAlive(lease);
          return false;
        } catch (error) {
          return error as Error;
        }
      }, { timeoutMs: 30_000, what: "keepalive to fail with no leader" }).then((error) => {
        assert.match(error.message, /no leader/);
        assert.doesNotMatch(error.message, /object Object/);
      });
    } finally {
      client.close();
    }
  },
});

Deno.test({
  name:
    "authentication: an expired token is renewed once and the call retried, for requests and the watch; outside its prefix the user is refused in one line",
  ...INTEGRATION,
  async fn() {
    await using etcd = await startEtcd({ args: ["--auth-token=simple", "--auth-token-ttl=2"] });
    const ctl = async (...args: string[]) => {
      const result = await new Deno.Command("etcdctl", {
        args: [`--endpoints=${etcd.endpoint}`, "--user=root:rootpw", ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    };
    for (
      const args of [
        ["user", "add", "root:rootpw"],
        ["role", "add", "flannel"],
        [
          "role",
          "grant-permission",
          "flannel",
          "--prefix=true",
          "readwrite",
          "/coreos.com/network/",
        ],
        ["user", "add", "agent:agentpw"],
        ["user", "grant-role", "agent", "flannel"],
        ["auth", "enable"],
      ]
    ) await ctl(...args);
    const client = new EtcdClient(
      options([etcd.endpoint], { username: "agent", password: "agentpw" }),
    );
    const key = "/coreos.com/network/config";
    try {
      await client.put(key, "one");
      await new Promise((resolve) => setTimeout(resolve, 3_500)); // the token is gone
      assert.equal(await client.get(key), "one", "a request after expiry");
      const lease = await client.leaseGrant(30);
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      assert.ok((await client.leaseKeepAlive(lease)) > 0);
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      // The watch, opened with an expired token, logs in again and sees a put.
      const abort = new AbortController();
      const seen: string[] = [];
      const watching = client.watch(
        { key, startRevision: "0", signal: abort.signal },
        (response) => {
          for (const event of response.events) seen.push(event.kv.value);
        },
      ).catch((error) => error);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await ctl("put", key, "two");
      await waitFor(() => seen.includes("two"), { timeoutMs: 5_000, what: "the put, watched" });
      abort.abort();
      await watching;
      const outside = await overlay([
        "config",
        "get",
        `--etcd-endpoints=${etcd.endpoint}`,
        "--etcd-prefix=/elsewhere",
        "--etcd-username=agent",
        "--etcd-password=agentpw",
      ]);
      assert.equal(outside.code, 1);
      assert.match(
        outside.stderr,
        /\noverlay: etcd at http:\/\/127\.0\.0\.1:\d+: permission denied \(the etcd user needs read and write on \/elsewhere\/\)\n$/,
      );
    } finally {
      client.close();
    }
  },
});

Deno.test({
  name: "compaction and unknown leases answer with their own errors, not a retry",
  ...INTEGRATION,
  async fn() {
    await using etcd = await startEtcd();
    const client = new EtcdClient(options([etcd.endpoint]));
    try {
      await client.put("a", "1");
      await client.put("a", "2");
      const { revision } = await client.range("a");
      await client.call("/v3/kv/compaction", { revision });
      await assert.rejects(
        () => client.range("a", { revision: String(Number(revision) - 1) }),
        (error: EtcdResponseError) =>
          error.code === GRPC.OUT_OF_RANGE && /compacted/.test(error.message),
      );
      const responses: { compactRevision: string; canceled: boolean }[] = [];
      await client.watch(
        { key: "a", startRevision: "1", signal: AbortSignal.timeout(5_000) },
        (response) => responses.push(response),
      );
      assert.ok(responses.some((r) => r.canceled && r.compactRevision === revision));
      await assert.rejects(
        () => client.leaseRevoke("12345"),
        (error: EtcdResponseError) =>
          error.code === GRPC.NOT_FOUND && /lease not found/.test(error.message),
      );
      assert.equal(await client.leaseKeepAlive("12345"), 0, "a renewal of a gone lease: lost");
    } finally {
      client.close();
    }
  },
});

Deno.test({
  name: "etcd with its JSON gateway turned off: one line that says what the agent needs",
  ...INTEGRATION,
  async fn() {
    await using etcd = await startEtcd({ args: ["--enable-grpc-gateway=false"] });
    const result = await overlay(["config", "get", `--etcd-endpoints=${etcd.endpoint}`]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^overlay: etcd at http:\/\/127\.0\.0\.1:\d+: 404 page not found: the agent talks to etcd through its JSON gateway, which does not answer there \(start etcd with --enable-grpc-gateway=true, its default\)\n$/,
    );
  },
});

Deno.test("etcd's gateway refusing a client certificate with a CommonName names the fix", () => {
  const options: EtcdOptions = {
    endpoints: ["https://10.0.0.5:2379"],
    prefix: "/coreos.com/network",
  };
  const said = describeEtcdError(
    new Error(
      "CommonName of client sending a request against gateway will be ignored and not used as expected",
    ),
    options,
  );
  assert.match(
    said,
    /^etcd at https:\/\/10\.0\.0\.5:2379: with auth on, etcd's JSON gateway refuses/,
  );
  assert.match(said, /give --etcd-certfile one without a CN/);
});

Deno.test("an error that already names etcd's endpoints is not prefixed twice", () => {
  const options: EtcdOptions = {
    endpoints: ["http://10.0.0.5:2379"],
    prefix: "/coreos.com/network",
  };
  const error = new EtcdUnavailableError("etcd at http://10.0.0.5:2379: no member answered");
  assert.equal(
    describeEtcdError(error, options),
    "etcd at http://10.0.0.5:2379: no member answered",
  );
});

Deno.test("a 404 from etcd's peer port (2380) names the client port instead", () => {
  const options: EtcdOptions = {
    endpoints: ["http://10.0.0.5:2380"],
    prefix: "/coreos.com/network",
  };
  assert.equal(
    describeEtcdError(new Error("404 page not found"), options),
    "etcd at http://10.0.0.5:2380: 404 page not found: the agent talks to etcd through its " +
      "JSON gateway, which does not answer there (2380 is etcd's peer port: give its client " +
      "port, 2379, in --etcd-endpoints)",
  );
});

/** A TCP relay to `target` that can be frozen: connections stay open, no byte moves. */
function freezableRelay(target: string) {
  const url = new URL(target);
  const port = freePort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  let frozen = false;
  const waiters: (() => void)[] = [];
  const thaw = () => new Promise<void>((resolve) => frozen ? waiters.push(resolve) : resolve());
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(65536);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        await thaw();
        await to.write(buffer.subarray(0, n));
      }
    } catch { /* closed */ }
    try {
      to.close();
    } catch { /* closed */ }
  };
  (async () => {
    for await (const conn of listener) {
      const upstream = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
      pipe(conn, upstream);
      pipe(upstream, conn);
    }
  })().catch(() => {});
  return {
    endpoint: `http://127.0.0.1:${port}`,
    freeze: () => frozen = true,
    close: () => listener.close(),
  };
}

Deno.test({
  name:
    "a watch gone silent (the path to its member frozen) moves to another endpoint within the bound and misses nothing",
  ...INTEGRATION,
  async fn() {
    await using cluster = await startEtcdCluster(2);
    const relay = freezableRelay(cluster.endpoints[0]);
    const client = new EtcdClient(options([relay.endpoint, cluster.endpoints[1]]));
    const abort = new AbortController();
    try {
      const seen: string[] = [];
      let revision = "0";
      const follow = async () => {
        while (!abort.signal.aborted) {
          await client.watch(
            { key: "k", startRevision: String(Number(revision) + 1), signal: abort.signal },
            (response) => {
              for (const event of response.events) {
                seen.push(event.kv.value);
                revision = event.kv.modRevision;
              }
            },
          ).catch(() => {});
        }
      };
      const following = follow();
      const other = new EtcdClient(options([cluster.endpoints[1]]));
      await new Promise((resolve) => setTimeout(resolve, 500));
      await other.put("k", "before");
      await waitFor(() => seen.includes("before"), { what: "the first put" });
      relay.freeze();
      const frozen = Date.now();
      await other.put("k", "during");
      await waitFor(() => seen.includes("during"), {
        timeoutMs: WATCH_PROGRESS_MS + WATCH_SILENCE_MS + 3_000,
        intervalMs: 100,
        what: "the put made while the path was frozen",
      });
      const ms = Date.now() - frozen;
      console.log(`silent watch moved and caught up ${ms} ms after the freeze`);
      assert.ok(ms <= WATCH_PROGRESS_MS + WATCH_SILENCE_MS + 1_000, `${ms} ms`);
      assert.deepEqual(seen, ["before", "during"], "nothing missed, nothing twice");
      other.close();
      abort.abort();
      await following;
    } finally {
      abort.abort();
      client.close();
      relay.close();
    }
  },
});

Deno.test({
  name:
    "a request that cannot connect anywhere is EtcdUnavailableError with the endpoints and the fix",
  ...INTEGRATION,
  async fn() {
    const client = new EtcdClient(options([`http://127.0.0.1:${freePort()}`]));
    try {
      await assert.rejects(
        () => client.get("k"),
        (error: Error) =>
          error instanceof EtcdUnavailableError &&
          /connection refused \(is etcd running/.test(error.message),
      );
    } finally {
      client.close();
    }
  },
});
