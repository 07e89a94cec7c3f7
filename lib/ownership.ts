/**
 * How the agent tells the kernel entries it made from everyone else's.
 *
 * Every route and neighbour entry the agent writes carries routing protocol number 111
 * (`rtm_protocol` / `NDA_PROTOCOL`), as routing daemons mark theirs (bird 12, zebra 11):
 * `ip route` prints it as `proto 111`, or as `proto overlay` on a host whose
 * `/etc/iproute2/rt_protos.d/overlay.conf` says `111 overlay`. The agent replaces, adopts
 * or deletes only entries that carry the mark (or that it made in this run); an entry
 * someone else made where the agent wants one of its own is left alone and reported as a
 * conflict. FDB entries cannot carry a mark in the kernel: they are owned by living on the
 * agent's own vxlan device.
 */

/** The routing protocol number on every route and neighbour entry the agent makes. */
export const OVERLAY_PROTOCOL = 111;

/**
 * True when a route looks like one flanneld programs for a peer on the underlay (host-gw,
 * vxlan DirectRouting): via a gateway on the underlay device, made with the default
 * protocol (boot). Only consulted while taking over from flanneld (lib/flanneld.ts).
 */
export function isFlanneldRoute(
  route: { linkIndex: number; gateway?: number | bigint; protocol?: number },
  underlayIndex: number,
): boolean {
  return route.linkIndex === underlayIndex && route.gateway !== undefined &&
    route.protocol === RTPROT_BOOT;
}

/** rtm_protocol of routes made without naming one (`ip route add`, flanneld). */
const RTPROT_BOOT = 3;
