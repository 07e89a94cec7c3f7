/**
 * flanneld's iptables rules, in chains of our own so nothing else is touched: the
 * masquerade rules (`--ip-masq`) and the FORWARD accept rules for the Network
 * (`--iptables-forward-rules`, on by default as in flanneld: Docker ≥ 1.13 sets the
 * FORWARD policy to DROP, and containers on other hosts would not reach this host's).
 *
 *   nat    POSTROUTING → OVERLAY-POST-<id>
 *            -s <Network> -d <Network> -j RETURN                  overlay ↔ overlay: untouched
 *            -s <Network> ! -d 224.0.0.0/4 -j MASQUERADE          overlay → outside
 *            ! -s <Network> -d <own subnet> -j RETURN             outside → this host's subnet
 *            ! -s <Network> -d <Network> -j MASQUERADE            outside → other hosts' subnets
 *   filter FORWARD → OVERLAY-FWD-<id>
 *            -s <Network> -j ACCEPT ;  -d <Network> -j ACCEPT
 *
 * In a network with IPv6 the same chains are kept by ip6tables for the IPv6Network and
 * this host's IPv6 subnet, with ff00::/8 for multicast (flannel's MasqIP6Rules).
 *
 * The chain contents are applied atomically with one `iptables-restore --noflush` that
 * flushes and refills only our chains; the jump into each chain is added only when
 * `iptables -C` says it is missing. Running twice, restarting, or the periodic re-check
 * never duplicates a rule. `<id>` comes from the etcd prefix, so two networks on one
 * host keep separate chains.
 */
import { OverlayError } from "./errors.ts";
import { formatIp4Net, type Ip4Net } from "./ip.ts";
import { formatIp6Net, type Ip6Net } from "./ip6.ts";
import { log } from "./log.ts";

export interface MasqChains {
  readonly nat: string;
  readonly filter: string;
}

/** Chain names for a network, from its etcd prefix (iptables allows 28 characters). */
export async function masqChains(etcdPrefix: string): Promise<MasqChains> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(etcdPrefix)),
  );
  const id = [...digest.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return { nat: `OVERLAY-POST-${id}`, filter: `OVERLAY-FWD-${id}` };
}

/** One family's rules: the network, this host's subnet of it, and the tool that keeps them. */
export interface MasqTarget {
  readonly tool: "iptables" | "ip6tables";
  readonly network: string;
  readonly subnet: string;
  readonly multicast: string;
}

/** The IPv4 rules' target. */
export function masqTarget4(network: Ip4Net, subnet: Ip4Net): MasqTarget {
  const [net, own] = [formatIp4Net(network), formatIp4Net(subnet)];
  return { tool: "iptables", network: net, subnet: own, multicast: "224.0.0.0/4" };
}

/** The IPv6 rules' target. */
export function masqTarget6(network: Ip6Net, subnet: Ip6Net): MasqTarget {
  const [net, own] = [formatIp6Net(network), formatIp6Net(subnet)];
  return { tool: "ip6tables", network: net, subnet: own, multicast: "ff00::/8" };
}

/** The rules of each chain, as `iptables -S CHAIN` prints them (without the -N line). */
export function masqRules(
  chains: MasqChains,
  target: MasqTarget,
): { nat: string[]; filter: string[] } {
  const { network: net, subnet: own, multicast } = target;
  return {
    nat: [
      `-A ${chains.nat} -s ${net} -d ${net} -m comment --comment "overlay: overlay to overlay" -j RETURN`,
      `-A ${chains.nat} -s ${net} ! -d ${multicast} -m comment --comment "overlay: overlay to outside" -j MASQUERADE --random-fully`,
      `-A ${chains.nat} ! -s ${net} -d ${own} -m comment --comment "overlay: outside to this host" -j RETURN`,
      `-A ${chains.nat} ! -s ${net} -d ${net} -m comment --comment "overlay: outside to other hosts" -j MASQUERADE --random-fully`,
    ],
    filter: [
      `-A ${chains.filter} -s ${net} -m comment --comment "overlay: forward from overlay" -j ACCEPT`,
      `-A ${chains.filter} -d ${net} -m comment --comment "overlay: forward to overlay" -j ACCEPT`,
    ],
  };
}

async function run(
  command: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new OverlayError(
        `--ip-masq needs ${command}, which is not installed (install the iptables package)`,
      );
    }
    throw error;
  }
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr).trim(),
  };
}

/** True when the iptables tools (ip6tables: `tool`) can be run here. */
export async function iptablesInstalled(tool = "iptables"): Promise<boolean> {
  try {
    return (await run(tool, ["--version"])).code === 0;
  } catch {
    return false;
  }
}

/** Reads a chain's rules; undefined when the chain does not exist. */
async function chainRules(
  tool: string,
  table: string,
  chain: string,
): Promise<string[] | undefined> {
  const result = await run(tool, ["-w", "5", "-t", table, "-S", chain]);
  if (result.code !== 0) return undefined;
  return result.stdout.split("\n").filter((line) => line.startsWith("-A "));
}

async function ensureJump(
  tool: string,
  table: string,
  from: string,
  chain: string,
): Promise<boolean> {
  const check = await run(tool, ["-w", "5", "-t", table, "-C", from, "-j", chain]);
  if (check.code === 0) return false;
  const insert = await run(tool, ["-w", "5", "-t", table, "-I", from, "1", "-j", chain]);
  if (insert.code !== 0) {
    throw new OverlayError(
      `${tool}: cannot add the jump from ${from} to ${chain}: ${insert.stderr}`,
    );
  }
  return true;
}

/** Which of the rule sets to install. */
export interface RuleChoice {
  /** --ip-masq: the nat chain. */
  readonly masq: boolean;
  /** --iptables-forward-rules: the filter chain. */
  readonly forward: boolean;
}

/**
 * Makes the chosen rules what they should be; changes nothing when they already are.
 * Returns true when something had to be written.
 */
export async function applyMasq(
  chains: MasqChains,
  target: MasqTarget,
  choice: RuleChoice = { masq: true, forward: true },
): Promise<boolean> {
  const rules = masqRules(chains, target);
  const tool = target.tool;
  const tables = [
    { table: "nat", chain: chains.nat, from: "POSTROUTING", rules: rules.nat, on: choice.masq },
    {
      table: "filter",
      chain: chains.filter,
      from: "FORWARD",
      rules: rules.filter,
      on: choice.forward,
    },
  ].filter((t) => t.on);
  const actual = await Promise.all(tables.map((t) => chainRules(tool, t.table, t.chain)));
  const same = (found: string[] | undefined, wanted: string[]) =>
    found !== undefined && found.length === wanted.length &&
    found.every((line, i) => normalize(line) === normalize(wanted[i]));
  let changed = false;
  if (tables.some((t, i) => !same(actual[i], t.rules))) {
    const script = [
      ...tables.flatMap((
        t,
      ) => [`*${t.table}`, `:${t.chain} - [0:0]`, `-F ${t.chain}`, ...t.rules, "COMMIT"]),
      "",
    ].join("\n");
    const restore = await run(`${tool}-restore`, ["-w", "5", "--noflush"], script);
    if (restore.code !== 0) throw new OverlayError(`${tool}-restore failed: ${restore.stderr}`);
    changed = true;
  }
  for (const t of tables) if (await ensureJump(tool, t.table, t.from, t.chain)) changed = true;
  return changed;
}

/** What removeMasq did with one chain of one family. */
export interface ChainRemoval {
  readonly tool: "iptables" | "ip6tables";
  readonly table: string;
  readonly chain: string;
  /** "absent": there was no such chain; "failed": it is still there, `error` says why. */
  readonly outcome: "removed" | "absent" | "failed";
  readonly error?: string;
}

/** What iptables says when a chain does not exist (nf_tables and legacy alike). */
const NO_SUCH_CHAIN = /No chain\/target\/match by that name|does not exist/i;

/**
 * Removes our jumps and chains, IPv4 and IPv6 (ip6tables only when installed), and says
 * for each chain whether it was there and went, was not there, or stayed (a rule of
 * someone else's still jumps to it). Throws when iptables is not installed. `tables`
 * picks the masquerading (nat) or the FORWARD rules (filter) alone.
 */
export async function removeMasq(
  chains: MasqChains,
  tables: readonly ("nat" | "filter")[] = ["nat", "filter"],
): Promise<ChainRemoval[]> {
  const pairs = [["nat", "POSTROUTING", chains.nat], ["filter", "FORWARD", chains.filter]]
    .filter(([table]) => (tables as readonly string[]).includes(table));
  const results: ChainRemoval[] = [];
  for (const tool of ["iptables", "ip6tables"] as const) {
    if (tool === "ip6tables" && !await iptablesInstalled(tool)) continue;
    for (const [table, from, chain] of pairs) {
      while ((await run(tool, ["-w", "5", "-t", table, "-D", from, "-j", chain])).code === 0) {
        // a duplicate jump someone added by hand goes too
      }
      const flush = await run(tool, ["-w", "5", "-t", table, "-F", chain]);
      if (flush.code !== 0 && NO_SUCH_CHAIN.test(flush.stderr)) {
        results.push({ tool, table, chain, outcome: "absent" });
        continue;
      }
      const remove = flush.code === 0
        ? await run(tool, ["-w", "5", "-t", table, "-X", chain])
        : flush;
      results.push(
        remove.code === 0 ? { tool, table, chain, outcome: "removed" } : {
          tool,
          table,
          chain,
          outcome: "failed",
          error: remove.stderr || `exit ${remove.code}`,
        },
      );
    }
  }
  return results;
}

/** iptables -S quotes comments and may print options in its own order of spaces. */
function normalize(rule: string): string {
  return rule.replace(/\s+/g, " ").trim();
}

/** Keeps the rules in place: re-checks them every `intervalMs` until stopped. */
export function keepMasq(
  chains: MasqChains,
  targets: readonly MasqTarget[],
  intervalMs: number,
  choice: RuleChoice = { masq: true, forward: true },
): { stop(): void } {
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      let changed = false;
      for (const target of targets) {
        if (await applyMasq(chains, target, choice)) changed = true;
      }
      if (changed) {
        log.warn("iptables rules had changed; restored them", {
          chains: `${chains.nat}, ${chains.filter}`,
        });
      }
    } catch (error) {
      log.warn("iptables re-check failed", { error: (error as Error).message });
    } finally {
      busy = false;
    }
  }, intervalMs);
  return { stop: () => clearInterval(timer) };
}
