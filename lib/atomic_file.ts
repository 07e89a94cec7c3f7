/**
 * Files other programs read while the agent writes them (the subnet file, the state
 * file, the VtepMAC): written to a temp file in the same folder and renamed over the old
 * one, so a reader never sees half a file, and a crash never leaves an empty one.
 *
 * The folder may be shared with others (/run/flannel): the temp file has a random name
 * and is created exclusively (O_CREAT|O_EXCL, which neither follows nor reuses a link
 * someone planted), and the rename replaces the target name itself, never a file a link
 * there points to. The data is on disk (fsync) before the rename makes it visible.
 */

/** Writes `text` to `path` through a fresh temp file and a rename. */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: { mode?: number } = {},
): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  await Deno.mkdir(dir, { recursive: true });
  const bytes = new TextEncoder().encode(text);
  for (let attempt = 0; attempt < 10; attempt++) {
    const temp = `${path}.${randomSuffix()}.tmp`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(temp, { write: true, createNew: true, mode: options.mode ?? 0o644 });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) continue; // someone's file: another name
      throw error;
    }
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.sync();
      file.close();
      await Deno.rename(temp, path);
      return;
    } catch (error) {
      try {
        file.close();
      } catch { /* already closed */ }
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
  }
  throw new Error(`cannot create a temp file next to ${path} (10 names taken)`);
}

function randomSuffix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
