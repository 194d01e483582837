import { createHash } from "node:crypto"
import { keyIdOf, nobleEd25519, nodeEd25519 } from "@vigil/crypto"
import { canonicalBytes, EVENT_TYPES, PRINCIPALS, typesProducedBy } from "@vigil/events"
import { describe, expect, it } from "vitest"
import {
  buildManifest,
  type Manifest,
  manifestDigest,
  manifestSigningBytes,
  rotateKey,
  signManifest,
  verifyManifest,
} from "./manifest.ts"

const seed = (byte: number) => new Uint8Array(32).fill(byte)
const pub = (byte: number) => nodeEd25519.publicKey(seed(byte))
const ROOT = seed(200)
const ROOT_PUB = nodeEd25519.publicKey(ROOT)
const T0 = "2025-01-01T00:00:00.000Z"
const T1 = "2025-02-01T00:00:00.000Z"

const v1 = (): Manifest =>
  signManifest(
    ROOT,
    buildManifest({
      deployment: "local",
      version: 1,
      issuedAt: T0,
      prev: null,
      keys: PRINCIPALS.map((principal, i) => ({ principal, publicKey: pub(i + 1) })),
    }),
  )

type Edit = (raw: Record<string, unknown> & { keys: Array<Record<string, unknown>> }) => unknown

/** A copy of a manifest as it would arrive from JSON, with `edit` applied. */
const tampered = (m: Manifest, edit: Edit): unknown => {
  const raw = JSON.parse(JSON.stringify(m))
  edit(raw)
  return raw
}

describe("buildManifest", () => {
  it("grants each principal its catalog types by default, valid from issuedAt, open-ended", () => {
    const m = v1()
    expect(m.keys).toHaveLength(PRINCIPALS.length)
    for (const [i, k] of m.keys.entries()) {
      expect(k.principal).toBe(PRINCIPALS[i])
      expect(k.types).toEqual(typesProducedBy(PRINCIPALS[i] as (typeof PRINCIPALS)[number]))
      expect(k.kid).toBe(keyIdOf(pub(i + 1)))
      expect(Buffer.from(k.publicKey, "base64url")).toEqual(Buffer.from(pub(i + 1)))
      expect(k.notBefore).toBe(T0)
      expect(k.notAfter).toBeNull()
    }
    expect(m.rootKid).toBe(keyIdOf(ROOT_PUB))
  })

  it("takes explicit types and windows, and refuses types outside the catalog", () => {
    const m = buildManifest({
      deployment: "d",
      version: 1,
      issuedAt: T0,
      prev: null,
      keys: [{ principal: "ops", publicKey: pub(1), types: ["containment.ordered"], notBefore: T1, notAfter: null }],
    })
    expect(m.keys[0]).toMatchObject({ types: ["containment.ordered"], notBefore: T1, notAfter: null })
    expect(() =>
      buildManifest({
        deployment: "d",
        version: 1,
        issuedAt: T0,
        prev: null,
        keys: [{ principal: "ops", publicKey: pub(1), types: ["no.such" as "alert.raised"] }],
      }),
    ).toThrow(/not an event type/)
    expect(() =>
      buildManifest({
        deployment: "d",
        version: 1,
        issuedAt: T0,
        prev: null,
        keys: [{ principal: "ops", publicKey: new Uint8Array(31) }],
      }),
    ).toThrow(/32 bytes/)
  })
})

describe("signManifest / verifyManifest", () => {
  it("round-trips, through JSON, and with both Ed25519 implementations", () => {
    const m = v1()
    expect(verifyManifest(ROOT_PUB, m)).toEqual({ ok: true, manifest: m })
    expect(verifyManifest(ROOT_PUB, JSON.parse(JSON.stringify(m))).ok).toBe(true)
    expect(verifyManifest(ROOT_PUB, m, nobleEd25519).ok).toBe(true)
    const byNoble = signManifest(ROOT, buildManifest({ ...m, keys: [] }), nobleEd25519)
    expect(byNoble).toEqual(signManifest(ROOT, buildManifest({ ...m, keys: [] })))
    expect(verifyManifest(ROOT_PUB, byNoble).ok).toBe(true)
  })

  it("signs the domain-separated canonical manifest without sig", () => {
    const m = v1()
    const { sig, ...body } = m
    const bytes = manifestSigningBytes(body)
    expect(new TextDecoder().decode(bytes.subarray(0, 18))).toBe("vigil/manifest/v1\n")
    expect(bytes.subarray(18)).toEqual(canonicalBytes(body))
    expect(nodeEd25519.verify(Buffer.from(sig, "base64url"), bytes, ROOT_PUB)).toBe(true)
  })

  it.each<[string, Edit]>([
    ["deployment", (r) => (r.deployment = "other")],
    ["version", (r) => (r.version = 3)],
    ["issuedAt", (r) => (r.issuedAt = "2025-03-01T00:00:00.000Z")],
    ["prev", (r) => (r.prev = "0".repeat(64))],
    ["a key's types", (r) => ((r.keys[0] as Record<string, unknown>).types = EVENT_TYPES)],
    ["a key's notAfter", (r) => ((r.keys[1] as Record<string, unknown>).notAfter = T1)],
    ["a key's notBefore", (r) => ((r.keys[1] as Record<string, unknown>).notBefore = T1)],
    ["a key's principal", (r) => ((r.keys[1] as Record<string, unknown>).principal = "ops")],
    ["the key list", (r) => r.keys.pop()],
  ])("tampering with %s → bad_signature", (_what, edit) => {
    const m2 = signManifest(ROOT, rotateKey(v1(), "gateway", pub(50), T1))
    expect(verifyManifest(ROOT_PUB, m2).ok).toBe(true)
    expect(verifyManifest(ROOT_PUB, tampered(m2, edit))).toMatchObject({ ok: false, reason: "bad_signature" })
  })

  it("a manifest under another root is refused as wrong_root; a forged rootKid as bad_signature", () => {
    const m = v1()
    const other = nodeEd25519.publicKey(seed(201))
    expect(verifyManifest(other, m)).toMatchObject({ ok: false, reason: "wrong_root" })
    const forged = tampered(m, (r) => (r.rootKid = keyIdOf(other)))
    expect(verifyManifest(other, forged)).toMatchObject({ ok: false, reason: "bad_signature" })
  })

  it.each<[string, Edit]>([
    ["an extra property", (r) => (r.extra = 1)],
    ["an extra key property", (r) => ((r.keys[0] as Record<string, unknown>).note = "x")],
    ["v 2", (r) => (r.v = 2)],
    ["version 0", (r) => (r.version = 0)],
    ["a fractional version", (r) => (r.version = 1.5)],
    ["prev on version 1", (r) => (r.prev = "0".repeat(64))],
    ["an impossible date", (r) => (r.issuedAt = "2025-02-30T00:00:00.000Z")],
    ["a date without milliseconds", (r) => (r.issuedAt = "2025-01-01T00:00:00Z")],
    ["an unknown principal", (r) => ((r.keys[0] as Record<string, unknown>).principal = "mallory")],
    ["a kid that is not the public key's", (r) => ((r.keys[0] as Record<string, unknown>).kid = "0".repeat(16))],
    [
      "a non-canonical public key spelling",
      (r) => {
        const k = r.keys[0] as Record<string, unknown>
        const s = k.publicKey as string
        k.publicKey = s.slice(0, -1) + String.fromCharCode(s.charCodeAt(42) + 1)
      },
    ],
    [
      "a 31-byte public key",
      (r) => ((r.keys[0] as Record<string, unknown>).publicKey = Buffer.alloc(31).toString("base64url")),
    ],
    [
      "notAfter before notBefore",
      (r) => ((r.keys[0] as Record<string, unknown>).notAfter = "2024-01-01T00:00:00.000Z"),
    ],
    ["notAfter equal to notBefore", (r) => ((r.keys[0] as Record<string, unknown>).notAfter = T0)],
    ["a duplicate key", (r) => r.keys.push(r.keys[0] as Record<string, unknown>)],
    ["a malformed signature", (r) => (r.sig = "abc")],
    ["a missing sig", (r) => delete r.sig],
    ["a bad type name", (r) => ((r.keys[0] as Record<string, unknown>).types = ["Not A Type"])],
  ])("schema: %s", (_what, edit) => {
    const verdict = verifyManifest(ROOT_PUB, tampered(v1(), edit))
    expect(verdict).toMatchObject({ ok: false, reason: "schema" })
  })

  it("schema: not an object, and the root key granted as a signing key", () => {
    for (const input of [null, 42, "manifest", [], {}]) {
      expect(verifyManifest(ROOT_PUB, input)).toMatchObject({ ok: false, reason: "schema" })
    }
    const unsigned = buildManifest({
      deployment: "d",
      version: 1,
      issuedAt: T0,
      prev: null,
      keys: [{ principal: "ops", publicKey: ROOT_PUB }],
    })
    expect(() => signManifest(ROOT, unsigned)).toThrow(/root key may not sign events/)
  })

  it("accepts types a newer catalog may add (they grant nothing here)", () => {
    const unsigned = buildManifest({
      deployment: "d",
      version: 1,
      issuedAt: T0,
      prev: null,
      keys: [{ principal: "ops", publicKey: pub(1) }],
    })
    const m = signManifest(ROOT, {
      ...unsigned,
      keys: [{ ...(unsigned.keys[0] as Manifest["keys"][number]), types: ["future.thing"] }],
    })
    expect(verifyManifest(ROOT_PUB, m).ok).toBe(true)
  })

  it("never signs an invalid manifest", () => {
    const unsigned = buildManifest({ deployment: "not a token", version: 1, issuedAt: T0, prev: null, keys: [] })
    expect(() => signManifest(ROOT, unsigned)).toThrow(TypeError)
    expect(() => signManifest(ROOT, { ...unsigned, deployment: "d", prev: "0".repeat(64) })).toThrow(/prev/)
  })
})

describe("manifestDigest", () => {
  it("is SHA-256 of the canonical bytes, whatever the key order of the JSON it came from", () => {
    const m = v1()
    const expected = createHash("sha256").update(canonicalBytes(m)).digest("hex")
    expect(manifestDigest(m)).toBe(expected)
    const reordered = JSON.parse(JSON.stringify(m, Object.keys(m).reverse())) as Manifest
    expect(manifestDigest({ ...reordered, keys: m.keys })).toBe(expected)
  })
})

describe("rotateKey", () => {
  it("retires the principal's key at `at`, adds the new one from `at`, carries everything else", () => {
    const m1 = v1()
    const next = rotateKey(m1, "gateway", pub(50), T1)
    expect(next).toMatchObject({ v: 1, deployment: "local", version: 2, issuedAt: T1, prev: manifestDigest(m1) })
    const gateway = m1.keys.find((k) => k.principal === "gateway")
    expect(next.keys).toHaveLength(m1.keys.length + 1)
    expect(next.keys.find((k) => k.kid === gateway?.kid)).toEqual({ ...gateway, notAfter: T1 })
    expect(next.keys.at(-1)).toEqual({
      kid: keyIdOf(pub(50)),
      principal: "gateway",
      publicKey: Buffer.from(pub(50)).toString("base64url"),
      types: gateway?.types,
      notBefore: T1,
      notAfter: null,
    })
    for (const k of m1.keys.filter((k) => k.principal !== "gateway")) expect(next.keys).toContainEqual(k)
    expect(verifyManifest(ROOT_PUB, signManifest(ROOT, next)).ok).toBe(true)
  })

  it("inherits customised types, and leaves already-retired keys alone", () => {
    const m1 = signManifest(
      ROOT,
      buildManifest({
        deployment: "d",
        version: 1,
        issuedAt: T0,
        prev: null,
        keys: [
          { principal: "auditor", publicKey: pub(1), types: ["checkpoint.signed"] },
          { principal: "auditor", publicKey: pub(2), notAfter: "2025-01-15T00:00:00.000Z" },
        ],
      }),
    )
    const next = rotateKey(m1, "auditor", pub(3), T1)
    expect(next.keys.map((k) => [k.kid, k.notAfter, k.types])).toEqual([
      [keyIdOf(pub(1)), T1, ["checkpoint.signed"]],
      [keyIdOf(pub(2)), "2025-01-15T00:00:00.000Z", typesProducedBy("auditor")],
      [keyIdOf(pub(3)), null, ["checkpoint.signed"]],
    ])
  })

  it("refuses a rotation dated before the previous version, and a key already listed", () => {
    const m1 = v1()
    expect(() => rotateKey(m1, "gateway", pub(50), "2024-12-31T23:59:59.999Z")).toThrow(RangeError)
    expect(() => rotateKey(m1, "gateway", pub(2), T1)).toThrow(/already in manifest/)
  })
})
