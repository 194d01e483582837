import { fastEd25519, keyIdOf, randomSeed } from "@vigil/crypto"
import {
  type KeyLookup,
  type KeyResolver,
  type Principal,
  type SigningKey,
  signingBytes,
  type TrustedKey,
} from "@vigil/events"
import { describe, expect, it } from "vitest"
import {
  type DeadLetter,
  deadLetterRecord,
  deadLetterSigningBytes,
  MAX_DLQ_PAYLOAD,
  signDeadLetter,
  type UnsignedDeadLetter,
  verifyDeadLetter,
} from "./dlq.ts"

const HOUR = 3_600_000
const NOW = Date.now()

const keyOf = (principal: Principal): SigningKey => {
  const seed = randomSeed()
  const publicKey = fastEd25519.publicKey(seed)
  return { principal, kid: keyIdOf(publicKey), seed, publicKey }
}
const dlp = keyOf("dlp")
const policy = keyOf("policy")

/** dlp's key valid from an hour ago until an hour from now; policy's open-ended. */
const trusted = (k: SigningKey, notAfter = Number.POSITIVE_INFINITY): TrustedKey => ({
  kid: k.kid,
  principal: k.principal,
  publicKey: k.publicKey,
  types: new Set(),
  notBefore: NOW - HOUR,
  notAfter,
  manifestVersion: 1,
})
const byKid = new Map([trusted(dlp, NOW + HOUR), trusted(policy)].map((k) => [k.kid, k]))
const resolver: KeyResolver = {
  resolve: (kid, atMs): KeyLookup => {
    const key = byKid.get(kid)
    if (key === undefined) return { ok: false, reason: "unknown_key", detail: `no key ${kid}` }
    if (atMs < key.notBefore) return { ok: false, reason: "key_not_yet_valid", detail: `${kid} not yet valid`, key }
    if (atMs >= key.notAfter) return { ok: false, reason: "key_expired", detail: `${kid} expired`, key }
    return { ok: true, key }
  },
}

const recordOf = (payload: Uint8Array, detail = "signature does not verify"): UnsignedDeadLetter =>
  deadLetterRecord(
    {
      service: "dlp",
      reason: "bad_signature",
      detail,
      subject: "vigil.ev.s1.task.submitted",
      stream: "VIGIL_EVENTS",
      durable: "dlp__task_submitted",
      streamSeq: 7,
      deliveryCount: 1,
      storedAt: new Date(NOW).toISOString(),
      eventId: "01JZ0000000000000000000000",
      type: "task.submitted",
    },
    payload,
  )

const reasonOf = (r: unknown, opts?: Parameters<typeof verifyDeadLetter>[2]) => {
  const v = verifyDeadLetter(r, resolver, opts)
  return v.ok ? "ok" : v.reason
}

describe("signed dead letters", () => {
  const payload = new TextEncoder().encode('{"v":1,"id":"not really an event"}')

  it("a record signed by the refusing service's key verifies, through JSON and back", () => {
    const signed = signDeadLetter(dlp, recordOf(payload))
    expect(signed).toMatchObject({ v: 2, kid: dlp.kid, payloadTruncated: false, payloadBytes: payload.length })
    const v = verifyDeadLetter(JSON.parse(JSON.stringify(signed)), resolver, { subject: "vigil.dlq.dlp" })
    expect(v).toMatchObject({ ok: true, key: { kid: dlp.kid, principal: "dlp" } })
  })

  it("the signature is domain-separated: it is over the dead-letter context, never an event's", () => {
    const signed = signDeadLetter(dlp, recordOf(payload))
    const { sig, ...unsigned } = signed
    const sigBytes = Buffer.from(sig, "base64url")
    expect(fastEd25519.verify(sigBytes, deadLetterSigningBytes(unsigned), dlp.publicKey)).toBe(true)
    expect(fastEd25519.verify(sigBytes, signingBytes(unsigned), dlp.publicKey)).toBe(false)
  })

  it("a detail cut in the middle of a surrogate pair is still signable", () => {
    const cut = `${"x".repeat(10)}😀`.slice(0, 11) // ends in a lone high surrogate
    const signed = signDeadLetter(dlp, recordOf(payload, cut))
    expect(signed.detail.isWellFormed()).toBe(true)
    expect(reasonOf(JSON.parse(JSON.stringify(signed)))).toBe("ok")
  })

  it("a truncated payload keeps the whole message's hash, and its length is checked", () => {
    const big = new Uint8Array(MAX_DLQ_PAYLOAD + 1000).fill(0x61)
    const unsigned = recordOf(big)
    expect(unsigned).toMatchObject({ payloadTruncated: true, payloadBytes: big.length })
    expect(Buffer.from(unsigned.payload, "base64").length).toBe(MAX_DLQ_PAYLOAD)
    expect(reasonOf(signDeadLetter(dlp, unsigned))).toBe("ok")
    // Signed by dlp, but claiming a cut for a message that fits, or carrying a shorter cut.
    expect(reasonOf(signDeadLetter(dlp, { ...unsigned, payloadBytes: MAX_DLQ_PAYLOAD }))).toBe("payload_mismatch")
    const short = Buffer.from(big.subarray(0, 10)).toString("base64")
    expect(reasonOf(signDeadLetter(dlp, { ...unsigned, payload: short }))).toBe("payload_mismatch")
  })

  it("an untruncated payload must have the recorded length and hash", () => {
    const unsigned = recordOf(payload)
    const other = Buffer.from("something else").toString("base64")
    expect(reasonOf(signDeadLetter(dlp, { ...unsigned, payload: other }))).toBe("payload_mismatch")
    expect(reasonOf(signDeadLetter(dlp, { ...unsigned, payloadBytes: payload.length + 1 }))).toBe("payload_mismatch")
  })

  it("refuses tampering, another principal's key, a key outside its window, junk", () => {
    const signed = signDeadLetter(dlp, recordOf(payload))
    expect(reasonOf({ ...signed, reason: "replayed" })).toBe("bad_signature")
    expect(reasonOf({ ...signed, payloadSha256: "0".repeat(64) })).toBe("bad_signature")
    expect(reasonOf({ ...signed, kid: policy.kid })).toBe("bad_signature")
    expect(reasonOf(signDeadLetter(policy, recordOf(payload)))).toBe("wrong_principal")
    expect(reasonOf(signDeadLetter(keyOf("dlp"), recordOf(payload)))).toBe("unknown_key")
    expect(reasonOf(signed, { subject: "vigil.dlq.policy" })).toBe("subject_mismatch")
    // The key must be dlp's when the record was made, and when VIGIL_DLQ stored it.
    const late = signDeadLetter(dlp, { ...recordOf(payload), deadLetteredAt: new Date(NOW + 2 * HOUR).toISOString() })
    expect(reasonOf(late)).toBe("key_expired")
    expect(reasonOf(signed, { storedAt: NOW + 2 * HOUR })).toBe("key_expired")
    expect(reasonOf(signed, { storedAt: NOW + 1000 })).toBe("ok")
    // Unsigned, malformed, not an object.
    const { kid: _k, sig: _s, ...bare } = signed
    expect(reasonOf(bare)).toBe("unsigned")
    expect(reasonOf({})).toBe("unsigned")
    expect(reasonOf({ ...signed, extra: 1 })).toBe("malformed")
    expect(reasonOf({ ...signed, v: 1 })).toBe("malformed")
    expect(reasonOf({ ...signed, detail: "\ud800" } satisfies DeadLetter)).toBe("malformed")
    expect(reasonOf([signed])).toBe("malformed")
    expect(reasonOf(null)).toBe("malformed")
  })
})
