import { monotonicFactory } from "ulid"

/** A ULID: 26 Crockford base32 characters, lexicographically sortable by creation time. */
export const EVENT_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/u

// Monotonic so that ids minted in the same millisecond still sort in creation order.
const next = monotonicFactory()

/** A new sortable unique event id (ULID); also the message's `Nats-Msg-Id`, so JetStream de-duplicates retries. */
export const newEventId = (now: number = Date.now()): string => next(now)

/** Milliseconds since the epoch encoded in the first 10 characters of a ULID. */
export const eventIdTime = (id: string): number => {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
  let ms = 0
  for (const ch of id.slice(0, 10)) ms = ms * 32 + alphabet.indexOf(ch)
  return ms
}

/** Session and task ids are subject tokens, so they may not contain NATS wildcards, dots or spaces. */
export const TOKEN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/u
