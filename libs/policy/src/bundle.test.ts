import { fileURLToPath } from "node:url"
import { keyIdOf, nobleEd25519, nodeEd25519 } from "@vigil/crypto"
import { canonicalJson } from "@vigil/events"
import { describe, expect, it } from "vitest"
import {
  bundleSigningBytes,
  packBundle,
  type SignedBundle,
  signBundle,
  verifyBundle,
  verifyBundleSignature,
} from "./bundle.ts"
import { bundleDigest } from "./contents.ts"

const POLICIES = fileURLToPath(new URL("../../../policies", import.meta.url))
const ROOT = new Uint8Array(32).fill(7)
const ROOT_PUB = nodeEd25519.publicKey(ROOT)
const OTHER = new Uint8Array(32).fill(9)

const signed = (role: string | null = null, version = 1): SignedBundle =>
  signBundle(ROOT, packBundle(POLICIES, role), version)
const resign = (b: Omit<SignedBundle, "sig" | "rootKid" | "digest">, seed = ROOT): SignedBundle =>
  signBundle(
    seed,
    { v: b.v, role: b.role, schema: b.schema, policies: b.policies, dataClasses: b.dataClasses },
    b.version,
  )
/** Sign an arbitrary body with the root key, as a root holder with a hand-made (or an old) document would. */
const signRaw = (body: object): object => ({
  ...body,
  sig: Buffer.from(nodeEd25519.sign(bundleSigningBytes(body), ROOT)).toString("base64url"),
})

describe("signed policy bundles", () => {
  it("round-trips through JSON: signature, digest and a working engine", () => {
    for (const role of [null, "business", "engineering-canary"]) {
      const b = signed(role)
      expect(b.rootKid).toBe(keyIdOf(ROOT_PUB))
      expect(b.digest).toBe(bundleDigest(packBundle(POLICIES, role)))
      const v = verifyBundle(ROOT_PUB, JSON.parse(JSON.stringify(b)))
      if (!v.ok) throw new Error(v.detail)
      expect(v.digest).toBe(b.digest)
      expect(v.engine.digest).toBe(b.digest)
      expect(v.engine.role).toBe(role)
      const d = v.engine.decideIntent(
        { tool: "shell.exec", args: { cmd: "ls" } },
        { grantedFolders: [], role: "staff", device: { id: "d", managed: true, os: "linux" } },
      )
      expect(d).toMatchObject({ effect: "deny", rules: ["no-shell"], bundle: b.digest })
    }
  })

  it("signs the domain-separated canonical body, and noble and node:crypto agree", () => {
    const b = signed()
    const { sig, ...body } = b
    const bytes = bundleSigningBytes(body)
    expect(Buffer.from(bytes).toString("utf8")).toBe(`vigil/policy-bundle/v1\n${canonicalJson(body)}`)
    expect(nobleEd25519.verify(Buffer.from(sig, "base64url"), bytes, ROOT_PUB)).toBe(true)
    expect(verifyBundle(ROOT_PUB, b, nobleEd25519).ok).toBe(true)
    expect(signBundle(ROOT, packBundle(POLICIES), 1, nobleEd25519).sig).toBe(sig)
  })

  it("refuses a changed policy, a changed data-class rule or a changed role (bad_signature)", () => {
    const b = signed()
    const tampered: ReadonlyArray<SignedBundle> = [
      {
        ...b,
        policies: {
          ...b.policies,
          "default/00-boundaries.cedar": (b.policies["default/00-boundaries.cedar"] as string).replace(
            'forbid (principal, action == Action::"shell.exec", resource);',
            'forbid (principal, action == Action::"shell.exec", resource) when { false };',
          ),
        },
      },
      { ...b, dataClasses: { ...(b.dataClasses as object), default: "public" } },
      { ...b, role: "business" },
      { ...b, sig: `${b.sig.slice(0, 10)}${b.sig[10] === "A" ? "B" : "A"}${b.sig.slice(11)}` },
    ]
    for (const t of tampered) {
      const v = verifyBundle(ROOT_PUB, t)
      expect(v.ok).toBe(false)
      if (!v.ok) expect(v.reason).toBe("bad_signature")
    }
  })

  it("refuses a bundle signed by another root (bad_signature)", () => {
    const v = verifyBundle(ROOT_PUB, resign(signed(), OTHER))
    expect(v).toMatchObject({ ok: false, reason: "bad_signature" })
    if (!v.ok) expect(v.detail).toMatch(/signed by root/)
    const forged = { ...resign(signed(), OTHER), rootKid: keyIdOf(ROOT_PUB) }
    expect(verifyBundle(ROOT_PUB, forged)).toMatchObject({ ok: false, reason: "bad_signature" })
  })

  it("refuses a malformed document (schema)", () => {
    const b = signed()
    for (const bad of [
      null,
      "bundle",
      { ...b, sig: "not-base64" },
      { ...b, extra: true },
      { ...b, v: 2 },
      { ...b, policies: { "/etc/passwd": "x" } },
    ]) {
      expect(verifyBundle(ROOT_PUB, bad)).toMatchObject({ ok: false, reason: "schema" })
    }
  })

  it("refuses a signed digest that does not match the contents (schema)", () => {
    const b = signed()
    const { sig: _sig, ...body } = { ...b, digest: "0".repeat(64) }
    const sig = Buffer.from(nodeEd25519.sign(bundleSigningBytes(body), ROOT)).toString("base64url")
    expect(verifyBundle(ROOT_PUB, { ...body, sig })).toMatchObject({ ok: false, reason: "schema" })
  })

  it("a correctly signed bundle is still checked: schema, parse and validation", () => {
    const b = signed()
    const badSchema = resign({ ...b, schema: `${b.schema}\nentity Broken {` })
    expect(verifyBundle(ROOT_PUB, badSchema)).toMatchObject({ ok: false, reason: "schema" })

    const badClasses = resign({ ...b, dataClasses: { v: 1, default: "internal", rules: [{ id: "x", class: "top" }] } })
    expect(verifyBundle(ROOT_PUB, badClasses)).toMatchObject({ ok: false, reason: "schema" })

    const badSyntax = resign({
      ...b,
      policies: { ...b.policies, "default/99-x.cedar": `@id("x")\n@reason("r")\npermit (principal, action resource);` },
    })
    expect(verifyBundle(ROOT_PUB, badSyntax)).toMatchObject({ ok: false, reason: "parse" })

    const invalid = resign({
      ...b,
      policies: {
        ...b.policies,
        "default/99-x.cedar": `@id("x")\n@reason("r")\npermit (principal, action == Action::"net.fetch", resource) when { resource.trusted };`,
      },
    })
    const v = verifyBundle(ROOT_PUB, invalid)
    expect(v).toMatchObject({ ok: false, reason: "validation" })
    if (!v.ok) expect(v.errors.join("\n")).toMatch(/default\/99-x\.cedar:3: .*trusted/)
  })

  it("refuses to sign malformed contents", () => {
    expect(() => signBundle(ROOT, { ...packBundle(POLICIES), v: 3 } as never, 1)).toThrow(/invalid bundle contents/)
  })
})

describe("bundle versions", () => {
  it("signs the version: it is in the signed bytes, and a changed version breaks the signature", () => {
    const b = signed(null, 7)
    expect(b.version).toBe(7)
    const { sig: _sig, ...body } = b
    expect(Buffer.from(bundleSigningBytes(body)).toString("utf8")).toContain('"version":7')
    const v = verifyBundle(ROOT_PUB, b)
    expect(v).toMatchObject({ ok: true, version: 7, digest: b.digest })
    for (const version of [6, 8, 1, 1000]) {
      const changed = verifyBundle(ROOT_PUB, { ...b, version })
      expect(changed).toMatchObject({ ok: false, reason: "bad_signature" })
      expect(verifyBundleSignature(ROOT_PUB, { ...b, version })).toMatchObject({ ok: false, reason: "bad_signature" })
    }
  })

  it("names the contents by the same digest whatever the version; the signatures differ", () => {
    const v1 = signed(null, 1)
    const v2 = signed(null, 2)
    expect(v2.digest).toBe(v1.digest)
    expect(v2.sig).not.toBe(v1.sig)
  })

  it("refuses a bundle without a version (signed before versions existed) with a clear error", () => {
    const { version: _version, sig: _sig, ...old } = signed()
    const unversioned = signRaw(old)
    for (const verify of [verifyBundle, verifyBundleSignature]) {
      const v = verify(ROOT_PUB, unversioned)
      expect(v).toMatchObject({ ok: false, reason: "schema" })
      if (!v.ok) expect(v.detail).toMatch(/no version.*vigil policy bundle/)
    }
  })

  it("refuses a version that is not a positive integer, even correctly signed (schema)", () => {
    const { sig: _sig, ...body } = signed()
    for (const version of [0, -1, 1.5, "2", null, Number.MAX_SAFE_INTEGER + 2]) {
      expect(verifyBundle(ROOT_PUB, signRaw({ ...body, version }))).toMatchObject({ ok: false, reason: "schema" })
    }
  })

  it("refuses to sign a version that is not a positive integer", () => {
    for (const version of [0, -3, 2.5, Number.NaN]) {
      expect(() => signBundle(ROOT, packBundle(POLICIES), version)).toThrow(/invalid bundle version/)
    }
  })

  it("checks the signature without compiling: a root-signed bundle with a broken policy passes only that check", () => {
    const b = signed(null, 3)
    const broken = resign({
      ...b,
      policies: { ...b.policies, "default/99-x.cedar": `@id("x")\n@reason("r")\npermit (principal, action resource);` },
    })
    expect(verifyBundleSignature(ROOT_PUB, broken)).toMatchObject({ ok: true, version: 3 })
    expect(verifyBundle(ROOT_PUB, broken)).toMatchObject({ ok: false, reason: "parse" })
  })
})
