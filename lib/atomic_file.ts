/**
 * Files other programs read while the agent writes them (the subnet file, the state
 * file, the VtepMAC): written to a temp file in the same folder and renamed over the old
 * one, so a reader never sees half a file.
 */

let tempCounter = 0;

/** Writes `text` to `path` through a temp file of its own and a rename. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  await Deno.mkdir(dir, { recursive: true });
  const temp = `${path}.${Deno.pid}.${++tempCounter}.tmp`;
  try {
    await Deno.writeTextFile(temp, text, { mode: 0o644 });
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}
