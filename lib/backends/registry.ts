/**
 * The backends, by the config's `Backend.Type`: each type's one entry says how to make
 * it and what its device is called by default. A new backend is a file in this folder
 * and a line here; the agent (lib/daemon.ts) and cleanup know no type by name. What each
 * backend makes on a host it declares itself (Backend.owned()), and the agent records
 * that for `overlay cleanup` (lib/inventory.ts).
 */
import type { Backend, BackendContext } from "../backend.ts";
import type { BackendType, NetworkConfig } from "../config.ts";
import { HostGwBackend } from "./host_gw.ts";
import { IpipBackend, ipipUnavailable } from "./ipip.ts";
import { UdpBackend } from "./udp.ts";
import { VxlanBackend } from "./vxlan.ts";
import { kernelPath } from "./wireguard_kernel.ts";
import { WireguardBackend } from "./wireguard.ts";

export interface BackendKind {
  /** Makes the backend (nothing is changed on the host until start()). */
  create(context: BackendContext): Backend;
  /** The device it makes when --device names none (flanneld's names); undefined: none. */
  defaultDevice(config: NetworkConfig): string | undefined;
  /**
   * Why this host's kernel cannot run the backend (a module it lacks), as one line with
   * the fix; undefined when it can. Asked before anything is leased or made: the agent
   * waits, not-ready with that reason, and asks again. Undefined: nothing to check.
   */
  unavailable?(): string | undefined;
}

export const BACKENDS: Record<BackendType, BackendKind> = {
  "udp": {
    create: (context) => new UdpBackend(context),
    defaultDevice: () => "flannel0",
  },
  "vxlan": {
    create: (context) => new VxlanBackend(context),
    defaultDevice: (config) => `flannel.${config.backend.vni}`,
  },
  "host-gw": {
    create: (context) => new HostGwBackend(context),
    defaultDevice: () => undefined,
  },
  "ipip": {
    create: (context) => new IpipBackend(context),
    defaultDevice: () => "flannel.ipip",
    unavailable: () => ipipUnavailable(),
  },
  "wireguard": {
    // The kernel's module where the host has it, else the agent's userspace path.
    create: (context) => new WireguardBackend(context, { kernel: kernelPath }),
    defaultDevice: () => "flannel-wg",
  },
};

/** Why the config's backend cannot run on this host's kernel, or undefined when it can. */
export function backendUnavailable(config: NetworkConfig): string | undefined {
  return BACKENDS[config.backend.type].unavailable?.();
}

/** The backend the config asks for, on --device or its default device. */
export function createBackend(context: BackendContext): Backend {
  const kind = BACKENDS[context.config.backend.type];
  return kind.create({ ...context, device: context.device ?? kind.defaultDevice(context.config) });
}
