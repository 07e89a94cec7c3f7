/**
 * IP forwarding (`net.ipv4.ip_forward`, and `net.ipv6.conf.all.forwarding` in a network
 * with IPv6). Containers on a host's bridge reach other hosts only through the host's
 * forwarding, which is off on a fresh host (and in a fresh network namespace) unless
 * Docker or LXC's own bridge service turned it on. `overlay run` turns it on for each
 * family the network has, as they do, and leaves it on when it stops or cleans up; the
 * health path reads it each time, so a host where someone turned it off says so.
 *
 * IPv6 forwarding has a side effect IPv4's lacks: interfaces whose accept_ra is 1 stop
 * taking router advertisements, so a host that learns its IPv6 default route by SLAAC
 * keeps it only with accept_ra=2 on that interface (Docker's --ipv6 has the same rule).
 */
import { OverlayError } from "./errors.ts";

export type IpFamily = "ipv4" | "ipv6";

const SYSCTLS: Record<IpFamily, { path: string; name: string }> = {
  ipv4: { path: "/proc/sys/net/ipv4/ip_forward", name: "net.ipv4.ip_forward" },
  ipv6: {
    path: "/proc/sys/net/ipv6/conf/all/forwarding",
    name: "net.ipv6.conf.all.forwarding",
  },
};

/** The health reason when forwarding is off. */
export const FORWARDING_OFF = "ip-forwarding-disabled";

/** The sysctl that turns a family's forwarding on, e.g. "net.ipv4.ip_forward". */
export function forwardingSysctl(family: IpFamily): string {
  return SYSCTLS[family].name;
}

/** True when this network namespace forwards the family. */
export function forwardingEnabled(family: IpFamily): boolean {
  try {
    return Deno.readTextFileSync(SYSCTLS[family].path).trim() === "1";
  } catch {
    return false;
  }
}

/** The first of `families` whose forwarding is off, or undefined when all forward. */
export function forwardingOff(families: readonly IpFamily[]): IpFamily | undefined {
  return families.find((family) => !forwardingEnabled(family));
}

/**
 * Turns forwarding on (CAP_NET_ADMIN may write a namespace's net sysctls). Returns true
 * when it was off. Throws OverlayError naming the fix when it cannot (a read-only
 * /proc/sys, no capability).
 */
export function enableForwarding(family: IpFamily): boolean {
  if (forwardingEnabled(family)) return false;
  const { path, name } = SYSCTLS[family];
  try {
    Deno.writeTextFileSync(path, "1\n");
  } catch (error) {
    throw new OverlayError(
      `cannot turn on ${family === "ipv4" ? "IPv4" : "IPv6"} forwarding (${path}: ${
        (error as Error).message
      }); give overlay CAP_NET_ADMIN, or turn it on with: sysctl -w ${name}=1`,
    );
  }
  return true;
}
