/** A bound unix datagram socket, for tests that play systemd (sd_notify's receiving end). */
import { check, closeFd, errno, libc, SystemError } from "../ffi/libc.ts";
import { AF_UNIX, sockaddrUn, sockaddrUnLength } from "../ffi/unix_socket.ts";
import { SOCK_DGRAM, SOCK_NONBLOCK } from "../ffi/udp_socket.ts";

export class UnixDatagramListener {
  readonly fd: number;
  constructor(path: string) {
    this.fd = check(
      libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0),
      "socket(AF_UNIX, SOCK_DGRAM)",
    );
    if (libc().bind(this.fd, sockaddrUn(path), sockaddrUnLength(path)) < 0) {
      const code = errno();
      closeFd(this.fd);
      throw new SystemError("bind", code, path);
    }
  }

  /** The next datagram, or undefined when none is waiting. */
  receive(): string | undefined {
    const buffer = new Uint8Array(4096);
    const n = libc().recv(this.fd, buffer, buffer.length, 0);
    return n < 0 ? undefined : new TextDecoder().decode(buffer.subarray(0, n));
  }

  close(): void {
    closeFd(this.fd);
  }
}
