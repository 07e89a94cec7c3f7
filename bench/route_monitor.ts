/**
 * `ip -ts monitor route` for the scale bench: subscribes to the IPv4 route group of the
 * namespace it runs in and prints one line per route added or deleted in the main table
 * whose destination lies in the prefix given, stamped with the time it was read:
 *   <ms since epoch> + 10.65.3.0/24
 *   <ms since epoch> - 10.65.3.0/24
 * "ready" once subscribed; "overflow" when the kernel dropped events (ENOBUFS), so a
 * reader knows its view is incomplete. Runs until killed.
 *   ip netns exec <ns> deno run -A bench/route_monitor.ts 10.64.0.0/10
 */
import { check, errno, libc } from "../ffi/libc.ts";
import { parseIp4Net } from "../lib/ip.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const RTMGRP_IPV4_ROUTE = 0x40;
const SOL_SOCKET = 1;
const SO_RCVBUFFORCE = 33;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTA_DST = 1;
const RTA_TABLE = 15;
const RT_TABLE_MAIN = 254;
const ENOBUFS = 105;
const EINTR = 4;

const net = parseIp4Net(Deno.args[0]);
if (!net) throw new Error(`usage: route_monitor.ts <ipv4 prefix>, not ${Deno.args[0]}`);
const mask = net.prefixLen === 0 ? 0 : (~0 << (32 - net.prefixLen)) >>> 0;

const c = libc();
const fd = check(c.socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), "socket(AF_NETLINK)");
const size = new Uint8Array(4);
new DataView(size.buffer).setInt32(0, 64 << 20, true);
check(c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4), "setsockopt(SO_RCVBUFFORCE)");
const address = new Uint8Array(12);
const addressView = new DataView(address.buffer);
addressView.setUint16(0, AF_NETLINK, true);
addressView.setUint32(8, RTMGRP_IPV4_ROUTE, true);
check(c.bind(fd, address, address.length), "bind(RTMGRP_IPV4_ROUTE)");
console.log("ready");

const buffer = new Uint8Array(1 << 20);
const view = new DataView(buffer.buffer);
while (true) {
  const n = c.recv(fd, buffer, buffer.length, 0);
  const now = Date.now();
  if (n < 0) {
    const code = errno();
    if (code === ENOBUFS) console.log("overflow");
    else if (code !== EINTR) throw new Error(`netlink recv: errno ${code}`);
    continue;
  }
  const lines: string[] = [];
  let offset = 0;
  while (offset + 16 <= n) {
    const length = view.getUint32(offset, true);
    if (length < 16) break;
    const type = view.getUint16(offset + 4, true);
    if ((type === RTM_NEWROUTE || type === RTM_DELROUTE) && length >= 28) {
      const prefixLen = buffer[offset + 17];
      let table = buffer[offset + 20];
      let dst = 0;
      let attr = offset + 28;
      while (attr + 4 <= offset + length) {
        const attrLength = view.getUint16(attr, true);
        if (attrLength < 4) break;
        const attrType = view.getUint16(attr + 2, true);
        if (attrType === RTA_DST && attrLength >= 8) dst = view.getUint32(attr + 4, false);
        if (attrType === RTA_TABLE && attrLength >= 8) table = view.getUint32(attr + 4, true);
        attr += (attrLength + 3) & ~3;
      }
      if (table === RT_TABLE_MAIN && ((dst & mask) >>> 0) === net.ip && prefixLen > 0) {
        const text = `${dst >>> 24}.${(dst >>> 16) & 255}.${(dst >>> 8) & 255}.${dst & 255}`;
        lines.push(`${now} ${type === RTM_NEWROUTE ? "+" : "-"} ${text}/${prefixLen}`);
      }
    }
    offset += (length + 3) & ~3;
  }
  if (lines.length > 0) console.log(lines.join("\n"));
}
