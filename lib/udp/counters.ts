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
  "drop_malformed", // not exactly one valid IPv4 packet
  "drop_oversized", // larger than the buffer it was read into (a device MTU raised past it)
  "drop_not_ipv4", // non-IPv4 packet read from the TUN (the overlay carries IPv4 only)
  "drop_not_for_us", // inner destination outside our subnet
  "drop_no_route", // TUN packet for an overlay address no peer owns (ICMP sent)
  "drop_ttl_expired",
  "drop_queue_full", // socket or TUN would block
  "send_errors",
  "icmp_unreachable_sent",
] as const;

export type CounterName = typeof COUNTERS[number];

export const COUNTER_INDEX = Object.fromEntries(COUNTERS.map((name, i) => [name, i])) as Record<
  CounterName,
  number
>;

export function createCounterBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(COUNTERS.length * 8);
}

/** A snapshot of the counters as a plain object. */
export function readCounters(buffer: SharedArrayBuffer): Record<CounterName, number> {
  const values = new Float64Array(buffer);
  return Object.fromEntries(COUNTERS.map((name, i) => [name, values[i]])) as Record<
    CounterName,
    number
  >;
}
