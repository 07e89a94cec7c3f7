/**
 * A backend that follows peers but programs no data path: what `overlay run` does for
 * a backend type whose data path is not built yet. Health says so ("control-plane only").
 */
import { type Backend, type BackendContext, deviceMtu } from "../backend.ts";
import type { BackendType } from "../config.ts";
import type { Lease } from "../lease.ts";

export class PeersOnlyBackend implements Backend {
  readonly type: BackendType;
  readonly mtu: number;
  readonly dataPath = "control-plane only";

  constructor(context: BackendContext) {
    this.type = context.config.backend.type;
    this.mtu = deviceMtu(context.config.backend, context.underlay.mtu);
  }

  start(_own: Lease): Promise<void> {
    return Promise.resolve();
  }

  addPeer(_peer: Lease): void {}

  removePeer(_peer: Lease): void {}

  stop(): Promise<void> {
    return Promise.resolve();
  }
}
