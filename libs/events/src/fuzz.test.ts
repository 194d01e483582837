import { createHash } from "node:crypto"
import { keyIdOf, nodeEd25519 } from "@vigil/crypto"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { blobRefOf } from "./blobs.ts"
import { type EventData, typesProducedBy } from "./catalog.ts"
import { type Event, encodeEvent, type SigningKey, signEvent, signEventEncoded } from "./envelope.ts"
import { newEventId } from "./ids.ts"
import {
  type KeyResolver,
  REJECTION_REASONS,
  type Rejection,
  type Verified,
  type VerifyOptions,
  verifyEvent,
} from "./verify.ts"

/**
 * The decoder faces bytes from the network: whatever they are, verifyEvent must return a result (never throw), and
 * a refusal must carry one of the documented reason codes. Mutations of a valid event may only be accepted when
 * they leave its meaning untouched (whitespace, key order): the accepted event's canonical bytes are the original's.
 */

const T0_MS = Date.parse("2025-06-01T12:00:00.000Z")
const utf8 = new TextEncoder()

const makeKey = (principal: SigningKey["principal"]): SigningKey => {
  const seed = new Uint8Array(createHash("sha256").update(`vigil-fuzz/${principal}`).digest())
  const publicKey = nodeEd25519.publicKey(seed)
  return { principal, kid: keyIdOf(publicKey), seed, publicKey }
}
const inference = makeKey("inference")
const gateway = makeKey("gateway")
const auditor = makeKey("auditor")

const keys: KeyResolver = {
  resolve: (kid) => {
    for (const k of [inference, gateway, auditor]) {
      if (k.kid === kid) {
        const types = new Set<string>(typesProducedBy(k.principal))
        return {
          ok: true,
          key: {
            kid,
            principal: k.principal,
            publicKey: k.publicKey,
            types,
            notBefore: 0,
            notAfter: 2 ** 52,
            manifestVersion: 1,
          },
        }
      }
    }
    return { ok: false, reason: "unknown_key", detail: `no key ${kid}` }
  },
}
const opts: VerifyOptions = { keys, maxBytes: 16 * 1024, receivedAt: T0_MS + 500 }

const session = "sess_fuzz"
const base = { session, time: new Date(T0_MS).toISOString(), trace: "" }
const SEEDS: ReadonlyArray<Event> = [
  signEvent(inference, {
    ...base,
    type: "intent.proposed",
    id: newEventId(T0_MS),
    causation: newEventId(T0_MS - 5),
    data: {
      tool: "fs.write",
      args: { path: "/tmp/ä €.txt", n: [1, 2.5, -0.001, true, null] },
      reason: "write 😀",
      step: 3,
    },
  }),
  signEvent(gateway, {
    ...base,
    type: "task.submitted",
    id: newEventId(T0_MS),
    data: { channel: "cli", workspace: "/home/u", promptChars: 12 },
    blobs: { prompt: blobRefOf(utf8.encode("hello world!"), "text/plain") },
  }),
  signEvent(auditor, {
    ...base,
    type: "alert.raised",
    id: newEventId(T0_MS),
    data: { rule: "r1", severity: "high", summary: "x", evidence: [newEventId(T0_MS)], details: { a: { b: [] } } },
  }),
]
const SEED_BYTES = SEEDS.map((e) => encodeEvent(e))
const canonicalHex = SEED_BYTES.map((b) => Buffer.from(b).toString("hex"))

const REASONS = new Set<string>(REJECTION_REASONS)

/** The invariant every case checks; returns the result for case-specific assertions. */
const check = (bytes: Uint8Array): Verified | Rejection => {
  const result = verifyEvent(bytes, opts)
  if (result.ok) {
    // Only a meaning-preserving mutation may pass: the event re-encodes to one of the seeds' canonical bytes.
    expect(canonicalHex).toContain(Buffer.from(encodeEvent(result.event)).toString("hex"))
    expect(Buffer.from(result.canonical).equals(Buffer.from(encodeEvent(result.event)))).toBe(true)
  } else {
    expect(REASONS.has(result.reason)).toBe(true)
    expect(typeof result.detail).toBe("string")
  }
  return result
}

const seedIndex = fc.integer({ min: 0, max: SEEDS.length - 1 })
const jsonText = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v))
// Any code point, and now and then an unpaired surrogate (JSON.stringify writes it as a \udxxx escape).
const unit = fc.oneof(
  { arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }), weight: 9 },
  { arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), weight: 1 },
)
const anyJson = fc.jsonValue({ maxDepth: 3, stringUnit: unit })
const ENVELOPE_KEYS = [
  "v",
  "id",
  "type",
  "time",
  "source",
  "session",
  "causation",
  "correlation",
  "trace",
  "data",
  "blobs",
  "kid",
  "sig",
]

/** Mutations of a valid signed event's bytes. */
const byteMutation = fc.oneof(
  // Flip 1..8 random bits.
  fc.record({
    kind: fc.constant("flip" as const),
    seed: seedIndex,
    at: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }),
  }),
  // Truncate to a random length.
  fc.record({ kind: fc.constant("truncate" as const), seed: seedIndex, at: fc.nat() }),
  // Insert random bytes at a random position.
  fc.record({
    kind: fc.constant("insert" as const),
    seed: seedIndex,
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  // Insert JSON-ish punctuation and whitespace, which keeps more of the mutants parseable.
  fc.record({
    kind: fc.constant("insert" as const),
    seed: seedIndex,
    at: fc.nat(),
    bytes: fc
      .constantFrom(
        " ",
        "\n",
        ",",
        '"',
        "{",
        "}",
        "[",
        "]",
        ":",
        "\\",
        "\\u0000",
        "\\ud800",
        "0",
        "-",
        "e9",
        "e999",
        "1e400",
      )
      .map((s) => utf8.encode(s)),
  }),
  // Delete a random slice.
  fc.record({
    kind: fc.constant("delete" as const),
    seed: seedIndex,
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 16 }),
  }),
  // Overwrite one byte with a random value.
  fc.record({
    kind: fc.constant("set" as const),
    seed: seedIndex,
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
  }),
)

type ByteMutation = typeof byteMutation extends fc.Arbitrary<infer M> ? M : never
const applyBytes = (m: ByteMutation): Uint8Array => {
  const src = SEED_BYTES[m.seed] as Uint8Array
  const out = Uint8Array.from(src)
  switch (m.kind) {
    case "flip":
      for (const [pos, bit] of m.at) {
        const i = pos % out.length
        out[i] = (out[i] as number) ^ (1 << bit)
      }
      return out
    case "truncate":
      return src.subarray(0, m.at % src.length)
    case "insert": {
      const i = m.at % (src.length + 1)
      return Buffer.concat([src.subarray(0, i), m.bytes, src.subarray(i)])
    }
    case "delete": {
      const i = m.at % src.length
      return Buffer.concat([src.subarray(0, i), src.subarray(i + m.len)])
    }
    case "set":
      out[m.at % out.length] = m.value
      return out
  }
}

/** Structural mutations: replace, delete or add fields of the parsed event (top level or in `data`). */
const fieldMutation = fc.record({
  seed: seedIndex,
  edits: fc.array(
    fc.record({
      where: fc.constantFrom("top", "data", "blobs"),
      key: fc.oneof(
        fc.constantFrom(...ENVELOPE_KEYS, "tool", "args", "step", "prompt", "__proto__", "constructor"),
        fc.string({ unit, maxLength: 6 }),
      ),
      value: fc.option(anyJson, { nil: undefined }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
})

describe("verifyEvent never throws (fuzz)", () => {
  it("the seed events themselves verify", () => {
    for (const b of SEED_BYTES) expect(check(b).ok).toBe(true)
  })

  it("random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), (bytes) => {
        expect(check(bytes).ok).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })

  it("random JSON values and JSON texts", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          jsonText,
          anyJson.map((v) => JSON.stringify(v)),
        ),
        (text) => {
          expect(check(utf8.encode(text)).ok).toBe(false)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it("random objects with the envelope's keys", () => {
    const envelopeLike = fc.record(
      Object.fromEntries(
        ENVELOPE_KEYS.map((k) => [
          k,
          fc.oneof(
            anyJson,
            fc.constantFrom(
              ...(SEEDS.map((e) => (e as unknown as Record<string, unknown>)[k]).filter(
                (x) => x !== undefined,
              ) as fc.JsonValue[]),
            ),
          ),
        ]),
      ),
      { requiredKeys: [] },
    )
    fc.assert(
      fc.property(envelopeLike, (o) => {
        check(utf8.encode(JSON.stringify(o)))
      }),
      { numRuns: 4000 },
    )
  })

  it("byte-level mutations of valid signed events: flips, truncations, insertions, deletions", () => {
    fc.assert(
      fc.property(byteMutation, (m) => {
        check(applyBytes(m))
      }),
      { numRuns: 6000 },
    )
  })

  it("canonical bytes of accepted events: nested sig/source keys and look-alike text, any wire key order", () => {
    const tricky = fc.oneof(
      fc.constantFrom(',"source":"', '","sig":"x', "source", "sig", ',"source":"ops"'),
      fc.string({ maxLength: 20 }),
    )
    const argsArb = fc.dictionary(
      fc.oneof(fc.constantFrom("sig", "source", "session", "v", "type"), fc.string({ maxLength: 8 })),
      fc.oneof(tricky, fc.jsonValue({ maxDepth: 3 }), fc.dictionary(fc.constantFrom("sig", "source"), tricky)),
      { maxKeys: 6 },
    )
    fc.assert(
      fc.property(argsArb, tricky, fc.boolean(), (args, reason, shuffle) => {
        const { event, bytes } = signEventEncoded(inference, {
          ...base,
          type: "intent.proposed",
          id: newEventId(T0_MS),
          data: { tool: "fs.read", args: args as EventData<"intent.proposed">["args"], reason, step: 1 },
        })
        // What a publisher sends (spliced from the signed bytes) is the canonical form too.
        expect(Buffer.from(bytes).equals(Buffer.from(encodeEvent(event)))).toBe(true)
        const wire = shuffle
          ? JSON.stringify(Object.fromEntries(Object.entries(event).reverse()), null, 1)
          : Buffer.from(encodeEvent(event)).toString()
        const r = verifyEvent(utf8.encode(wire), opts)
        if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`)
        expect(Buffer.from(r.canonical).equals(Buffer.from(encodeEvent(event)))).toBe(true)
      }),
      { numRuns: 1500 },
    )
  })

  it("signEventEncoded falls back to a full encoding for drafts outside the envelope's shapes", () => {
    for (const odd of [
      { time: "yesterday" },
      { trace: ',"source":"x' },
      { time: '2025-06-01T12:00:00.000Z,"source":"' },
    ]) {
      const { event, bytes } = signEventEncoded(inference, {
        ...base,
        ...odd,
        type: "intent.proposed",
        data: { tool: "fs.read", args: { source: ',"source":"' }, reason: "r", step: 0 },
      })
      expect(Buffer.from(bytes).equals(Buffer.from(encodeEvent(event)))).toBe(true)
    }
  })

  it("field-level mutations of valid signed events: random JSON in place of fields, deleted and added fields", () => {
    fc.assert(
      fc.property(fieldMutation, ({ seed, edits }) => {
        const o = JSON.parse(Buffer.from(SEED_BYTES[seed] as Uint8Array).toString()) as Record<string, unknown>
        for (const { where, key, value } of edits) {
          let target: Record<string, unknown> = o
          if (where !== "top") {
            const inner = o[where]
            if (typeof inner !== "object" || inner === null || Array.isArray(inner)) continue
            target = inner as Record<string, unknown>
          }
          if (value === undefined) delete target[key]
          else Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
        }
        check(utf8.encode(JSON.stringify(o)))
      }),
      { numRuns: 4000 },
    )
  })
})
