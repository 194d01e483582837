import { createHmac } from "node:crypto"
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

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

/**
 * A producer's key for {@link derivedEventId}: HMAC-SHA256 of a fixed label under its Ed25519 seed, so only the
 * holder of the signing key can compute its derived ids (NATS-NOTES trap 10: an id another principal can predict
 * can be claimed first), and no id reveals anything about the seed.
 */
export const eventIdKey = (seed: Uint8Array): Uint8Array =>
  new Uint8Array(createHmac("sha256", seed).update("vigil/event-id/v1").digest())

/**
 * The id of the `index`-th event a producer emits for `purpose` in response to `causeId`. Handling the same input
 * again (a redelivery after a crash before the ack) yields the same `Nats-Msg-Id`, so JetStream stores the output
 * once; without the producer's `idKey` the id cannot be computed in advance. The time part is the cause's, so ids
 * stay sortable; the other 80 bits are the HMAC's.
 */
export const derivedEventId = (idKey: Uint8Array, causeId: string, purpose: string, index = 0): string =>
  eventIdFromDigest(causeId, createHmac("sha256", idKey).update(`${purpose}\n${causeId}\n${index}`).digest())

/** An event id with the time part of `causeId` and 80 bits of `digest` (16 Crockford base32 characters). */
export const eventIdFromDigest = (causeId: string, digest: Uint8Array): string => {
  let rand = ""
  let bits = 0
  let acc = 0
  for (let i = 0; rand.length < 16; i++) {
    acc = (acc << 8) | (digest[i] as number)
    bits += 8
    while (bits >= 5 && rand.length < 16) {
      rand += CROCKFORD[(acc >>> (bits - 5)) & 31]
      bits -= 5
    }
    acc &= (1 << bits) - 1
  }
  return causeId.slice(0, 10) + rand
}
