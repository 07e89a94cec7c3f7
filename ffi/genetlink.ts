/**
 * Generic netlink over a NETLINK_GENERIC socket: resolve a family by name, send a
 * family's requests and read their acknowledgements, dump. The socket, sequence numbers
 * and acknowledgement reading are ffi/netlink.ts's Netlink (opened on NETLINK_GENERIC);
 * the bytes are built by ffi/genetlink_codec.ts.
 */
import { ENOENT, SystemError } from "./libc.ts";
import { familyRequest, NETLINK_GENERIC, parseFamilyId } from "./genetlink_codec.ts";
import { Netlink } from "./netlink.ts";
import type { Message, Request } from "./netlink_codec.ts";

/** A NETLINK_GENERIC socket. Not thread-safe; synchronous like Netlink. */
export class GenericNetlink {
  readonly #netlink = new Netlink(NETLINK_GENERIC);

  close(): void {
    this.#netlink.close();
  }

  /**
   * The id of family `name` (`genl ctrl get name NAME`), or undefined when the kernel has
   * no such family. Asking loads the family's module when it is installed but not loaded
   * (the kernel requests `net-pf-16-proto-16-family-NAME`), and creates nothing.
   */
  familyId(name: string): number | undefined {
    try {
      return parseFamilyId(this.#netlink.query(familyRequest(name), `genl family ${name}`));
    } catch (error) {
      if (error instanceof SystemError && error.errno === ENOENT) return undefined;
      throw error;
    }
  }

  /**
   * Sends a request of a family (type = the family's id, header = its genlmsghdr; as
   * ffi/wireguard_codec.ts builds them) and waits for its acknowledgement. Throws
   * SystemError with `what` when the kernel refuses it.
   */
  request(request: Request, what: string): void {
    this.#netlink.request(request, what);
  }

  /**
   * Sends a request as a dump and returns every reply (each body starts with its
   * genlmsghdr; attributes at GENL_HDRLEN). Throws SystemError on failure.
   */
  dump(request: Request): Message[] {
    return this.#netlink.dump(request.type, request.header, request.attrs);
  }
}
