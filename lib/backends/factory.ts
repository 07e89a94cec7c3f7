/** Chooses the backend for the config's Backend.Type. */
import type { Backend, BackendContext } from "../backend.ts";
import { HostGwBackend } from "./host_gw.ts";
import { UdpBackend } from "./udp.ts";
import { VxlanBackend } from "./vxlan.ts";

export function createBackend(context: BackendContext): Backend {
  switch (context.config.backend.type) {
    case "udp":
      return new UdpBackend(context, { device: context.device });
    case "vxlan":
      return new VxlanBackend(context);
    case "host-gw":
      return new HostGwBackend(context);
  }
}
