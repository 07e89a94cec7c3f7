/**
 * IPv4 forwarding (`net.ipv4.ip_forward`). Containers on a host's bridge reach other
 * hosts only through the host's forwarding, which is off on a fresh host (and in a fresh
 * network namespace) unless Docker or LXC's own bridge service turned it on. `overlay run`
 * turns it on, as they do, and leaves it on when it stops or cleans up; the health path
 * reads it each time, so a host where someone turned it off says so.
 */
import { OverlayError } from "./errors.ts";

const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";

/** The health reason when forwarding is off. */
export const FORWARDING_OFF = "ip-forwarding-disabled";

/** True when this network namespace forwards IPv4. */
export function ipv4ForwardingEnabled(): boolean {
  try {
    return Deno.readTextFileSync(IP_FORWARD).trim() === "1";
  } catch {
    return false;
  }
}

/**
 * Turns IPv4 forwarding on (CAP_NET_ADMIN may write a namespace's net sysctls). Returns
 * true when it was off. Throws OverlayError naming the fix when it cannot (a read-only
 * /proc/sys, no capability).
 */
export function enableIpv4Forwarding(): boolean {
  if (ipv4ForwardingEnabled()) return false;
  try {
    Deno.writeTextFileSync(IP_FORWARD, "1\n");
  } catch (error) {
    throw new OverlayError(
      `cannot turn on IPv4 forwarding (${IP_FORWARD}: ${(error as Error).message}); ` +
        `give overlay CAP_NET_ADMIN, or turn it on with: sysctl -w net.ipv4.ip_forward=1`,
    );
  }
  return true;
}
