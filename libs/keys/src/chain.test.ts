import { keyIdOf, nodeEd25519 } from "@vigil/crypto"
import { type Principal, typesProducedBy } from "@vigil/events"
import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ManifestChain, type ManifestChainError } from "./chain.ts"
import {
  buildManifest,
  type Manifest,
  manifestDigest,
  rotateKey,
  signManifest,
  type UnsignedManifest,
} from "./manifest.ts"

const seed = (n: number) => {
  const s = new Uint8Array(32)
  new DataView(s.buffer).setUint32(0, n + 1)
  return s
}
const pub = (n: number) => nodeEd25519.publicKey(seed(n))
const kid = (n: number) => keyIdOf(pub(n))
const ROOT = seed(10_000)
const ROOT_PUB = nodeEd25519.publicKey(ROOT)
const ms = (iso: string) => Date.parse(iso)
const T0 = "2025-01-01T00:00:00.000Z"
const T1 = "2025-02-01T00:00:00.000Z"
const T2 = "2025-03-01T00:00:00.000Z"

/** v1: gateway = key 1, dlp = key 2; v2: gateway rotated to key 3 at T1; v3: dlp rotated to key 4 at T2. */
const history = (): [Manifest, Manifest, Manifest] => {
  const m1 = signManifest(
    ROOT,
    buildManifest({
      deployment: "local",
      version: 1,
      issuedAt: T0,
      prev: null,
      keys: [
        { principal: "gateway", publicKey: pub(1) },
        { principal: "dlp", publicKey: pub(2) },
      ],
    }),
  )
  const m2 = signManifest(ROOT, rotateKey(m1, "gateway", pub(3), T1))
  const m3 = signManifest(ROOT, rotateKey(m2, "dlp", pub(4), T2))
  return [m1, m2, m3]
}

const chainOf = (manifests: ReadonlyArray<unknown>): ManifestChain => {
  const r = ManifestChain.make(ROOT_PUB, manifests)
  if (Result.isFailure(r)) throw new Error(r.failure.message)
  return r.success
}

const refusal = (manifests: ReadonlyArray<unknown>): ManifestChainError => {
  const r = ManifestChain.make(ROOT_PUB, manifests)
  if (Result.isSuccess(r)) throw new Error("chain was accepted")
  return r.failure
}

const resign = (m: Manifest, edit: (u: UnsignedManifest) => UnsignedManifest): Manifest => signManifest(ROOT, edit(m))

describe("ManifestChain.make", () => {
  it("verifies and links a history; latest is the newest version", () => {
    const chain = chainOf(history())
    expect(chain.latest.version).toBe(3)
    expect(chain.manifests.map((m) => m.version)).toEqual([1, 2, 3])
    expect(chain.rootKid).toBe(keyIdOf(ROOT_PUB))
  })

  it("refuses an empty list", () => {
    expect(refusal([])).toMatchObject({ _tag: "ManifestChainError", reason: "empty" })
  })

  it("refuses a gap in versions, naming the version expected", () => {
    const [m1, , m3] = history()
    expect(refusal([m1, m3])).toMatchObject({ reason: "version_gap", version: 2 })
    expect(refusal([history()[1]])).toMatchObject({ reason: "version_gap", version: 1 })
    expect(refusal([m1, m1])).toMatchObject({ reason: "version_gap", version: 2 })
  })

  it("refuses a version whose prev is not the digest of the one before", () => {
    const [m1, m2] = history()
    const forked = resign(m2, (u) => ({ ...u, prev: "ab".repeat(32) }))
    const e = refusal([m1, forked])
    expect(e).toMatchObject({ reason: "prev_mismatch", version: 2 })
    expect(e.message).toContain("v2")
  })

  it("refuses a bad signature on version 2", () => {
    const [m1, m2, m3] = history()
    const bad = { ...m2, sig: m1.sig }
    expect(refusal([m1, bad, m3])).toMatchObject({ reason: "bad_signature", version: 2 })
  })

  it("refuses a version signed by another root", () => {
    const [m1, m2] = history()
    const other = signManifest(seed(10_001), m2)
    expect(refusal([m1, other])).toMatchObject({ reason: "wrong_root", version: 2 })
  })

  it("refuses a schema-invalid version", () => {
    const [m1, m2] = history()
    expect(refusal([m1, { ...m2, extra: true }])).toMatchObject({ reason: "schema", version: 2 })
    expect(refusal([m1, "not a manifest"])).toMatchObject({ reason: "schema", version: 2 })
  })

  it("refuses a version issued before its predecessor, or for another deployment", () => {
    const [m1, m2] = history()
    const early = resign(m2, (u) => ({ ...u, issuedAt: "2024-12-31T00:00:00.000Z" }))
    expect(refusal([m1, early])).toMatchObject({ reason: "time_regression", version: 2 })
    const elsewhere = resign(m2, (u) => ({ ...u, deployment: "elsewhere" }))
    expect(refusal([m1, elsewhere])).toMatchObject({ reason: "deployment_mismatch", version: 2 })
  })
})

describe("ManifestChain.append", () => {
  it("adds the next version, accepts redelivery of a held version, refuses a conflicting one", () => {
    const [m1, m2, m3] = history()
    const chain = chainOf([m1])
    expect(Result.isSuccess(chain.append(JSON.parse(JSON.stringify(m2))))).toBe(true)
    expect(chain.latest.version).toBe(2)
    expect(Result.isSuccess(chain.append(m1))).toBe(true)
    expect(Result.isSuccess(chain.append(m2))).toBe(true)
    const other = resign(m2, (u) => ({ ...u, issuedAt: "2025-02-02T00:00:00.000Z" }))
    expect(chain.append(other)).toMatchObject({ failure: { reason: "conflict", version: 2 } })
    expect(chain.append({ ...m3, sig: m2.sig })).toMatchObject({ failure: { reason: "bad_signature", version: 3 } })
    expect(chain.latest.version).toBe(2)
    expect(Result.isSuccess(chain.append(m3))).toBe(true)
    expect(chain.latest.version).toBe(3)
    expect(chain.resolve(kid(4), ms(T2)).ok).toBe(true)
  })
})

describe("ManifestChain.resolve", () => {
  const chain = chainOf(history())

  it("returns the key as the version in force grants it", () => {
    const r = chain.resolve(kid(1), ms(T0) + 1000)
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.key).toEqual({
      kid: kid(1),
      principal: "gateway",
      publicKey: pub(1),
      types: new Set(typesProducedBy("gateway")),
      notBefore: ms(T0),
      notAfter: Number.POSITIVE_INFINITY,
      manifestVersion: 1,
    })
    expect(chain.resolve(kid(1), ms(T0) + 1000)).toBe(r) // allocated once, not per call
  })

  it("before a rotation the old key verifies, after it the new one; the old one is then expired", () => {
    expect(chain.resolve(kid(1), ms(T1) - 1)).toMatchObject({ ok: true, key: { manifestVersion: 1 } })
    expect(chain.resolve(kid(3), ms(T1) - 1)).toMatchObject({
      ok: false,
      reason: "key_not_yet_valid",
      key: { kid: kid(3) },
    })
    expect(chain.resolve(kid(3), ms(T1))).toMatchObject({ ok: true, key: { manifestVersion: 2 } })
    const expired = chain.resolve(kid(1), ms(T1))
    expect(expired).toMatchObject({ ok: false, reason: "key_expired", key: { kid: kid(1), notAfter: ms(T1) } })
    expect(!expired.ok && expired.detail).toContain(T1)
    expect(chain.resolve(kid(1), ms(T2) + 1)).toMatchObject({
      ok: false,
      reason: "key_expired",
      key: { manifestVersion: 3 },
    })
    // dlp's first key is untouched by the gateway rotation
    expect(chain.resolve(kid(2), ms(T1) + 1)).toMatchObject({ ok: true, key: { manifestVersion: 2 } })
  })

  it("before version 1 every key is not yet valid; an unknown kid is unknown at any time", () => {
    expect(chain.resolve(kid(1), ms(T0) - 1)).toMatchObject({
      ok: false,
      reason: "key_not_yet_valid",
      key: { kid: kid(1) },
    })
    expect(chain.resolve(kid(99), ms(T1))).toMatchObject({ ok: false, reason: "unknown_key" })
    expect(chain.resolve(kid(1), Number.NaN)).toMatchObject({ ok: false, reason: "unknown_key" })
  })

  it("a key dropped from a later version is expired from then on, with the last grant returned", () => {
    const [m1] = history()
    const m2 = signManifest(ROOT, { ...m1, version: 2, issuedAt: T1, prev: manifestDigest(m1), keys: m1.keys.slice(1) })
    const c = chainOf([m1, m2])
    expect(c.resolve(kid(1), ms(T1) - 1).ok).toBe(true)
    expect(c.resolve(kid(1), ms(T1))).toMatchObject({ ok: false, reason: "key_expired", key: { manifestVersion: 1 } })
  })

  it("a key not authorised for a type resolves with types that lack it", () => {
    const m = signManifest(
      ROOT,
      buildManifest({
        deployment: "local",
        version: 1,
        issuedAt: T0,
        prev: null,
        keys: [{ principal: "auditor", publicKey: pub(7), types: ["checkpoint.signed"] }],
      }),
    )
    const r = chainOf([m]).resolve(kid(7), ms(T1))
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.key.types.has("checkpoint.signed")).toBe(true)
    expect(r.key.types.has("alert.raised")).toBe(false)
  })
})

describe("property: random rotation sequences", () => {
  const PRINCIPALS_UNDER_TEST: ReadonlyArray<Principal> = ["gateway", "dlp", "policy"]
  const DAY = 86_400_000

  it("every key resolves ok exactly within its window, expired after it, not yet valid before it", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ who: fc.nat(2), dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10 * DAY })) }), {
          maxLength: 8,
        }),
        fc.array(fc.integer({ min: -DAY, max: 100 * DAY }), { maxLength: 8 }),
        (steps, probes) => {
          const start = ms(T0)
          let next = 0
          const windows: Array<{ kid: string; principal: Principal; from: number; to: number }> = []
          const current = new Map<Principal, number>()
          const grants = PRINCIPALS_UNDER_TEST.map((principal) => {
            const n = next++
            current.set(principal, windows.length)
            windows.push({ kid: kid(n), principal, from: start, to: Number.POSITIVE_INFINITY })
            return { principal, publicKey: pub(n) }
          })
          const manifests: Array<Manifest> = [
            signManifest(ROOT, buildManifest({ deployment: "p", version: 1, issuedAt: T0, prev: null, keys: grants })),
          ]
          let t = start
          for (const step of steps) {
            t += step.dt
            const principal = PRINCIPALS_UNDER_TEST[step.who] as Principal
            const n = next++
            const at = new Date(t).toISOString()
            manifests.push(signManifest(ROOT, rotateKey(manifests.at(-1) as Manifest, principal, pub(n), at)))
            const old = windows[current.get(principal) as number]
            if (old !== undefined) old.to = t
            current.set(principal, windows.length)
            windows.push({ kid: kid(n), principal, from: t, to: Number.POSITIVE_INFINITY })
          }
          const chain = chainOf(manifests)
          for (const w of windows) {
            const times = [w.from - 1, w.from, w.to - 1, w.to, ...probes.map((p) => start + p)]
            for (const at of times.filter(Number.isFinite)) {
              const r = chain.resolve(w.kid, at)
              const expected = at < w.from ? "key_not_yet_valid" : at < w.to ? "ok" : "key_expired"
              expect(r.ok ? "ok" : r.reason, `${w.kid} at ${at} in [${w.from}, ${w.to})`).toBe(expected)
              if (r.ok || r.reason !== "unknown_key") {
                const key = (r as { key: { kid: string; principal: string } }).key
                expect(key.kid).toBe(w.kid)
                expect(key.principal).toBe(w.principal)
              }
            }
          }
        },
      ),
      { numRuns: 150 },
    )
  })
})
