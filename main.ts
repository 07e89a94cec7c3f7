/**
 * overlay: a flannel-compatible container overlay network agent.
 * This file only parses the command and dispatches; the agent lives in lib/.
 */
import { exitCodeOf, messageOf, UsageError } from "./lib/errors.ts";
import { VERSION } from "./lib/version.ts";

const USAGE = `Usage: overlay <command> [flags]

Commands:
  run                 run the agent on this host
  --health            print this host's health line; exit 0 when ready
  wait                block until this host is ready
  status              show this host's overlay and its counters
  config get|set      read or write the network config in etcd
  leases              list subnet leases
  cleanup             remove what the agent made on this host
  docker-opts         print Docker daemon options from the subnet file
  systemd-unit        print a systemd unit for the agent
  cloud-init          print #cloud-config user-data that installs the agent
  version             print the version

Run "overlay <command> --help" for a command's flags.`;

type Command = (args: string[]) => Promise<number>;

// Commands load their modules on demand so "version" and "--health" start fast.
const COMMANDS: Record<string, () => Promise<Command>> = {
  "run": async () => (await import("./lib/commands/run.ts")).runCommand,
  "--health": async () => (await import("./lib/commands/health.ts")).healthCommand,
  "health": async () => (await import("./lib/commands/health.ts")).healthCommand,
  "wait": async () => (await import("./lib/commands/health.ts")).waitCommand,
  "status": async () => (await import("./lib/commands/status.ts")).statusCommand,
  "config": async () => (await import("./lib/commands/config.ts")).configCommand,
  "leases": async () => (await import("./lib/commands/leases.ts")).leasesCommand,
  "cleanup": async () => (await import("./lib/commands/cleanup.ts")).cleanupCommand,
  "docker-opts": async () => (await import("./lib/commands/docker_opts.ts")).dockerOptsCommand,
  "systemd-unit": async () => (await import("./lib/commands/systemd_unit.ts")).systemdUnitCommand,
  "cloud-init": async () => (await import("./lib/commands/cloud_init.ts")).cloudInitCommand,
  "version": () => Promise.resolve(printVersion),
  // flanneld --version, for scripts that ask the binary they replaced.
  "--version": () => Promise.resolve(printVersion),
  "-version": () => Promise.resolve(printVersion),
};

function printVersion(): Promise<number> {
  console.log(`overlay ${VERSION}`);
  return Promise.resolve(0);
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(USAGE);
    return name === undefined ? 2 : 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    throw new UsageError(`overlay: unknown command ${JSON.stringify(name)} (see: overlay --help)`);
  }
  return await (await load())(rest);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    console.error(`overlay: ${messageOf(error)}`);
    code = exitCodeOf(error);
  }
  Deno.exit(code);
}
