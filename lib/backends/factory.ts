/** Chooses the backend for the config's Backend.Type. */
import type { Backend, BackendContext } from "../backend.ts";
import { PeersOnlyBackend } from "./peers_only.ts";
import { UdpBackend } from "./udp.ts";

export function createBackend(context: BackendContext): Backend {
  switch (context.config.backend.type) {
    case "udp":
      return new UdpBackend(context, { device: context.device });
    default:
      return new PeersOnlyBackend(context);
  }
}
