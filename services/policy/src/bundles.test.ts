import { fileURLToPath } from "node:url"
import { nodeEd25519 } from "@vigil/crypto"
import { bundleSigningBytes, packBundle, type SignedBundle, signBundle } from "@vigil/policy"
import { describe, expect, it } from "vitest"
import { BundleHolder, type StoredRevision } from "./bundles.ts"

const POLICIES = fileURLToPath(new URL("../../../policies", import.meta.url))
const ROOT = new Uint8Array(32).fill(7)
const ROOT_PUB = nodeEd25519.publicKey(ROOT)

const contents = { default: packBundle(POLICIES, null), business: packBundle(POLICIES, "business") }
const sign = (version: number, which: keyof typeof contents = "default"): SignedBundle =>
  signBundle(ROOT, contents[which], version)
/** A bundle signed by this root before versions existed. */
const unversioned = (): object => {
  const { version: _v, sig: _s, ...body } = sign(1)
  return { ...body, sig: Buffer.from(nodeEd25519.sign(bundleSigningBytes(body), ROOT)).toString("base64url") }
}
/** Root-signed, but a policy does not parse: never taken. */
const broken = (version: number): SignedBundle =>
  signBundle(
    ROOT,
    {
      ...contents.default,
      policies: { ...contents.default.policies, "default/99-x.cedar": `@id("x")\n@reason("r")\npermit (principal;` },
    },
    version,
  )
const revs = (...docs: ReadonlyArray<unknown>): ReadonlyArray<StoredRevision> =>
  docs.map((doc, i) => ({ seq: 10 + i, doc }))

describe("the policy service's bundle holder", () => {
  it("takes higher versions, refuses lower ones and the same version with other contents (rollback)", () => {
    const h = new BundleHolder(ROOT_PUB)
    const v1 = sign(1)
    const v2 = sign(2, "business")
    expect(h.offer(v1)).toMatchObject({ ok: true, version: 1, changed: true })
    expect(h.offer(v2)).toMatchObject({ ok: true, version: 2, digest: v2.digest, changed: true })
    expect(h.offer(v1)).toMatchObject({
      ok: false,
      kind: "rollback",
      offered: { version: 1, digest: v1.digest },
      active: { version: 2, digest: v2.digest },
    })
    const sameVersionOther = sign(2, "default")
    const r = h.offer(sameVersionOther)
    expect(r).toMatchObject({ ok: false, kind: "rollback", offered: { version: 2, digest: v1.digest } })
    if (!r.ok) expect(r.detail).toMatch(/already in force with other contents/)
    expect(h.offer(v2)).toMatchObject({ ok: true, changed: false })
    expect(h.offer({ junk: true })).toMatchObject({ ok: false, kind: "refused", reason: "schema" })
    expect(h.offer(unversioned())).toMatchObject({ ok: false, kind: "refused", reason: "schema" })
    expect(h.active).toEqual({ version: 2, digest: v2.digest })
    // The same contents as a later release are taken (a deliberate return to older policies is a new version).
    expect(h.offer(sign(3, "default"))).toMatchObject({ ok: true, version: 3, digest: v1.digest, changed: true })
  })

  it("at start takes the latest stored bundle when it verifies and nothing outranks it", () => {
    const h = new BundleHolder(ROOT_PUB)
    expect(h.start([])).toEqual({ kind: "empty" })
    expect(h.current).toBeUndefined()
    expect(h.start(revs(sign(1), unversioned(), sign(2, "business")))).toMatchObject({
      kind: "latest",
      seq: 12,
      version: 2,
    })
    expect(h.active?.version).toBe(2)
    // The same bundle stored twice is no rollback.
    expect(new BundleHolder(ROOT_PUB).start(revs(sign(2), sign(2)))).toMatchObject({ kind: "latest", version: 2 })
  })

  it("at start keeps the last good bundle when the latest is junk, deleted, unversioned or does not compile", () => {
    const v2 = sign(2, "business")
    for (const [latest, reason] of [
      [{ malformed: true }, "schema"],
      [undefined, "deleted"],
      [unversioned(), "schema"],
      [{ ...sign(3), sig: sign(4).sig }, "bad_signature"],
      [broken(3), "parse"],
    ] as const) {
      const h = new BundleHolder(ROOT_PUB)
      const out = h.start(revs(sign(1), v2, latest))
      expect(out).toMatchObject({ kind: "kept", seq: 11, version: 2, digest: v2.digest, latest: { seq: 12, reason } })
      expect(h.active).toEqual({ version: 2, digest: v2.digest })
    }
  })

  it("at start refuses a replayed older bundle stored as the latest, and keeps the highest version (rollback)", () => {
    const v1 = sign(1)
    const v2 = sign(2, "business")
    const h = new BundleHolder(ROOT_PUB)
    expect(h.start(revs(v1, v2, v1))).toMatchObject({
      kind: "kept",
      seq: 11,
      version: 2,
      latest: { kind: "rollback", seq: 12, offered: { version: 1, digest: v1.digest }, active: { version: 2 } },
    })
    // Two different bundles signed as the same version: the first one stored is the one a running service took.
    const h2 = new BundleHolder(ROOT_PUB)
    expect(h2.start(revs(v1, sign(2, "default"), v2))).toMatchObject({
      kind: "kept",
      seq: 11,
      digest: v1.digest,
      latest: { kind: "rollback", offered: { version: 2, digest: v2.digest } },
    })
  })

  it("at start fails closed when nothing stored verifies", () => {
    const h = new BundleHolder(ROOT_PUB)
    expect(h.start(revs(unversioned(), { malformed: true }))).toMatchObject({
      kind: "none-good",
      latest: { seq: 11, reason: "schema" },
    })
    expect(h.current).toBeUndefined()
    expect(h.version).toBeUndefined()
    expect(new BundleHolder(ROOT_PUB).start(revs(broken(5)))).toMatchObject({
      kind: "none-good",
      latest: { seq: 10, reason: "parse" },
    })
  })
})
