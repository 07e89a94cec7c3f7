/**
 * Real container runtimes on the lab's hosts, from Debian's packages (nothing is
 * downloaded): LXC containers from the busybox template, and one dockerd per host with
 * an image made locally from busybox-static. Everything is removed at the lab's dispose.
 *
 * LXC runs from the root namespace: `ip netns exec … lxc-start` loses the cgroups. Its
 * veth's host end is moved into the host's namespace and onto the bridge by a small
 * lxc.net.0.script.up. dockerd is started under `nsenter --net=/run/netns/<host>` for
 * the same reason, with its own data root, exec root, pid file and socket.
 */
import type { CommandOutput, Lab, LabHost } from "../lab/lab.ts";
import { runCommand } from "../lab/run.ts";

export interface Container {
  readonly name: string;
  readonly ip: string;
  /** Runs a command inside the container. */
  exec(argv: string[]): Promise<CommandOutput>;
}

/** Why real LXC containers cannot run here, or undefined when they can. */
export async function lxcUnavailable(): Promise<string | undefined> {
  for (const tool of ["lxc-create", "lxc-start", "lxc-attach"]) {
    if (!await found(tool)) return `${tool} is not installed (apt-get install lxc)`;
  }
  if (!await isStaticBusybox()) {
    return "busybox-static is not installed (the busybox template needs it)";
  }
  if (!await exists("/usr/share/lxc/templates/lxc-busybox")) {
    return "LXC's busybox template /usr/share/lxc/templates/lxc-busybox is missing";
  }
  return undefined;
}

/** Why a real dockerd cannot run here, or undefined when it can. */
export async function dockerUnavailable(): Promise<string | undefined> {
  for (const tool of ["dockerd", "docker", "nsenter", "iptables"]) {
    if (!await found(tool)) return `${tool} is not installed (apt-get install docker.io)`;
  }
  if (!await isStaticBusybox()) return "busybox-static is not installed (the local image needs it)";
  return undefined;
}

let lxcCounter = 0;

/**
 * Starts an LXC container (busybox template) on `host`, attached to `bridge` there, with
 * a fixed address and gateway as an operator's LXC config would give it.
 */
export async function startLxcContainer(
  lab: Lab,
  host: LabHost,
  options: { bridge: string; address: string; gateway: string; mtu: string },
): Promise<Container> {
  const index = ++lxcCounter;
  const lxcPath = `${lab.dir}/lxc`;
  await Deno.mkdir(lxcPath, { recursive: true });
  const name = `${lab.id}-${host.name}-lxc${index}`;
  const veth = `v${lab.id.slice(-5)}${index}`;
  const upScript = `${lxcPath}/${name}-up.sh`;
  // LXC calls: <container> net up veth <host-side device>.
  await Deno.writeTextFile(
    upScript,
    `#!/bin/sh\nset -e\nip link set "$5" netns ${host.ns}\n` +
      `ip netns exec ${host.ns} ip link set "$5" master ${options.bridge} mtu ${options.mtu} up\n`,
    { mode: 0o755 },
  );
  const [ip, prefixLen] = options.address.split("/");
  const broadcast = broadcastOf(ip, Number(prefixLen));
  const config = `${lxcPath}/${name}.conf`;
  await Deno.writeTextFile(
    config,
    [
      "lxc.net.0.type = veth",
      "lxc.net.0.flags = up",
      `lxc.net.0.veth.pair = ${veth}`,
      `lxc.net.0.script.up = ${upScript}`,
      `lxc.net.0.mtu = ${options.mtu}`,
      `lxc.net.0.ipv4.address = ${options.address} ${broadcast}`,
      `lxc.net.0.ipv4.gateway = ${options.gateway}`,
      "lxc.cgroup.relative = 1",
      "lxc.apparmor.profile = unconfined",
      "",
    ].join("\n"),
  );
  const lxc = (tool: string, ...args: string[]) => run([tool, "-P", lxcPath, "-n", name, ...args]);
  const created = await lxc("lxc-create", "-t", "busybox", "-f", config);
  if (created.code !== 0) throw new Error(`lxc-create ${name}: ${created.stderr}`);
  lab.defer(async () => {
    await lxc("lxc-stop", "-k");
    await lxc("lxc-destroy");
    await removeLxcPivotCgroups();
  });
  // The busybox init would run a DHCP client; the address is static.
  const rcS = `${lxcPath}/${name}/rootfs/etc/init.d/rcS`;
  await Deno.writeTextFile(
    rcS,
    (await Deno.readTextFile(rcS)).replace(/^(\s*\/bin\/udhcpc.*)$/m, "# $1"),
  );
  const started = await lxc("lxc-start", "-d");
  if (started.code !== 0) throw new Error(`lxc-start ${name}: ${started.stderr}`);
  const running = await lxc("lxc-wait", "-s", "RUNNING", "-t", "10");
  if (running.code !== 0) throw new Error(`lxc-wait ${name}: ${running.stderr}`);
  return { name, ip, exec: (argv) => lxc("lxc-attach", "--", ...argv) };
}

export interface DockerDaemon {
  /** Starts a container from the local busybox image; its address comes from docker0. */
  run(name: string): Promise<Container>;
  /** The daemon's log so far. */
  log(): string;
}

const IMAGE = "overlay-busybox:local";

/** Starts dockerd in `host`'s network namespace with `options` (e.g. from docker-opts). */
export async function startDockerd(
  lab: Lab,
  host: LabHost,
  options: string[],
): Promise<DockerDaemon> {
  const root = `${lab.dir}/${host.name}-docker`;
  await Deno.mkdir(root, { recursive: true });
  const socket = `unix://${root}/docker.sock`;
  const docker = (...args: string[]) => run(["docker", "-H", socket, ...args]);
  const daemon = lab.spawnCommand([
    "nsenter",
    `--net=/run/netns/${host.ns}`,
    "dockerd",
    `--data-root=${root}/data`,
    `--exec-root=${root}/exec`,
    `--pidfile=${root}/docker.pid`,
    `--host=${socket}`,
    ...options,
  ]);
  lab.defer(async () => {
    const ids = (await docker("ps", "-aq")).stdout.split("\n").filter(Boolean);
    if (ids.length > 0) await docker("rm", "-f", ...ids);
    await daemon.stop("SIGTERM");
    await unmountUnder(root);
  });
  const deadline = Date.now() + 30_000;
  while ((await docker("version")).code !== 0) {
    if (Date.now() > deadline || daemon.child.pid === undefined) {
      throw new Error(`dockerd on ${host.name} did not answer in 30 s:\n${daemon.log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  // An image made here from busybox-static: no registry is reachable.
  const rootfs = `${root}/rootfs`;
  await Deno.mkdir(`${rootfs}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${rootfs}/bin/busybox`);
  for (const applet of ["sh", "ping", "sleep", "ip", "cat", "wget"]) {
    await Deno.symlink("busybox", `${rootfs}/bin/${applet}`);
  }
  const tar = await run(["tar", "-C", rootfs, "-cf", `${root}/rootfs.tar`, "."]);
  if (tar.code !== 0) throw new Error(`tar: ${tar.stderr}`);
  const imported = await docker("import", `${root}/rootfs.tar`, IMAGE);
  if (imported.code !== 0) throw new Error(`docker import: ${imported.stderr}`);
  return {
    log: () => daemon.log(),
    async run(name: string): Promise<Container> {
      const started = await docker("run", "-d", "--name", name, IMAGE, "/bin/sleep", "3600");
      if (started.code !== 0) throw new Error(`docker run ${name}: ${started.stderr}`);
      const inspect = await docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name);
      return {
        name,
        ip: inspect.stdout.trim(),
        exec: (argv) => docker("exec", name, ...argv),
      };
    },
  };
}

/** Pings `to` from a container; true when an answer came back. */
export async function containerPings(from: Container, to: string, count = 2): Promise<boolean> {
  const result = await from.exec(["ping", "-c", String(count), "-W", "1", to]);
  return result.code === 0 && / 0% packet loss/.test(result.stdout);
}

const run = (argv: string[]) => runCommand(argv);

async function found(tool: string): Promise<boolean> {
  return (await run(["sh", "-c", `command -v ${tool}`])).code === 0;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function isStaticBusybox(): Promise<boolean> {
  const file = await run(["sh", "-c", "ldd /bin/busybox 2>&1"]);
  return (await exists("/bin/busybox")) && /not a dynamic executable|statically linked/.test(
    file.stdout,
  );
}

function broadcastOf(ip: string, prefixLen: number): string {
  const value = ip.split(".").reduce((sum, octet) => sum * 256 + Number(octet), 0);
  const last = (value | ((2 ** (32 - prefixLen)) - 1)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (last >>> shift) & 255).join(".");
}

/** LXC leaves empty lxc.pivot cgroup folders behind; an empty one is safe to remove. */
async function removeLxcPivotCgroups(): Promise<void> {
  let controllers: string[] = [];
  try {
    controllers = [...Deno.readDirSync("/sys/fs/cgroup")].map((entry) => entry.name);
  } catch { /* no cgroup filesystem */ }
  for (const folder of [...controllers.map((c) => `/sys/fs/cgroup/${c}`), "/sys/fs/cgroup"]) {
    await Deno.remove(`${folder}/lxc.pivot`).catch(() => {});
  }
}

async function unmountUnder(root: string): Promise<void> {
  const mounts = (await Deno.readTextFile("/proc/mounts")).split("\n")
    .map((line) => line.split(" ")[1]).filter((path) => path?.startsWith(root))
    .sort((a, b) => b.length - a.length);
  for (const path of mounts) await run(["umount", "-l", path]);
}
