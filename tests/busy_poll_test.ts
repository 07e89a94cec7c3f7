import assert from "node:assert/strict";
import { BULK_BURST_BYTES, BusyPoll, busyPollWindowMs } from "../lib/udp/busy_poll.ts";

Deno.test("after a ping the data path spins for the window; after bulk traffic it sleeps at once", () => {
  const poll = new BusyPoll(1);
  assert.equal(poll.spinning(0), false, "an idle agent sleeps");
  poll.burst(84, 10); // one ping request
  assert.equal(poll.spinning(10.5), true);
  assert.equal(poll.spinning(11), false, "the window closes");
  poll.burst(BULK_BURST_BYTES, 20); // a TSO super-packet
  assert.equal(poll.spinning(20), false);
  poll.burst(52, 21); // an ACK alone: sparse again
  assert.equal(poll.spinning(21.5), true);
  const never = new BusyPoll(0);
  never.burst(84, 5);
  assert.equal(never.spinning(5), false, "window 0 turns spinning off");
});

Deno.test("OVERLAY_BUSY_POLL_MS sets the window; junk keeps the default", () => {
  const before = Deno.env.get("OVERLAY_BUSY_POLL_MS");
  try {
    Deno.env.set("OVERLAY_BUSY_POLL_MS", "0");
    assert.equal(busyPollWindowMs(), 0);
    Deno.env.set("OVERLAY_BUSY_POLL_MS", "2.5");
    assert.equal(busyPollWindowMs(), 2.5);
    for (const junk of ["-1", "soon", ""]) {
      Deno.env.set("OVERLAY_BUSY_POLL_MS", junk);
      assert.equal(busyPollWindowMs(), 1, junk);
    }
  } finally {
    if (before === undefined) Deno.env.delete("OVERLAY_BUSY_POLL_MS");
    else Deno.env.set("OVERLAY_BUSY_POLL_MS", before);
  }
});
