import { type Ed25519, fastEd25519, inlineChecker, type SignatureChecker } from "@vigil/crypto"
import { type Result, Schema } from "effect"
import { SchemaJITCompiler } from "effect/schema"
import { CATALOG, type EventType, isEventType } from "./catalog.ts"
import { canonicalFromSigning, Envelope, type Event, signingBytes } from "./envelope.ts"
import { parseEventSubject } from "./subjects.ts"

/**
 * Why an event was refused. Every refused event goes to `vigil.dlq.<service>` with one of these codes, so a
 * dashboard or a test can switch on it.
 */
export const REJECTION_REASONS = [
  "oversized",
  "invalid_json",
  "unknown_type",
  "schema_envelope",
  "schema_data",
  "missing_blob",
  "subject_mismatch",
  "unknown_key",
  "bad_signature",
  "source_mismatch",
  "key_not_authorized",
  "key_expired",
  "key_not_yet_valid",
  "replayed",
  "clock_skew",
  "key_invalid_when_stored",
] as const
export type RejectionReason = (typeof REJECTION_REASONS)[number]

export interface Rejection {
  readonly ok: false
  readonly reason: RejectionReason
  readonly detail: string
  /** Present when the bytes parsed far enough to name it. */
  readonly eventId?: string
  readonly type?: string
}

/** A public key as the signed key manifest grants it. */
export interface TrustedKey {
  readonly kid: string
  readonly principal: string
  readonly publicKey: Uint8Array
  readonly types: ReadonlySet<string>
  /** Validity window in epoch ms, `[notBefore, notAfter)`. */
  readonly notBefore: number
  readonly notAfter: number
  /** Manifest version that granted the key at the event's time. */
  readonly manifestVersion: number
}

export type KeyLookup =
  | { readonly ok: true; readonly key: TrustedKey }
  | { readonly ok: false; readonly reason: "unknown_key"; readonly detail: string }
  /** The key is known but was not valid at that time; it is still returned so the signature can be checked. */
  | {
      readonly ok: false
      readonly reason: "key_expired" | "key_not_yet_valid"
      readonly detail: string
      readonly key: TrustedKey
    }

/** Resolves a key id as the manifest version valid at `atMs` grants it (libs/keys implements this). */
export interface KeyResolver {
  resolve(kid: string, atMs: number): KeyLookup
}

export interface VerifyOptions {
  readonly keys: KeyResolver
  readonly maxBytes: number
  /** When given, the subject must be `vigil.ev.<session>.<type>` of the event. */
  readonly subject?: string
  /**
   * When the broker stored the message (epoch ms). An event whose own time is further than `maxSkewMs` from it is
   * refused: older means a re-publish of an old event outside JetStream's de-duplication window (`replayed`). The key
   * must also be valid, belong to the source and be authorised for the type at this instant, as at the event's own
   * time (`key_invalid_when_stored`): a key revoked at R cannot sign events back-dated to before R once R has passed.
   */
  readonly receivedAt?: number
  readonly maxSkewMs?: number
  /** Implementation for the synchronous check; default the fast one (libsodium). */
  readonly ed?: Ed25519
  /** Where {@link verifyEventAsync} checks the signature; default inline. A {@link SignaturePool} uses workers. */
  readonly signatures?: SignatureChecker
}

export interface Verified<T extends EventType = EventType> {
  readonly ok: true
  readonly event: Event<T>
  readonly key: TrustedKey
  /** The event's RFC 8785 canonical bytes (`encodeEvent(event)`), the Merkle-leaf form, whatever the wire form was. */
  readonly canonical: Uint8Array
}

const textDecoder = new TextDecoder("utf-8", { fatal: true })
const parseOptions = { onExcessProperty: "error", errors: "first" } as const
// Every consumer decodes every event it receives. Effect's schema JIT compiles these schemas into plain functions for
// valid input and falls back to the interpreter (same issues, same messages) for invalid input: an intent or a
// decision decoded in 5–6 µs instead of 8–10 µs here (ADR 0015). Enabled before the decoders below capture their
// parsers.
SchemaJITCompiler.enable(Envelope.ast)
for (const t of Object.keys(CATALOG) as EventType[]) SchemaJITCompiler.enable(CATALOG[t].data.ast)
const decodeEnvelope = Schema.decodeUnknownResult(Envelope, parseOptions)
const decodeData: Record<string, (u: unknown) => Result.Result<unknown, Schema.SchemaError>> = Object.fromEntries(
  (Object.keys(CATALOG) as EventType[]).map((t) => [
    t,
    Schema.decodeUnknownResult(CATALOG[t].data as Schema.Codec<unknown, unknown>, parseOptions),
  ]),
)

// RFC 8785 canonicalises I-JSON (RFC 7493 section 2.1: no unpaired surrogates). A `\ud800` escape parses into a
// string with no UTF-8 form, which can be neither canonicalised nor signed (canonicalJson throws on it), so such a
// text is refused as invalid JSON up front. Only texts that contain a surrogate escape need the walk.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/u
const allStringsWellFormed = (root: unknown): boolean => {
  const stack: unknown[] = [root]
  while (stack.length > 0) {
    const v = stack.pop()
    if (typeof v === "string") {
      if (!v.isWellFormed()) return false
    } else if (Array.isArray(v)) {
      for (const x of v) stack.push(x)
    } else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (!k.isWellFormed()) return false
        stack.push(x)
      }
    }
  }
  return true
}

const reject = (reason: RejectionReason, detail: string, raw?: Record<string, unknown>): Rejection => {
  const id = raw !== undefined && typeof raw.id === "string" ? raw.id.slice(0, 64) : undefined
  const type = raw !== undefined && typeof raw.type === "string" ? raw.type.slice(0, 64) : undefined
  return {
    ok: false,
    reason,
    detail,
    ...(id === undefined ? {} : { eventId: id }),
    ...(type === undefined ? {} : { type }),
  }
}

/** An event that passed every check that comes before the signature, with what the signature check needs. */
interface PendingSignature {
  readonly ok: "signature_pending"
  readonly obj: Record<string, unknown>
  readonly event: Envelope
  readonly data: unknown
  readonly time: number
  readonly lookup: Extract<KeyLookup, { readonly key: TrustedKey }>
  readonly sigBytes: Uint8Array
  readonly signed: Uint8Array
}

/** Size, JSON, envelope and data schema, blobs, subject binding, key known; then the bytes the signature covers. */
const checkBeforeSignature = (bytes: Uint8Array, opts: VerifyOptions): PendingSignature | Rejection => {
  if (bytes.length > opts.maxBytes) return reject("oversized", `${bytes.length} bytes > limit ${opts.maxBytes}`)
  let raw: unknown
  let text: string
  try {
    text = textDecoder.decode(bytes)
    raw = JSON.parse(text)
  } catch (e) {
    return reject("invalid_json", e instanceof Error ? e.message : String(e))
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return reject("invalid_json", "event is not a JSON object")
  }
  if (SURROGATE_ESCAPE.test(text) && !allStringsWellFormed(raw)) {
    return reject("invalid_json", "not I-JSON: a string or member name contains an unpaired surrogate")
  }
  const obj = raw as Record<string, unknown>
  if (typeof obj.type === "string" && !isEventType(obj.type)) {
    return reject("unknown_type", `no event type ${JSON.stringify(obj.type.slice(0, 64))} in the catalog`, obj)
  }
  const env = decodeEnvelope(obj)
  if (env._tag === "Failure") return reject("schema_envelope", env.failure.message, obj)
  const event = env.success
  const data = (decodeData[event.type] as (u: unknown) => Result.Result<unknown, Schema.SchemaError>)(event.data)
  if (data._tag === "Failure") return reject("schema_data", `${event.type}: ${data.failure.message}`, obj)
  for (const role of CATALOG[event.type].blobs) {
    if (event.blobs?.[role] === undefined)
      return reject("missing_blob", `${event.type} must reference a "${role}" blob`, obj)
  }
  if (opts.subject !== undefined) {
    const s = parseEventSubject(opts.subject)
    if (s === undefined || s.session !== event.session || s.type !== event.type) {
      return reject(
        "subject_mismatch",
        `subject ${opts.subject} does not carry ${event.type} of session ${event.session}`,
        obj,
      )
    }
  }
  const time = Date.parse(event.time)
  const lookup = opts.keys.resolve(event.kid, time)
  if (!("key" in lookup)) return reject("unknown_key", lookup.detail, obj)
  // Check the signature before trusting any other claim the event makes about itself.
  const { sig: _sig, ...unsigned } = obj
  const sigBytes = Buffer.from(event.sig, "base64url")
  let signed: Uint8Array
  try {
    signed = signingBytes(unsigned)
  } catch (e) {
    // Unreachable with today's schemas (surrogates are refused above, Schema.Json refuses non-finite numbers), but a
    // value RFC 8785 cannot canonicalise must stay a rejection, never an exception.
    return reject("invalid_json", `no canonical form: ${e instanceof Error ? e.message : String(e)}`, obj)
  }
  return { ok: "signature_pending", obj, event, data: data.success, time, lookup, sigBytes, signed }
}

/** Why the key as resolved at the store time may not sign `event`, or undefined if it may. */
const invalidWhenStored = (stored: KeyLookup, event: Envelope, storedAt: number): string | undefined => {
  const at = Number.isFinite(storedAt) ? new Date(storedAt).toISOString() : String(storedAt)
  if (!stored.ok) return `key ${event.kid} was not valid when the event was stored at ${at}: ${stored.detail}`
  const key = stored.key
  if (key.principal !== event.source) {
    return `when the event was stored at ${at}, key ${key.kid} belonged to ${key.principal}, not ${event.source} (manifest v${key.manifestVersion})`
  }
  if (!key.types.has(event.type)) {
    return `when the event was stored at ${at}, key ${key.kid} (${key.principal}) was no longer allowed ${event.type} (manifest v${key.manifestVersion})`
  }
  return undefined
}

/**
 * The signature's verdict, then key's principal is the source, key authorised for the type, key valid, fresh, and
 * the key as the manifest stood at the store time still valid for this source and type.
 */
const checkAfterSignature = (
  u: PendingSignature,
  signatureValid: boolean,
  opts: VerifyOptions,
): Verified | Rejection => {
  const { obj, event, time, lookup } = u
  if (!signatureValid) {
    return reject("bad_signature", `signature does not verify under key ${event.kid}`, obj)
  }
  if (!lookup.ok) return reject(lookup.reason, lookup.detail, obj)
  const key = lookup.key
  if (key.principal !== event.source) {
    return reject(
      "source_mismatch",
      `key ${key.kid} belongs to ${key.principal}, event claims source ${event.source}`,
      obj,
    )
  }
  if (!key.types.has(event.type)) {
    return reject(
      "key_not_authorized",
      `key ${key.kid} (${key.principal}) may not sign ${event.type} (manifest v${key.manifestVersion})`,
      obj,
    )
  }
  if (opts.receivedAt !== undefined) {
    const skew = opts.maxSkewMs ?? 120_000
    if (opts.receivedAt - time > skew) {
      return reject(
        "replayed",
        `event time ${event.time} is ${opts.receivedAt - time} ms before it was stored (window ${skew} ms)`,
        obj,
      )
    }
    if (time - opts.receivedAt > skew) {
      return reject("clock_skew", `event time ${event.time} is ${time - opts.receivedAt} ms after it was stored`, obj)
    }
    // The event's time is the signer's claim; the store time is the broker's. Judge the key at both, or a revoked
    // key could still sign events back-dated into the freshness window before its revocation. Usually both instants
    // fall in one manifest version, whose resolver answers with the very same key object: no further work.
    const stored = opts.keys.resolve(event.kid, opts.receivedAt)
    if (!stored.ok || stored.key !== key) {
      const why = invalidWhenStored(stored, event, opts.receivedAt)
      if (why !== undefined) return reject("key_invalid_when_stored", why, obj)
    }
  }
  return {
    ok: true,
    event: { ...event, data: u.data } as Event,
    key,
    canonical: canonicalFromSigning(u.signed, event.sig),
  }
}

/**
 * Decode and verify one event: size, JSON, envelope and data schema, subject binding, key known, signature, key's
 * principal is the source, key authorised for this type, key valid at the event's time, freshness, and (with
 * `receivedAt`) the key still valid and authorised when the event was stored. Never throws: anything that is not a valid event is a {@link Rejection} with a reason code.
 */
export const verifyEvent = (bytes: Uint8Array, opts: VerifyOptions): Verified | Rejection => {
  const u = checkBeforeSignature(bytes, opts)
  if (u.ok === false) return u
  return checkAfterSignature(u, (opts.ed ?? fastEd25519).verify(u.sigBytes, u.signed, u.lookup.key.publicKey), opts)
}

/**
 * {@link verifyEvent} with the Ed25519 check (most of its cost) handed to `opts.signatures`, e.g. a
 * {@link SignaturePool} on worker threads, so a consumer verifies on several cores. The same checks in the same
 * order with the same answers; with an explicit `ed` the signature is checked inline with it. Never rejects.
 */
export const verifyEventAsync = async (bytes: Uint8Array, opts: VerifyOptions): Promise<Verified | Rejection> => {
  const u = checkBeforeSignature(bytes, opts)
  if (u.ok === false) return u
  const publicKey = u.lookup.key.publicKey
  const valid =
    opts.ed === undefined
      ? await (opts.signatures ?? inlineChecker).verify(u.sigBytes, u.signed, publicKey)
      : opts.ed.verify(u.sigBytes, u.signed, publicKey)
  return checkAfterSignature(u, valid, opts)
}
