/**
 * Unix datagram sockets: one datagram to a socket path, sd_notify's transport.
 * struct sockaddr_un: u16 family, then a 108-byte path (abstract when it starts with NUL).
 */
import { check, closeFd, libc } from "./libc.ts";
import { SOCK_DGRAM } from "./udp_socket.ts";

export const AF_UNIX = 1;
/** struct sockaddr_un: u16 family, then a 108-byte path (abstract when it starts with NUL). */
const SOCKADDR_UN_SIZE = 110;

export function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const address = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  // systemd writes abstract socket names with a leading "@".
  const bytes = new TextEncoder().encode(path.startsWith("@") ? "\0" + path.slice(1) : path);
  if (bytes.length > SOCKADDR_UN_SIZE - 3) throw new Error(`unix socket path too long: ${path}`);
  address.set(bytes, 2);
  return address;
}

export function sockaddrUnLength(path: string): number {
  // Abstract names are not NUL-terminated: the length says where they end.
  return 2 + new TextEncoder().encode(path).length + (path.startsWith("@") ? 0 : 1);
}

/** Sends one datagram to a unix datagram socket (sd_notify's transport). */
export function sendUnixDatagram(path: string, message: string): void {
  const fd = check(libc().socket(AF_UNIX, SOCK_DGRAM, 0), "socket(AF_UNIX, SOCK_DGRAM)");
  try {
    const bytes = new TextEncoder().encode(message);
    check(
      libc().sendto(fd, bytes, bytes.length, 0, sockaddrUn(path), sockaddrUnLength(path)),
      "sendto",
      path,
    );
  } finally {
    closeFd(fd);
  }
}
