import { createHash } from "node:crypto"
import { type Ed25519, fastEd25519 } from "@vigil/crypto"
import { Schema } from "effect"
import { canonicalBytes, contextBytes } from "./canonical.ts"
import { CATALOG, type EventData, type EventType, isEventType, PRINCIPALS, type Principal } from "./catalog.ts"
import { newEventId } from "./ids.ts"
import { BlobRef, EventId, KeyId, SignatureB64, Timestamp, Token, TraceParent } from "./primitives.ts"

export const ENVELOPE_VERSION = 1

/** Every field but `sig` is signed. `data` is checked against the catalog schema of `type`. */
export const Envelope = Schema.Struct({
  v: Schema.Literal(ENVELOPE_VERSION),
  id: EventId,
  type: Schema.Literals(Object.keys(CATALOG) as [EventType, ...EventType[]]),
  time: Timestamp,
  source: Schema.Literals(PRINCIPALS),
  session: Token,
  causation: Schema.NullOr(EventId),
  correlation: Token,
  trace: TraceParent,
  data: Schema.Unknown,
  blobs: Schema.optionalKey(Schema.Record(Token, BlobRef)),
  kid: KeyId,
  sig: SignatureB64,
})
export type Envelope = typeof Envelope.Type

/** A signed event whose `data` has the catalog type of `T`. */
export type Event<T extends EventType = EventType> = T extends EventType
  ? Omit<Envelope, "type" | "data"> & { readonly type: T; readonly data: EventData<T> }
  : never

/** The exact bytes an event signature covers: "vigil/event/v1\n", then the canonical envelope without `sig`. */
export const signingBytes = (unsigned: object): Uint8Array => contextBytes("vigil/event/v1", unsigned)

export interface SigningKey {
  readonly principal: Principal
  readonly kid: string
  readonly seed: Uint8Array
  readonly publicKey: Uint8Array
}

export interface Draft<T extends EventType> {
  readonly type: T
  readonly session: string
  readonly data: EventData<T>
  readonly correlation?: string
  readonly causation?: string | null
  readonly trace?: string
  readonly blobs?: Readonly<Record<string, BlobRef>>
  readonly id?: string
  readonly time?: string
}

/** Fill in the envelope and sign it. `ed` defaults to the fast path (libsodium). */
export const signEvent = <T extends EventType>(key: SigningKey, draft: Draft<T>, ed: Ed25519 = fastEd25519): Event<T> =>
  signEventEncoded(key, draft, ed).event

const TIME_SHAPE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/u
const TRACE_SHAPE = /^(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})?$/u

/**
 * {@link signEvent}, also returning the event's canonical bytes (what a publisher sends), computed from the bytes
 * just signed instead of canonicalising the event a second time. Falls back to {@link encodeEvent} when the draft's
 * `time` or `trace` is not in its schema's shape, where the splice's premise would not hold.
 */
export const signEventEncoded = <T extends EventType>(
  key: SigningKey,
  draft: Draft<T>,
  ed: Ed25519 = fastEd25519,
): { readonly event: Event<T>; readonly bytes: Uint8Array } => {
  const unsigned = {
    v: ENVELOPE_VERSION,
    id: draft.id ?? newEventId(),
    type: draft.type,
    time: draft.time ?? new Date().toISOString(),
    source: key.principal,
    session: draft.session,
    causation: draft.causation ?? null,
    correlation: draft.correlation ?? draft.session,
    trace: draft.trace ?? "",
    data: draft.data,
    ...(draft.blobs === undefined ? {} : { blobs: draft.blobs }),
    kid: key.kid,
  }
  const signed = signingBytes(unsigned)
  const sig = Buffer.from(ed.sign(signed, key.seed)).toString("base64url")
  const event = { ...unsigned, sig } as unknown as Event<T>
  const bytes =
    TIME_SHAPE.test(unsigned.time) && TRACE_SHAPE.test(unsigned.trace)
      ? canonicalFromSigning(signed, sig)
      : encodeEvent(event)
  return { event, bytes }
}

/** Follow-up event: same session and correlation, causation = the event it answers. */
export const followUp = <T extends EventType>(
  cause: Pick<Envelope, "id" | "session" | "correlation" | "trace">,
  draft: Omit<Draft<T>, "session" | "correlation" | "causation">,
): Draft<T> => ({
  trace: cause.trace,
  ...draft,
  session: cause.session,
  correlation: cause.correlation,
  causation: cause.id,
})

const SIGNING_PREFIX_BYTES = Buffer.byteLength("vigil/event/v1\n")
const SOURCE_MEMBER = Buffer.from(',"source":"')

/**
 * {@link encodeEvent} of a verified event, from the bytes its signature covers: the canonical envelope without
 * `sig` plus the `sig` member, spliced in where RFC 8785's key order puts it (right before `source`: "session" <
 * "sig" < "source"), instead of canonicalising the whole event a second time. The last `,"source":"` is the
 * top-level member: after it come only `time`, `trace`, `type` and `v`, whose schemas admit no such text.
 * For events that passed the envelope schema only.
 */
export const canonicalFromSigning = (signed: Uint8Array, sig: string): Uint8Array => {
  const body = Buffer.from(
    signed.buffer,
    signed.byteOffset + SIGNING_PREFIX_BYTES,
    signed.length - SIGNING_PREFIX_BYTES,
  )
  const at = body.lastIndexOf(SOURCE_MEMBER)
  if (at < 0) throw new TypeError("signing bytes without a top-level source member")
  // A view over the pooled Buffer: copying it into a fresh ArrayBuffer cost more than the splice.
  const out = Buffer.concat([body.subarray(0, at), Buffer.from(`,"sig":"${sig}"`), body.subarray(at)])
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/** The wire and Merkle-leaf form of a signed event: its RFC 8785 canonical bytes. */
export const encodeEvent = (event: Envelope | Event): Uint8Array => canonicalBytes(event)

/** SHA-256 (hex) of an event's canonical bytes; decisions bind to intents through it. */
export const eventHash = (event: Envelope | Event): string =>
  createHash("sha256").update(encodeEvent(event)).digest("hex")

export { isEventType }
