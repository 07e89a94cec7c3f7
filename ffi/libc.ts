/**
 * libc through Deno FFI: the only place that opens libc. Thin, typed, synchronous
 * calls; lengths are u32/i32 and buffers are "buffer" arguments so V8's fast call path
 * applies. None is nonblocking (a thread-pool round trip per call): the data path
 * blocks in poll() on a Worker of its own instead.
 *
 * Each thread (the main thread, a data-path Worker) opens its own handle: errno is
 * per thread and is read through __errno_location() on the thread that made the call.
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** open with O_CREAT, which takes the new file's mode as a third argument. */
  open_create: { name: "open", parameters: ["buffer", "i32", "u32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** read/write into preallocated memory by pointer: no view allocated per packet. */
  read_ptr: { name: "read", parameters: ["i32", "pointer", "u32"], result: "i32" },
  write_ptr: { name: "write", parameters: ["i32", "pointer", "u32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** ioctl whose argument is a value, not a pointer (TUNSETOFFLOAD). */
  ioctl_value: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "u32"], result: "i32" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  sendmmsg_ptr: { name: "sendmmsg", parameters: ["i32", "pointer", "u32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sched_yield: { parameters: [], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let handle: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** This thread's libc. */
export function libc(): Libc {
  handle ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return handle.symbols;
}

let errnoView: Deno.UnsafePointerView | undefined;

/** errno of the last failed call on this thread (its location is fixed per thread). */
export function errno(): number {
  if (!errnoView) {
    const pointer = libc().__errno_location();
    if (!pointer) return 0;
    errnoView = new Deno.UnsafePointerView(pointer);
  }
  return errnoView.getInt32();
}

export const EAGAIN = 11;
export const EINTR = 4;
export const EBUSY = 16;
export const EINVAL = 22;
export const EEXIST = 17;
export const ENOENT = 2;
export const ESRCH = 3;
export const ENODEV = 19;
export const EPERM = 1;
export const EADDRNOTAVAIL = 99;
export const EOPNOTSUPP = 95;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  90: "EMSGSIZE",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

/** "EBUSY (Device or resource busy)" */
export function describeErrno(code: number): string {
  const pointer = libc().strerror(code);
  const text = pointer ? new Deno.UnsafePointerView(pointer).getCString() : `errno ${code}`;
  return `${ERRNO_NAMES[code] ?? `errno ${code}`} (${text})`;
}

/** A failed libc call: names the call, the subject and errno. */
export class SystemError extends Error {
  readonly errno: number;
  constructor(call: string, code: number, subject?: string) {
    super(`${call}${subject ? ` ${subject}` : ""}: ${describeErrno(code)}`);
    this.name = "SystemError";
    this.errno = code;
  }
}

/** Throws SystemError when a call returned a negative value. */
export function check(result: number, call: string, subject?: string): number {
  if (result < 0) throw new SystemError(call, errno(), subject);
  return result;
}

/** NUL-terminated bytes of a string, for path and name arguments. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(text.length * 3 + 1);
  const { written } = new TextEncoder().encodeInto(text, bytes);
  return bytes.slice(0, written + 1);
}

export const O_RDWR = 2;
export const O_NONBLOCK = 0x800;
export const F_GETFL = 3;
export const F_SETFL = 4;

/** Sets O_NONBLOCK on a descriptor. */
export function setNonBlocking(fd: number): void {
  const flags = check(libc().fcntl(fd, F_GETFL, 0), "fcntl(F_GETFL)");
  check(libc().fcntl(fd, F_SETFL, flags | O_NONBLOCK), "fcntl(F_SETFL)");
}

export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

/** The interface index of a device, or 0 when there is none. */
export function interfaceIndex(name: string): number {
  return libc().if_nametoindex(cString(name));
}

/** The name of interface `index`, or undefined when there is none. */
export function interfaceName(index: number): string | undefined {
  const name = new Uint8Array(16);
  if (libc().if_indextoname(index, name) === null) return undefined;
  const end = name.indexOf(0);
  return new TextDecoder().decode(name.subarray(0, end < 0 ? name.length : end));
}
