/**
 * Checks that keep small rot from coming back: every flag the README gives a command is
 * one its parser takes; the lockfile holds only what deno.json imports; every FFI symbol
 * declared is used; doc comments name functions that exist; and comments in the agent
 * carry no measured figures (those live in the README's tables, where they are kept true).
 */
import assert from "node:assert/strict";
import { parseFlags, RUN_FLAGS } from "../lib/flags.ts";
import { overlay } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

function sourceFiles(dirs: string[]): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.name.endsWith(".ts")) files.push(path);
    }
  };
  for (const dir of dirs) walk(`${ROOT}${dir}`);
  return files;
}

Deno.test("every flag the README's flag table lists is taken by run and by cleanup", () => {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const table = readme.slice(readme.search(/^\| flag +\| default +\| meaning +\|$/m));
  const rows = table.slice(0, table.indexOf("\n\n")).split("\n").slice(2);
  const flags = rows.flatMap((row) => [...row.split("|")[1].matchAll(/`-{1,2}([a-z0-9-]+)`/g)])
    .map((m) => m[1]);
  assert.ok(flags.length >= 20, `found ${flags.length} flags in the table`);
  for (const flag of flags) {
    for (const command of ["overlay run", "overlay cleanup"]) {
      const args = flag === "version" || flag === "ip-masq" || flag.endsWith("-rules")
        ? [`--${flag}`]
        : [`--${flag}=x`];
      try {
        parseFlags(command, args, [...RUN_FLAGS, "keep-lease"]);
      } catch (error) {
        // A value the flag refuses is fine here; an unknown flag is not.
        assert.doesNotMatch((error as Error).message, /unknown flag|not a flag of/, flag);
      }
      assert.ok(RUN_FLAGS.includes(flag as never), `${command} takes --${flag}`);
    }
  }
});

Deno.test("every flag the README shows a command with is in that command's --help", async () => {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const mentions = new Map<string, Set<string>>();
  for (const line of readme.split("\n")) {
    for (const match of line.matchAll(/`overlay ([a-z-]+(?: (?:get|set))?)((?: [^`]*)?)`/g)) {
      const command = match[1] === "--health" ? "--health" : match[1];
      for (const flag of match[2].matchAll(/--([a-z0-9-]+)/g)) {
        if (!mentions.has(command)) mentions.set(command, new Set());
        mentions.get(command)!.add(flag[1]);
      }
    }
  }
  assert.ok(mentions.size >= 5, [...mentions.keys()].join(", "));
  for (const [command, flags] of mentions) {
    const help = await overlay([...command.split(" "), "--help"]);
    assert.equal(help.code, 0, `overlay ${command} --help`);
    for (const flag of flags) {
      if (command === "run" && flag === "cleanup") continue; // run --cleanup: cleanup's flags
      assert.match(help.stdout, new RegExp(`--${flag}\\b`), `overlay ${command} takes --${flag}`);
    }
  }
});

Deno.test("deno.lock holds only the packages deno.json imports", () => {
  const lock = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.lock`));
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const imported = new Set(Object.values(config.imports as Record<string, string>));
  for (const specifier of Object.keys(lock.specifiers ?? {})) {
    assert.ok(imported.has(specifier), `${specifier} is locked but imported by nothing`);
  }
});

Deno.test("every FFI symbol declared is called somewhere", () => {
  const code = sourceFiles(["lib", "ffi", "tests", "bench", "scripts", "demo"])
    .map((file) => Deno.readTextFileSync(file)).join("\n");
  for (const file of sourceFiles(["ffi"])) {
    const text = Deno.readTextFileSync(file);
    const table = /const SYMBOLS = \{([\s\S]*?)\n\} as const;/.exec(text)?.[1];
    if (!table) continue;
    for (const [, symbol] of table.matchAll(/^ {2}(\w+): \{/gm)) {
      assert.match(code, new RegExp(`\\.${symbol}\\(`), `${file}: ${symbol} is never called`);
    }
  }
});

Deno.test("comments in the agent carry no measured figures, and name functions that exist", () => {
  const files = sourceFiles(["lib", "ffi"]);
  const code = files.map((file) => Deno.readTextFileSync(file)).join("\n");
  const defined = new Set([
    ...[...code.matchAll(/(?:function|class|const|let)\s+([A-Za-z_]\w*)/g)].map((m) => m[1]),
    ...[...code.matchAll(/^\s+(?:async\s+|static\s+|get\s+)?#?([A-Za-z_]\w*)\s*\(/gm)].map((m) =>
      m[1]
    ),
  ]);
  for (const file of files) {
    const text = Deno.readTextFileSync(file);
    for (const [comment] of text.matchAll(/\/\*\*[\s\S]*?\*\/|\/\/[^\n]*/g)) {
      assert.doesNotMatch(
        comment,
        /\d\s*(Gbit\/s|Mbit\/s|Gbps|datagrams\/s|pings\/s)/,
        `${file}: a figure in a comment (the README's tables keep them)`,
      );
      for (const [, name] of comment.matchAll(/`([a-z][A-Za-z0-9]+)\(\)`/g)) {
        assert.ok(defined.has(name), `${file}: a comment names ${name}(), which does not exist`);
      }
    }
  }
});
