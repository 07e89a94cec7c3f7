/**
 * Data-path counters, shared between the data-path Worker (which writes them) and the
 * agent (which reads them) through a SharedArrayBuffer: one float64 slot per counter.
 */

export const COUNTERS = [
  "tx_packets", // TUN → peer
  "tx_bytes",
  "rx_packets", // peer → TUN: accepted from peers (a full TUN queue then counts a drop too)
  "rx_bytes",
  "drop_unknown_peer", // datagram from an address that holds no lease
  "drop_spoofed_source", // inner source outside the sender's leased subnet
  "drop_malformed", // not exactly one valid IPv4 packet (or IPv6 in an IPv4-only network)
  "drop_oversized", // larger than the buffer it was read into (a device MTU raised past it)
  "drop_not_ipv4", // TUN packet neither IPv4 nor (in a dual-stack network) IPv6
  "drop_not_for_us", // inner destination outside our subnet
  "drop_no_route", // TUN packet for an overlay address no peer owns (ICMP sent)
  "drop_ttl_expired",
  "drop_queue_full", // socket or TUN would block
  // IPv6 inner packets (dual-stack networks), the same reasons for the IPv6 subnets:
  "drop_spoofed_source_v6", // inner IPv6 source outside the sender's IPv6 subnet
  "drop_malformed_v6", // not exactly one valid IPv6 packet (header cut short, bad length)
  "drop_not_for_us_v6", // inner IPv6 destination outside our IPv6 subnet
  "drop_no_route_v6", // TUN packet for an IPv6 overlay address no peer owns (ICMPv6 sent)
  "drop_hop_limit_expired",
  "send_errors",
  "icmp_unreachable_sent", // ICMP net-unreachable and ICMPv6 no-route written into the TUN
  "icmp_rate_limited", // such replies not sent: more than 1,000/s (burst 50)
] as const;

export type CounterName = typeof COUNTERS[number];

export const COUNTER_INDEX = Object.fromEntries(COUNTERS.map((name, i) => [name, i])) as Record<
  CounterName,
  number
>;

export function createCounterBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(COUNTERS.length * 8);
}

/**
 * A snapshot of the counters as a plain object: with several buffers (one per data-path
 * Worker, each written by its Worker alone), their sums.
 */
export function readCounters(
  buffers: SharedArrayBuffer | readonly SharedArrayBuffer[],
): Record<CounterName, number> {
  const views = (Array.isArray(buffers) ? buffers : [buffers]).map((b) => new Float64Array(b));
  return Object.fromEntries(
    COUNTERS.map((name, i) => [name, views.reduce((sum, values) => sum + values[i], 0)]),
  ) as Record<CounterName, number>;
}
