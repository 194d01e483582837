import { Schema } from "effect"
import { EVENT_ID_PATTERN, TOKEN_PATTERN } from "./ids.ts"

/** ULID event id. */
export const EventId = Schema.String.pipe(Schema.check(Schema.isPattern(EVENT_ID_PATTERN)))
/** A subject-safe token: session ids, task ids, service names. */
export const Token = Schema.String.pipe(Schema.check(Schema.isPattern(TOKEN_PATTERN)))
/** Lower-case hex SHA-256. */
export const Sha256Hex = Schema.String.pipe(Schema.check(Schema.isPattern(/^[0-9a-f]{64}$/u)))
/**
 * RFC 3339 UTC timestamp with milliseconds, as `Date.prototype.toISOString` writes it. The pattern alone admits
 * "2024-13-45T99:00:00.000Z" (Date.parse → NaN, which would slip past every time comparison) and "2024-02-30…"
 * (silently read as March 1st), so the string must also round-trip through `Date`.
 */
export const Timestamp = Schema.String.pipe(
  Schema.check(
    Schema.isPattern(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/u),
    Schema.makeFilter(
      (s: string) => {
        const ms = Date.parse(s)
        return Number.isFinite(ms) && new Date(ms).toISOString() === s
      },
      { expected: "a calendar-valid UTC instant" },
    ),
  ),
)
/** W3C traceparent, or empty when the producer was not traced. */
export const TraceParent = Schema.String.pipe(
  Schema.check(Schema.isPattern(/^(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})?$/u)),
)
/** Key id: the first 8 bytes of SHA-256(public key), hex. */
export const KeyId = Schema.String.pipe(Schema.check(Schema.isPattern(/^[0-9a-f]{16}$/u)))
/**
 * Ed25519 signature, base64url without padding (64 bytes → 86 characters). The last character carries 2 bits of
 * the signature and 4 unused bits, which must be zero (A, Q, g or w): otherwise 16 spellings of one signature would
 * all verify, each giving the same signed event a different canonical form, Merkle leaf and event hash.
 */
export const SignatureB64 = Schema.String.pipe(Schema.check(Schema.isPattern(/^[A-Za-z0-9_-]{85}[AQgw]$/u)))
export const NonNegativeInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
/** Bounded free text; the bound keeps one event far below the payload limit. */
export const Text = (max: number) => Schema.String.pipe(Schema.check(Schema.isMaxLength(max)))

/**
 * Content kept out of the event and stored content-addressed in the blob store; the signed event commits to the
 * hash, so content can be purged by retention policy without breaking the Merkle log.
 */
export const BlobRef = Schema.Struct({
  sha256: Sha256Hex,
  size: NonNegativeInt,
  mediaType: Text(128),
  encrypted: Schema.optionalKey(Schema.Boolean),
})
export type BlobRef = typeof BlobRef.Type
