/**
 * WireGuard's protocol constants (whitepaper §6.1, wireguard-go device/constants.go).
 * Times are in milliseconds, as the device's clock.
 */
import { MAX_COUNTER } from "./replay.ts";

/** Start a new handshake once a key has sent this many messages (2^60). */
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/**
 * Never send or accept more messages than this on one key. The protocol's value is
 * 2^64 − 2^13 − 1; numbers count exactly only to 2^53 − 1, so that is the limit used
 * (replay.ts explains why no honest peer reaches it).
 */
export const REJECT_AFTER_MESSAGES = MAX_COUNTER;
/** The initiator of a session starts a new handshake when its key is this old. */
export const REKEY_AFTER_TIME = 120_000;
/** No message is sent or accepted on a key older than this. */
export const REJECT_AFTER_TIME = 180_000;
/** Give up retrying a handshake after this long (as 90 / 5 + 2 attempts). */
export const REKEY_ATTEMPT_TIME = 90_000;
/** Retry an unanswered initiation after this (plus jitter). */
export const REKEY_TIMEOUT = 5_000;
/** Up to this much random delay is added to handshake retries, ms. */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
/** Retries before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Send a keepalive when data arrived but nothing was sent back for this long. */
export const KEEPALIVE_TIMEOUT = 10_000;
/** A device stays "under load" this long after the handshake rate last exceeded its limit. */
export const UNDER_LOAD_AFTER_TIME = 1_000;
/** Packets held per peer while a handshake is under way (wireguard-go's QueueStagedSize). */
export const MAX_STAGED_PACKETS = 128;
