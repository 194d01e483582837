import { createHash, createHmac } from "node:crypto"
import { headers as natsHeaders } from "@nats-io/transport-node"
import { fastEd25519 } from "@vigil/crypto"
import {
  canonicalJson,
  contextBytes,
  dlqSubject,
  eventIdKey,
  HEADER_DLQ_REASON,
  KeyId,
  type KeyResolver,
  REJECTION_REASONS,
  type RejectionReason,
  Sha256Hex,
  SignatureB64,
  type SigningKey,
  Timestamp,
  type TrustedKey,
} from "@vigil/events"
import { Context, Effect, Layer, Schema } from "effect"
import { Nats } from "./connection.ts"
import { PublishError } from "./errors.ts"
import { deadLettered } from "./metrics.ts"
import { Signer } from "./trust.ts"

export type DeadLetterReason = RejectionReason | "handler_failed"

/** Version of the record format: 2 is signed (`kid`, `sig`); version 1 records were not. */
export const DEAD_LETTER_VERSION = 2

/**
 * What `vigil.dlq.<service>` carries: enough to find, explain and re-drive the refused message, signed by the
 * refusing service (see {@link verifyDeadLetter}), so a real refusal can be told from anything else posted there.
 */
export interface DeadLetter {
  readonly v: typeof DEAD_LETTER_VERSION
  readonly service: string
  readonly reason: DeadLetterReason
  readonly detail: string
  readonly subject: string
  readonly stream: string
  readonly durable: string
  readonly streamSeq: number
  readonly deliveryCount: number
  readonly storedAt: string
  readonly deadLetteredAt: string
  readonly eventId?: string
  readonly type?: string
  readonly payloadBytes: number
  /** SHA-256 (hex) of the whole refused message, also when `payload` is cut. */
  readonly payloadSha256: string
  /** The refused bytes, base64, cut at {@link MAX_DLQ_PAYLOAD} (an oversized payload must not be re-posted whole). */
  readonly payload: string
  readonly payloadTruncated: boolean
  /** Key id of the refusing service's signing key. */
  readonly kid: string
  /** Ed25519 over {@link deadLetterSigningBytes} of every other member, base64url. */
  readonly sig: string
}

/** A record before the refusing service signs it ({@link DeadLetters} does, on send). */
export type UnsignedDeadLetter = Omit<DeadLetter, "kid" | "sig">

export const MAX_DLQ_PAYLOAD = 64 * 1024

/** Domain separation for dead-letter signatures: never valid as an event's, a manifest's or a checkpoint's. */
export const DEAD_LETTER_CONTEXT = "vigil/dead-letter/v1"

/** The bytes a dead letter's signature covers: the context line, then the canonical record without `sig`. */
export const deadLetterSigningBytes = (unsigned: object): Uint8Array => contextBytes(DEAD_LETTER_CONTEXT, unsigned)

export const deadLetterRecord = (
  fields: Omit<
    UnsignedDeadLetter,
    "v" | "payload" | "payloadBytes" | "payloadSha256" | "payloadTruncated" | "deadLetteredAt"
  >,
  payload: Uint8Array,
): UnsignedDeadLetter => {
  // A detail or id cut at a length limit can end in half a surrogate pair, which RFC 8785 (so signing) refuses.
  const { eventId, type } = fields
  return {
    v: DEAD_LETTER_VERSION,
    ...fields,
    detail: fields.detail.toWellFormed(),
    subject: fields.subject.toWellFormed(),
    ...(eventId === undefined ? {} : { eventId: eventId.toWellFormed() }),
    ...(type === undefined ? {} : { type: type.toWellFormed() }),
    deadLetteredAt: new Date().toISOString(),
    payloadBytes: payload.length,
    payloadSha256: createHash("sha256").update(payload).digest("hex"),
    payload: Buffer.from(payload.subarray(0, MAX_DLQ_PAYLOAD)).toString("base64"),
    payloadTruncated: payload.length > MAX_DLQ_PAYLOAD,
  }
}

/**
 * One DLQ entry per refused stream message, even if the refusal itself is retried or redelivered. Keyed by the
 * refusing service's id key ({@link eventIdKey}): the stream de-duplicates across every service's DLQ subject, so
 * an id another service could compute could be stored first by it (NATS-NOTES trap 10).
 */
export const deadLetterMsgId = (
  idKey: Uint8Array,
  record: Pick<UnsignedDeadLetter, "stream" | "durable" | "streamSeq">,
): string => {
  const mac = createHmac("sha256", idKey).update(
    `dead-letter\n${record.stream}\n${record.durable}\n${record.streamSeq}`,
  )
  return `dlq:${mac.digest("hex").slice(0, 32)}`
}

/** Sign a record with the refusing service's key (`kid` is set to the key's). */
export const signDeadLetter = (key: SigningKey, record: UnsignedDeadLetter): DeadLetter => {
  const { kid: _kid, sig: _sig, ...rest } = record as UnsignedDeadLetter & { kid?: unknown; sig?: unknown }
  const unsigned = { ...rest, kid: key.kid }
  const sig = Buffer.from(fastEd25519.sign(deadLetterSigningBytes(unsigned), key.seed)).toString("base64url")
  return { ...unsigned, sig }
}

export class DeadLetters extends Context.Service<
  DeadLetters,
  {
    /** Sign `record` with this service's key and store it on `vigil.dlq.<user>`; the signed record is returned. */
    readonly send: (record: UnsignedDeadLetter) => Effect.Effect<DeadLetter, PublishError>
  }
>()("@vigil/bus/DeadLetters") {
  static readonly layer = Layer.effect(
    DeadLetters,
    Effect.gen(function* () {
      const { js, user } = yield* Nats
      const { key } = yield* Signer
      const subject = dlqSubject(user)
      const idKey = eventIdKey(key.seed)
      return DeadLetters.of({
        send: (unsigned) =>
          Effect.suspend(() => {
            const record = signDeadLetter(key, unsigned)
            const body = canonicalJson(record)
            const h = natsHeaders()
            h.set(HEADER_DLQ_REASON, record.reason)
            const msgID = deadLetterMsgId(idKey, record)
            return Effect.tryPromise({
              try: () => js.publish(subject, body, { msgID, headers: h }),
              catch: (cause) => new PublishError({ subject, eventId: record.eventId ?? "", refused: false, cause }),
            }).pipe(Effect.retry({ times: 5 }), Effect.tap(deadLettered(record.reason)), Effect.as(record))
          }),
      })
    }),
  )
}

/** Why {@link verifyDeadLetter} refused a record. */
export type DeadLetterRefusal =
  /** Not a version-2 dead letter: wrong shape, extra members, bad values. */
  | "malformed"
  /** No `kid` or `sig` (an old version-1 record, or anything else posted without a key). */
  | "unsigned"
  /** Read from another subject than `vigil.dlq.<service>` of the service it names. */
  | "subject_mismatch"
  | "unknown_key"
  | "bad_signature"
  /** The key was not valid when the record was made (or, with `storedAt`, when it was stored). */
  | "key_expired"
  | "key_not_yet_valid"
  /** Validly signed, by a key that belongs to another principal than the record's `service`. */
  | "wrong_principal"
  /** The payload does not match `payloadBytes` / `payloadSha256` / `payloadTruncated`. */
  | "payload_mismatch"

export type DeadLetterVerdict =
  | { readonly ok: true; readonly record: DeadLetter; readonly key: TrustedKey }
  | { readonly ok: false; readonly reason: DeadLetterRefusal; readonly detail: string }

export interface VerifyDeadLetterOptions {
  /** The subject the record was read from; it must be the DLQ subject of the record's `service`. */
  readonly subject?: string
  /** When VIGIL_DLQ stored the record (epoch ms); the key must be the service's at that instant too. */
  readonly storedAt?: number
}

const REASONS = [...REJECTION_REASONS, "handler_failed"] as const
const Count = Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))
const DeadLetterSchema = Schema.Struct({
  v: Schema.Literal(DEAD_LETTER_VERSION),
  service: Schema.String,
  reason: Schema.Literals(REASONS),
  detail: Schema.String,
  subject: Schema.String,
  stream: Schema.String,
  durable: Schema.String,
  streamSeq: Count,
  deliveryCount: Count,
  storedAt: Timestamp,
  deadLetteredAt: Timestamp,
  eventId: Schema.optionalKey(Schema.String),
  type: Schema.optionalKey(Schema.String),
  payloadBytes: Count,
  payloadSha256: Sha256Hex,
  payload: Schema.String,
  payloadTruncated: Schema.Boolean,
  kid: KeyId,
  sig: SignatureB64,
})
const decodeDeadLetter = Schema.decodeUnknownResult(DeadLetterSchema, { onExcessProperty: "error", errors: "first" })

const refuse = (reason: DeadLetterRefusal, detail: string): DeadLetterVerdict => ({ ok: false, reason, detail })

/**
 * Check a record read from `vigil.dlq.<service>` (parsed JSON): the version-2 shape, a valid Ed25519 signature
 * (context {@link DEAD_LETTER_CONTEXT}) by `kid`, `kid` granted to the record's `service` by the manifest version in
 * force when the record was made (and when stored, with `opts.storedAt`), and the payload consistent with
 * `payloadBytes` and, when not truncated, `payloadSha256`. Never throws.
 */
export const verifyDeadLetter = (
  record: unknown,
  resolver: KeyResolver,
  opts: VerifyDeadLetterOptions = {},
): DeadLetterVerdict => {
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    return refuse("malformed", "a dead letter is a JSON object")
  }
  const raw = record as Record<string, unknown>
  if (raw.kid === undefined || raw.sig === undefined) {
    return refuse("unsigned", "the record has no kid or no sig: nothing vouches for it")
  }
  const decoded = decodeDeadLetter(raw)
  if (decoded._tag === "Failure") return refuse("malformed", decoded.failure.message)
  const r = decoded.success as DeadLetter
  if (opts.subject !== undefined && opts.subject !== dlqSubject(r.service)) {
    return refuse("subject_mismatch", `a dead letter of ${r.service} read from ${opts.subject}`)
  }
  const lookup = resolver.resolve(r.kid, Date.parse(r.deadLetteredAt))
  if (!("key" in lookup)) return refuse("unknown_key", lookup.detail)
  const { sig, ...unsigned } = r
  let signed: Uint8Array
  try {
    signed = deadLetterSigningBytes(unsigned)
  } catch (e) {
    return refuse("malformed", `no canonical form: ${e instanceof Error ? e.message : String(e)}`)
  }
  if (!fastEd25519.verify(Buffer.from(sig, "base64url"), signed, lookup.key.publicKey)) {
    return refuse("bad_signature", `signature does not verify under key ${r.kid}`)
  }
  if (!lookup.ok) return refuse(lookup.reason, lookup.detail)
  const key = lookup.key
  if (key.principal !== r.service) {
    return refuse("wrong_principal", `key ${key.kid} belongs to ${key.principal}, the record names ${r.service}`)
  }
  if (opts.storedAt !== undefined) {
    const stored = resolver.resolve(r.kid, opts.storedAt)
    if (!stored.ok) return refuse(stored.reason, `when stored: ${stored.detail}`)
    if (stored.key.principal !== r.service) {
      return refuse("wrong_principal", `when stored, key ${key.kid} belonged to ${stored.key.principal}`)
    }
  }
  const payload = Buffer.from(r.payload, "base64")
  if (payload.toString("base64") !== r.payload) return refuse("payload_mismatch", "payload is not canonical base64")
  if (r.payloadTruncated) {
    if (r.payloadBytes <= MAX_DLQ_PAYLOAD || payload.length !== MAX_DLQ_PAYLOAD) {
      return refuse(
        "payload_mismatch",
        `truncated payload of ${payload.length} bytes for a ${r.payloadBytes}-byte message (cut at ${MAX_DLQ_PAYLOAD})`,
      )
    }
  } else {
    if (payload.length !== r.payloadBytes) {
      return refuse("payload_mismatch", `payload has ${payload.length} bytes, the record says ${r.payloadBytes}`)
    }
    const sha = createHash("sha256").update(payload).digest("hex")
    if (sha !== r.payloadSha256) {
      return refuse("payload_mismatch", `payload SHA-256 is ${sha}, the record says ${r.payloadSha256}`)
    }
  }
  return { ok: true, record: r, key }
}
