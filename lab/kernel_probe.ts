/**
 * What this machine's kernel can make, asked in a throwaway namespace (so the host's own
 * namespace never sees a probe device), for tests and benchmarks that need a device kind
 * the kernel may lack. The namespace has a per-run random name and is deleted in finally.
 */
import { runCommand } from "./run.ts";

/**
 * Why this kernel cannot make an ipip device, or undefined when it can: `ip link add
 * probe0 type ipip local 192.0.2.1` in a new namespace (a local address, so the device
 * does not clash with the kernel's own tunl0 there, which has none).
 */
export async function ipipMissing(): Promise<string | undefined> {
  const ns = `ii-probe-${crypto.randomUUID().slice(0, 8)}`;
  const added = await runCommand(["ip", "netns", "add", ns]);
  if (added.code !== 0) return `cannot make a network namespace: ${added.stderr.trim()}`;
  try {
    const result = await runCommand(
      ["ip", "-n", ns, "link", "add", "probe0", "type", "ipip", "local", "192.0.2.1"],
    );
    if (result.code === 0) return undefined;
    return `kernel has no ipip (ip link add … type ipip: ${result.stderr.trim()})`;
  } finally {
    await runCommand(["ip", "netns", "delete", ns]);
  }
}
