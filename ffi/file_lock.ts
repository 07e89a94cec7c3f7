/**
 * An exclusive flock(2) on a file, tried without waiting. The kernel drops it when the
 * process exits however it exits (SIGKILL too), so a crashed holder never leaves it
 * stuck, and a second process asking for it is told at once.
 */
import { check, closeFd, cString, EAGAIN, errno, libc, O_RDWR, SystemError } from "./libc.ts";

const O_CREAT = 0o100;
const O_CLOEXEC = 0o2000000;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

export class FileLock {
  readonly path: string;
  #fd: number;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  /** The lock on `path` (made if missing, mode 0644); undefined while another holds it. */
  static tryAcquire(path: string): FileLock | undefined {
    const fd = check(
      libc().open_create(cString(path), O_RDWR | O_CREAT | O_CLOEXEC, 0o644),
      "open",
      path,
    );
    if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return new FileLock(path, fd);
    const code = errno();
    closeFd(fd);
    if (code === EAGAIN) return undefined;
    throw new SystemError("flock", code, path);
  }

  release(): void {
    if (this.#fd < 0) return;
    libc().flock(this.#fd, LOCK_UN);
    closeFd(this.#fd);
    this.#fd = -1;
  }
}
