/**
 * The generic netlink wire codec: the genlmsghdr, the controller's family lookup, and
 * the parsing of its answer. No socket here: ffi/genetlink.ts sends what this builds.
 *
 * A generic netlink message is an ordinary netlink message whose type is the family's id
 * (assigned by the kernel when the family registers, looked up by name through the
 * controller, itself the fixed family GENL_ID_CTRL) and whose fixed header is:
 *   genlmsghdr  4 B: u8 cmd, u8 version, u16 reserved (0)
 * followed by the family's attributes (rtattr layout, as in ffi/netlink_codec.ts).
 *
 * Constants from linux/netlink.h and linux/genetlink.h (checked against this machine's
 * /usr/include/linux/genetlink.h).
 */
import {
  type Message,
  NLM_F_ACK,
  NLM_F_REQUEST,
  parseAttrs,
  type Request,
  stringAttr,
} from "./netlink_codec.ts";

export const NETLINK_GENERIC = 16;
/** The controller's family id: NLMSG_MIN_TYPE (0x10). */
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_NEWFAMILY = 1;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const CTRL_ATTR_VERSION = 3;
/** The controller's own version, as wireguard-tools and libnl send it. */
export const CTRL_VERSION = 1;
/** The length of the genlmsghdr: attributes start at this offset of a message body. */
export const GENL_HDRLEN = 4;

/** The 4 bytes of a genlmsghdr: command, family version, reserved. */
export function genlmsghdr(cmd: number, version: number): Uint8Array {
  return new Uint8Array([cmd, version, 0, 0]);
}

/** The controller request that resolves a family's id by its name ("wireguard"). */
export function familyRequest(name: string): Request {
  return {
    type: GENL_ID_CTRL,
    flags: NLM_F_REQUEST | NLM_F_ACK,
    header: genlmsghdr(CTRL_CMD_GETFAMILY, CTRL_VERSION),
    attrs: [stringAttr(CTRL_ATTR_FAMILY_NAME, name)],
  };
}

/** The family id in the controller's CTRL_CMD_NEWFAMILY answer; undefined when absent. */
export function parseFamilyId(message: Message): number | undefined {
  if (message.type !== GENL_ID_CTRL || message.body.byteLength < GENL_HDRLEN) return undefined;
  const id = parseAttrs(message.body, GENL_HDRLEN).get(CTRL_ATTR_FAMILY_ID);
  return id && id.byteLength >= 2 ? id.getUint16(0, true) : undefined;
}

/** The command of a generic netlink message (the genlmsghdr's first byte). */
export function genlCommand(message: Message): number {
  return message.body.byteLength >= GENL_HDRLEN ? message.body.getUint8(0) : -1;
}
