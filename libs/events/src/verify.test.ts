import { createHash } from "node:crypto"
import { keyIdOf, nobleEd25519, nodeEd25519, SignaturePool } from "@vigil/crypto"
import { describe, expect, expectTypeOf, it } from "vitest"
import { blobRefOf } from "./blobs.ts"
import type { EventType, Principal, TOOLS } from "./catalog.ts"
import { type Draft, encodeEvent, type SigningKey, signEvent, signingBytes } from "./envelope.ts"
import { newEventId } from "./ids.ts"
import { eventSubject } from "./subjects.ts"
import {
  type KeyLookup,
  type KeyResolver,
  REJECTION_REASONS,
  type Rejection,
  type RejectionReason,
  type TrustedKey,
  type Verified,
  type VerifyOptions,
  verifyEvent,
  verifyEventAsync,
} from "./verify.ts"

const T0 = "2025-06-01T12:00:00.000Z"
const T0_MS = Date.parse(T0)
const HOUR = 3_600_000
const utf8 = new TextEncoder()

/** A deterministic key for a principal (seed = SHA-256 of a label), so failures reproduce. */
const makeKey = (principal: Principal, label: string = principal): SigningKey => {
  const seed = new Uint8Array(createHash("sha256").update(`vigil-test/${label}`).digest())
  const publicKey = nodeEd25519.publicKey(seed)
  return { principal, kid: keyIdOf(publicKey), seed, publicKey }
}

const trusted = (
  k: SigningKey,
  types: ReadonlyArray<EventType>,
  window: { notBefore?: number; notAfter?: number; principal?: string } = {},
): TrustedKey => ({
  kid: k.kid,
  principal: window.principal ?? k.principal,
  publicKey: k.publicKey,
  types: new Set(types),
  notBefore: window.notBefore ?? T0_MS - 24 * HOUR,
  notAfter: window.notAfter ?? T0_MS + 24 * HOUR,
  manifestVersion: 3,
})

/** The resolver a test builds: a map of kid → key, with the validity window applied as libs/keys would. */
const resolverOf = (keys: ReadonlyArray<TrustedKey>): KeyResolver => {
  const byKid = new Map(keys.map((k) => [k.kid, k]))
  return {
    resolve: (kid, atMs): KeyLookup => {
      const key = byKid.get(kid)
      if (key === undefined) return { ok: false, reason: "unknown_key", detail: `no key ${kid}` }
      if (atMs < key.notBefore) return { ok: false, reason: "key_not_yet_valid", detail: `${kid} not yet valid`, key }
      if (atMs >= key.notAfter) return { ok: false, reason: "key_expired", detail: `${kid} expired`, key }
      return { ok: true, key }
    },
  }
}

const inference = makeKey("inference")
const gateway = makeKey("gateway")
const dlp = makeKey("dlp")
const stranger = makeKey("inference", "not-in-the-manifest")
const expired = makeKey("inference", "expired")
const future = makeKey("inference", "future")
const misattributed = makeKey("inference", "really-dlp") // the manifest grants this key to dlp

const keys = resolverOf([
  trusted(inference, ["intent.proposed", "answer.proposed"]),
  trusted(gateway, ["task.submitted", "consent.granted"]),
  trusted(dlp, ["prompt.screened"]),
  trusted(expired, ["intent.proposed"], { notBefore: T0_MS - 48 * HOUR, notAfter: T0_MS - HOUR }),
  trusted(future, ["intent.proposed"], { notBefore: T0_MS + HOUR }),
  trusted(misattributed, ["intent.proposed"], { principal: "dlp" }),
])

const opts = (extra: Partial<VerifyOptions> = {}): VerifyOptions => ({ keys, maxBytes: 64 * 1024, ...extra })

const intentDraft = (over: Partial<Draft<"intent.proposed">> = {}): Draft<"intent.proposed"> => ({
  type: "intent.proposed",
  session: "sess_1",
  id: newEventId(T0_MS),
  time: T0,
  causation: newEventId(T0_MS - 1000),
  correlation: "task-1",
  trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  data: { tool: "fs.read", args: { path: "/home/u/notes.txt", limit: 4096 }, reason: "read the notes", step: 1 },
  ...over,
})

const prompt = blobRefOf(utf8.encode("summarise my notes"), "text/plain; charset=utf-8")
const taskDraft = (over: Partial<Draft<"task.submitted">> = {}): Draft<"task.submitted"> => ({
  type: "task.submitted",
  session: "sess_1",
  id: newEventId(T0_MS),
  time: T0,
  data: { channel: "ui", workspace: "/home/u", promptChars: 18 },
  blobs: { prompt },
  ...over,
})

/** Wire bytes of an arbitrary (possibly tampered) JSON value. */
const wire = (value: unknown): Uint8Array => utf8.encode(JSON.stringify(value))

/** Sign an intent, then let `edit` change the signed JSON object (so the signature no longer covers it). */
const tampered = (edit: (o: Record<string, unknown>) => void, key: SigningKey = inference): Uint8Array => {
  const o = JSON.parse(JSON.stringify(signEvent(key, intentDraft()))) as Record<string, unknown>
  edit(o)
  return wire(o)
}

/** A signed intent with one field changed after signing. */
const withField = (key: string, value: unknown, signer: SigningKey = inference): Uint8Array =>
  tampered((o) => {
    o[key] = value
  }, signer)

/** Sign an arbitrary unsigned body with a key, bypassing signEvent's typing: a well-signed but ill-formed event. */
const signedRaw = (unsigned: Record<string, unknown>, key: SigningKey = inference): Uint8Array => {
  const ev = signEvent(key, intentDraft())
  const { sig: _s, ...base } = ev as unknown as Record<string, unknown>
  const body = { ...base, ...unsigned }
  for (const [k, v] of Object.entries(unsigned)) if (v === undefined) delete body[k]
  // Re-sign the edited body exactly as signEvent does.
  const sig = Buffer.from(nodeEd25519.sign(signingBytes(body), key.seed)).toString("base64url")
  return wire({ ...body, sig })
}

const expectRejected = (result: Verified | Rejection, reason: RejectionReason): Rejection => {
  if (result.ok) throw new Error(`expected ${reason}, but the event verified`)
  expect(REJECTION_REASONS).toContain(result.reason)
  expect({ reason: result.reason, detail: result.detail }).toMatchObject({ reason })
  expect(result.detail.length).toBeGreaterThan(0)
  return result
}

const expectVerified = (result: Verified | Rejection): Verified => {
  if (!result.ok) throw new Error(`expected a verified event, got ${result.reason}: ${result.detail}`)
  return result
}

describe("verifyEvent accepts", () => {
  it("a valid event, and returns it with typed data and the key that signed it", () => {
    const ev = signEvent(inference, intentDraft())
    const r = expectVerified(
      verifyEvent(
        encodeEvent(ev),
        opts({ subject: eventSubject("sess_1", "intent.proposed"), receivedAt: T0_MS + 50 }),
      ),
    )
    expect(r.event).toStrictEqual(ev)
    expect(r.key.kid).toBe(inference.kid)
    if (r.event.type !== "intent.proposed") throw new Error("wrong type")
    // Narrowed by `type`: data is the catalog type, no cast needed.
    expectTypeOf(r.event.data.tool).toEqualTypeOf<(typeof TOOLS)[number]>()
    expectTypeOf(r.event.data.step).toEqualTypeOf<number>()
    expect(r.event.data.tool).toBe("fs.read")
    expect(r.event.data.args).toEqual({ path: "/home/u/notes.txt", limit: 4096 })
    expect(r.event.data.step).toBe(1)
  })

  it("an event with its required blob, in any key order and with whitespace on the wire", () => {
    const ev = signEvent(gateway, taskDraft())
    const pretty = utf8.encode(JSON.stringify(Object.fromEntries(Object.entries(ev).reverse()), null, 2))
    const r = expectVerified(verifyEvent(pretty, opts()))
    expect(r.event.blobs?.prompt).toEqual(prompt)
  })

  it("an event signed by noble and verified by node, and the other way round", () => {
    const draft = intentDraft()
    const byNoble = signEvent(inference, draft, nobleEd25519)
    const byNode = signEvent(inference, draft, nodeEd25519)
    expect(byNoble.sig).toBe(byNode.sig)
    expectVerified(verifyEvent(encodeEvent(byNoble), opts({ ed: nodeEd25519 })))
    expectVerified(verifyEvent(encodeEvent(byNode), opts({ ed: nobleEd25519 })))
    expectVerified(verifyEvent(encodeEvent(byNoble), opts({ ed: nobleEd25519 })))
    expect(Buffer.from(encodeEvent(byNoble)).equals(Buffer.from(encodeEvent(byNode)))).toBe(true)
    // And a forgery fails under both.
    const forged = withField("session", "sess_2")
    expectRejected(verifyEvent(forged, opts({ ed: nobleEd25519 })), "bad_signature")
    expectRejected(verifyEvent(forged, opts({ ed: nodeEd25519 })), "bad_signature")
  })

  it("events at the edges of the skew window", () => {
    const ev = encodeEvent(signEvent(inference, intentDraft()))
    expectVerified(verifyEvent(ev, opts({ receivedAt: T0_MS + 120_000 })))
    expectVerified(verifyEvent(ev, opts({ receivedAt: T0_MS - 120_000 })))
  })
})

describe("verifyEvent rejects", () => {
  it("oversized: more bytes than maxBytes, before parsing anything", () => {
    const bytes = encodeEvent(signEvent(inference, intentDraft()))
    expectRejected(verifyEvent(bytes, opts({ maxBytes: bytes.length - 1 })), "oversized")
    expectVerified(verifyEvent(bytes, opts({ maxBytes: bytes.length })))
    expectRejected(verifyEvent(new Uint8Array(70_000).fill(0x20), opts()), "oversized")
  })

  it("invalid_json: truncated bytes, invalid UTF-8, and JSON that is not an object", () => {
    const bytes = encodeEvent(signEvent(inference, intentDraft()))
    expectRejected(verifyEvent(bytes.subarray(0, bytes.length - 1), opts()), "invalid_json")
    expectRejected(verifyEvent(bytes.subarray(0, 10), opts()), "invalid_json")
    expectRejected(verifyEvent(new Uint8Array(0), opts()), "invalid_json")
    // Invalid UTF-8 inside a string value: a lone continuation byte, and an overlong encoding of "/".
    const text = Buffer.from(bytes)
    const at = text.indexOf("read the notes")
    for (const bad of [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      const corrupt = Buffer.concat([text.subarray(0, at), Buffer.from(bad), text.subarray(at)])
      expectRejected(verifyEvent(corrupt, opts()), "invalid_json")
    }
    for (const notObject of ["[]", `[${Buffer.from(bytes).toString()}]`, "null", '"event"', "42", "true"]) {
      expectRejected(verifyEvent(utf8.encode(notObject), opts()), "invalid_json")
    }
  })

  it("invalid_json: an escaped lone surrogate, which has no canonical (I-JSON) form and so cannot be signed", () => {
    const text = Buffer.from(encodeEvent(signEvent(inference, intentDraft()))).toString()
    for (const esc of ["\\ud800", "\\udfff", "x\\ud83d", "\\ude00y"]) {
      const bytes = utf8.encode(text.replace("read the notes", esc))
      expectRejected(verifyEvent(bytes, opts()), "invalid_json")
    }
    // In a member name too.
    const inKey = utf8.encode(text.replace('"path"', '"\\ud800"'))
    expectRejected(verifyEvent(inKey, opts()), "invalid_json")
    // A proper escaped pair is fine JSON; the signature just does not cover the new text.
    const pair = utf8.encode(text.replace("read the notes", "\\ud83d\\ude00"))
    expectRejected(verifyEvent(pair, opts()), "bad_signature")
  })

  it("unknown_type: a type not in the catalog, named in the rejection", () => {
    const r = expectRejected(
      verifyEvent(
        tampered((o) => {
          o.type = "intent.exploded"
        }),
        opts(),
      ),
      "unknown_type",
    )
    expect(r.type).toBe("intent.exploded")
    expect(r.eventId).toMatch(/^[0-9A-Z]{26}$/u)
    expectRejected(verifyEvent(withField("type", "__proto__"), opts()), "unknown_type")
    expectRejected(verifyEvent(withField("type", "toString"), opts()), "unknown_type")
  })

  it("schema_envelope: a bad id, an extra top-level key, a missing field, a wrong version", () => {
    expectRejected(verifyEvent(signedRaw({ id: "not-a-ulid" }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ extra: 1 }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ correlation: undefined }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ v: 2 }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ session: "has.dots" }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ source: "root" }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ causation: 17 }), opts()), "schema_envelope")
    expectRejected(verifyEvent(signedRaw({ blobs: { "bad role!": prompt } }), opts()), "schema_envelope")
    expectRejected(
      verifyEvent(
        tampered((o) => delete o.sig),
        opts(),
      ),
      "schema_envelope",
    )
    expectRejected(verifyEvent(withField("sig", "AAAA"), opts()), "schema_envelope")
  })

  it("schema_envelope: a timestamp that matches the pattern but is no real instant", () => {
    // Date.parse gives NaN for month 13 (and every time comparison with NaN is false, so the freshness check would
    // pass), and reads February 30th as March 1st.
    for (const time of ["2025-13-01T00:00:00.000Z", "2025-02-30T00:00:00.000Z", "2025-06-01T24:00:00.000Z"]) {
      expectRejected(verifyEvent(signedRaw({ time }), opts({ receivedAt: T0_MS })), "schema_envelope")
    }
    expectRejected(verifyEvent(signedRaw({ time: "2025-06-01T12:00:00Z" }), opts()), "schema_envelope")
  })

  it("schema_envelope: a signature spelled with non-zero padding bits (16 spellings of one signature)", () => {
    const ev = signEvent(inference, intentDraft())
    const last = ev.sig.slice(-1)
    expect("AQgw").toContain(last)
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    const twin = ev.sig.slice(0, -1) + alphabet[alphabet.indexOf(last) + 1]
    // Both spellings decode to the same 64 bytes ...
    expect(Buffer.from(twin, "base64url").equals(Buffer.from(ev.sig, "base64url"))).toBe(true)
    // ... but only the canonical one is accepted, so an event has exactly one canonical form and hash.
    expectRejected(verifyEvent(wire({ ...ev, sig: twin }), opts()), "schema_envelope")
    expectVerified(verifyEvent(wire(ev), opts()))
  })

  it("schema_data: the wrong data shape, an extra data key, a missing data key", () => {
    const data = intentDraft().data
    expectRejected(verifyEvent(signedRaw({ data: { ...data, tool: "rm -rf" } }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: { ...data, extra: true } }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: { ...data, step: -1 } }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: { ...data, step: 1.5 } }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: { ...data, reason: "x".repeat(2001) } }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: { tool: "fs.read" } }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: [] }), opts()), "schema_data")
    expectRejected(verifyEvent(signedRaw({ data: null }), opts()), "schema_data")
  })

  it("missing_blob: a type that must reference content, without it", () => {
    const ev = signEvent(gateway, taskDraft({ blobs: {} }))
    expectRejected(verifyEvent(encodeEvent(ev), opts()), "missing_blob")
    const { blobs: _b, ...draft } = taskDraft()
    expectRejected(verifyEvent(encodeEvent(signEvent(gateway, draft)), opts()), "missing_blob")
    const wrongRole = signEvent(gateway, taskDraft({ blobs: { output: prompt } }))
    expectRejected(verifyEvent(encodeEvent(wrongRole), opts()), "missing_blob")
  })

  it("subject_mismatch: the subject names another session or type, or is not an event subject", () => {
    const bytes = encodeEvent(signEvent(inference, intentDraft()))
    expectVerified(verifyEvent(bytes, opts({ subject: "vigil.ev.sess_1.intent.proposed" })))
    for (const subject of [
      eventSubject("sess_2", "intent.proposed"),
      eventSubject("sess_1", "answer.proposed"),
      "vigil.ev.sess_1.intent",
      "vigil.audit.sess_1.intent.proposed",
      "",
    ]) {
      expectRejected(verifyEvent(bytes, opts({ subject })), "subject_mismatch")
    }
  })

  it("unknown_key: a kid the manifest does not know", () => {
    expectRejected(verifyEvent(encodeEvent(signEvent(stranger, intentDraft())), opts()), "unknown_key")
  })

  it("bad_signature: one byte changed inside a string value, JSON still valid", () => {
    const bytes = Buffer.from(encodeEvent(signEvent(inference, intentDraft())))
    const at = bytes.indexOf("read the notes")
    const flipped = Buffer.from(bytes)
    flipped[at] = "R".charCodeAt(0)
    expect(JSON.parse(flipped.toString()).data.reason).toBe("Read the notes")
    expectRejected(verifyEvent(flipped, opts()), "bad_signature")
    // Any signed field counts: session and correlation are checked by the signature, not just by the schema.
    expectRejected(verifyEvent(withField("correlation", "task-2"), opts()), "bad_signature")
    expectRejected(verifyEvent(withField("causation", null), opts()), "bad_signature")
    // A valid signature by another key, under this event's kid.
    const other = signEvent(gateway, intentDraft())
    expectRejected(verifyEvent(withField("sig", other.sig), opts()), "bad_signature")
  })

  it("bad_signature before key validity: a forged event under an expired key is a forgery first", () => {
    const forged = withField("correlation", "task-2", expired)
    expectRejected(verifyEvent(forged, opts()), "bad_signature")
  })

  it("source_mismatch: a valid signature by a key that belongs to another principal", () => {
    const r = expectRejected(
      verifyEvent(encodeEvent(signEvent(misattributed, intentDraft())), opts()),
      "source_mismatch",
    )
    expect(r.detail).toContain("dlp")
  })

  it("key_not_authorized: a valid signature by a key the manifest does not allow this type", () => {
    const ev = signEvent(inference, {
      type: "answer.blocked",
      session: "sess_1",
      time: T0,
      data: { answer: newEventId(T0_MS), findings: [], explanation: "no" },
    })
    expectRejected(verifyEvent(encodeEvent(ev), opts()), "key_not_authorized")
    // dlp may emit prompt.screened but not intent.proposed.
    const asDlp = signEvent(dlp, intentDraft())
    expectRejected(verifyEvent(encodeEvent(asDlp), opts()), "key_not_authorized")
  })

  it("key_expired and key_not_yet_valid: the resolver says so at the event's time", () => {
    expectRejected(verifyEvent(encodeEvent(signEvent(expired, intentDraft())), opts()), "key_expired")
    expectRejected(verifyEvent(encodeEvent(signEvent(future, intentDraft())), opts()), "key_not_yet_valid")
    // The same key is fine for an event inside its window.
    const inWindow = intentDraft({ time: new Date(T0_MS - 2 * HOUR).toISOString(), id: newEventId(T0_MS - 2 * HOUR) })
    expectVerified(verifyEvent(encodeEvent(signEvent(expired, inWindow)), opts()))
  })

  it("replayed: the event is much older than when the broker stored it", () => {
    const bytes = encodeEvent(signEvent(inference, intentDraft()))
    expectRejected(verifyEvent(bytes, opts({ receivedAt: T0_MS + 10 * 60_000 })), "replayed")
    expectRejected(verifyEvent(bytes, opts({ receivedAt: T0_MS + 1001, maxSkewMs: 1000 })), "replayed")
    expectVerified(verifyEvent(bytes, opts({ receivedAt: T0_MS + 1000, maxSkewMs: 1000 })))
  })

  it("clock_skew: the event claims a time far after it was stored", () => {
    const bytes = encodeEvent(signEvent(inference, intentDraft()))
    expectRejected(verifyEvent(bytes, opts({ receivedAt: T0_MS - 10 * 60_000 })), "clock_skew")
    expectRejected(verifyEvent(bytes, opts({ receivedAt: T0_MS - 1001, maxSkewMs: 1000 })), "clock_skew")
  })

  it("covers every reason code in REJECTION_REASONS", () => {
    // Guards this file: a new reason added to verify.ts must get a test above.
    const tested = new Set<RejectionReason>([
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
      "key_invalid_when_stored", // below
    ])
    expect([...REJECTION_REASONS].sort()).toEqual([...tested].sort())
  })
})

describe("key validity at the store time as well as the event's time", () => {
  // A key revoked at R (the manifest version issued at R gives it `notAfter = R`): valid before R, expired from R.
  const R = T0_MS
  const revoked = makeKey("inference", "revoked-at-R")
  const revokedKeys = resolverOf([trusted(revoked, ["intent.proposed"], { notAfter: R })])
  const at = (ms: number) => intentDraft({ time: new Date(ms).toISOString(), id: newEventId(ms) })
  /** Signed by the revoked key, dated 60 s before its revocation: inside the 120 s freshness window of R + 5 s. */
  const backdated = encodeEvent(signEvent(revoked, at(R - 60_000)))
  const storedAt = (receivedAt: number, keys: KeyResolver = revokedKeys): VerifyOptions =>
    opts({ keys, receivedAt, maxSkewMs: 120_000 })

  it("key_invalid_when_stored: revoked at R, event time R-60s, stored at R+5s", async () => {
    const r = expectRejected(verifyEvent(backdated, storedAt(R + 5_000)), "key_invalid_when_stored")
    expect(r.detail).toContain(new Date(R + 5_000).toISOString())
    expect(r.eventId).toBeDefined()
    // The async entry point (the consumers' path) reaches the same verdict.
    expectRejected(await verifyEventAsync(backdated, storedAt(R + 5_000)), "key_invalid_when_stored")
    // Stored exactly at R: the key's window is [notBefore, R), so R itself is already outside it.
    expectRejected(verifyEvent(backdated, storedAt(R)), "key_invalid_when_stored")
  })

  it("accepts the same event stored at R-1s, before the revocation", async () => {
    expectVerified(verifyEvent(backdated, storedAt(R - 1_000)))
    expectVerified(await verifyEventAsync(backdated, storedAt(R - 1_000)))
  })

  it("without a store time (the offline audit verifier) the event's time alone decides", () => {
    expectVerified(verifyEvent(backdated, opts({ keys: revokedKeys })))
  })

  it("an event dated after the revocation stays key_expired, and a stale one stays replayed", () => {
    expectRejected(verifyEvent(encodeEvent(signEvent(revoked, at(R + 1_000))), storedAt(R + 2_000)), "key_expired")
    // Freshness is judged before the store-time key check: an old event re-posted after R is a replay first.
    expectRejected(verifyEvent(encodeEvent(signEvent(revoked, at(R - 200_000))), storedAt(R + 5_000)), "replayed")
  })

  it("key_invalid_when_stored: the version in force at the store time withdrew the type or moved the key", () => {
    // Same kid, two manifest versions: before R it may sign intents; from R only answers (or it belongs to dlp).
    const before = trusted(revoked, ["intent.proposed"])
    const versioned = (after: TrustedKey): KeyResolver => ({
      resolve: (kid, atMs): KeyLookup =>
        kid !== revoked.kid
          ? { ok: false, reason: "unknown_key", detail: `no key ${kid}` }
          : { ok: true, key: atMs < R ? before : after },
    })
    const narrowed = versioned({ ...trusted(revoked, ["answer.proposed"]), manifestVersion: 4 })
    const moved = versioned({ ...trusted(revoked, ["intent.proposed"], { principal: "dlp" }), manifestVersion: 4 })
    const regranted = versioned({ ...trusted(revoked, ["intent.proposed"]), manifestVersion: 4 })
    const r1 = expectRejected(verifyEvent(backdated, storedAt(R + 5_000, narrowed)), "key_invalid_when_stored")
    expect(r1.detail).toContain("intent.proposed")
    const r2 = expectRejected(verifyEvent(backdated, storedAt(R + 5_000, moved)), "key_invalid_when_stored")
    expect(r2.detail).toContain("dlp")
    // A newer version that grants the key the same rights (another object) is fine.
    expectVerified(verifyEvent(backdated, storedAt(R + 5_000, regranted)))
    expectVerified(verifyEvent(backdated, storedAt(R - 1_000, narrowed)))
  })

  it("the SignaturePool batch path applies the store-time check too", async () => {
    // inlineMax 0: every signature goes to the worker, as a consumer's pull batch does.
    const pool = new SignaturePool({ workers: 1, inlineMax: 0 })
    try {
      const refused = verifyEventAsync(backdated, { ...storedAt(R + 5_000), signatures: pool })
      const accepted = verifyEventAsync(backdated, { ...storedAt(R - 1_000), signatures: pool })
      expectRejected(await refused, "key_invalid_when_stored")
      expectVerified(await accepted)
    } finally {
      await pool.close()
    }
  })
})
