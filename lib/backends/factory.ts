/** Chooses the backend for the config's Backend.Type. */
import type { Backend, BackendContext } from "../backend.ts";
import { PeersOnlyBackend } from "./peers_only.ts";

export function createBackend(context: BackendContext): Backend {
  switch (context.config.backend.type) {
    default:
      return new PeersOnlyBackend(context);
  }
}
