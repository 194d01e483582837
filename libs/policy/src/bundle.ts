import { contextBytes, type Ed25519, fastEd25519, KeyId, keyIdOf } from "@vigil/events"
import { Schema } from "effect"
import { BundleContents, bundleContentFields, bundleDigest, loadBundleDir } from "./contents.ts"
import { type BundleRejection, compileBundle, type PolicyEngine } from "./engine.ts"

/**
 * Signed policy bundles: the bundle contents (schema, policies, data-class rules, role) as one JSON document,
 * signed by the deployment root key over `"vigil/policy-bundle/v1\n"` + the canonical document without `sig`.
 * This is what the platform team publishes (to the policy KV bucket) and what the policy service loads.
 */

export const BUNDLE_SIGNING_CONTEXT = "vigil/policy-bundle/v1"

/** Base64url without padding of a 64-byte Ed25519 signature; canonical last character (one spelling). */
const SignatureB64 = Schema.String.pipe(Schema.check(Schema.isPattern(/^[A-Za-z0-9_-]{85}[AQgw]$/u)))

const signedFields = {
  ...bundleContentFields,
  /** Key id of the root key that signed it. */
  rootKid: KeyId,
  /** SHA-256 of the contents (what decisions name); checked on verify. */
  digest: Schema.String.pipe(Schema.check(Schema.isPattern(/^[0-9a-f]{64}$/u))),
}

export const SignedBundle = Schema.Struct({ ...signedFields, sig: SignatureB64 })
export type SignedBundle = typeof SignedBundle.Type

const decodeSigned = Schema.decodeUnknownResult(SignedBundle, { onExcessProperty: "error", errors: "first" })
const decodeContents = Schema.decodeUnknownResult(BundleContents, { onExcessProperty: "error", errors: "first" })

/** The bytes a bundle signature covers. */
export const bundleSigningBytes = (body: object): Uint8Array => contextBytes(BUNDLE_SIGNING_CONTEXT, body)

/** Read a policies/ directory (default policies plus the role's, see contents.ts) into bundle contents. */
export const packBundle = (policiesDir: string, role: string | null = null): BundleContents =>
  loadBundleDir(policiesDir, role)

/**
 * Sign bundle contents with the root key's 32-byte seed. Throws a TypeError when the contents are not
 * schema-valid (a malformed bundle is never signed); compile it first to check the policies themselves.
 */
export const signBundle = (rootSeed: Uint8Array, contents: BundleContents, ed: Ed25519 = fastEd25519): SignedBundle => {
  const decoded = decodeContents(contents)
  if (decoded._tag === "Failure") throw new TypeError(`invalid bundle contents: ${decoded.failure.message}`)
  const c = decoded.success
  const body = {
    v: c.v,
    role: c.role,
    schema: c.schema,
    policies: c.policies,
    dataClasses: c.dataClasses,
    rootKid: keyIdOf(ed.publicKey(rootSeed)),
    digest: bundleDigest(c),
  }
  const sig = Buffer.from(ed.sign(bundleSigningBytes(body), rootSeed)).toString("base64url")
  return { ...body, sig }
}

export type BundleVerdict =
  | {
      readonly ok: true
      readonly bundle: SignedBundle
      readonly digest: string
      /** The compiled, pre-parsed engine of the bundle. */
      readonly engine: PolicyEngine
    }
  | {
      readonly ok: false
      readonly reason: "bad_signature" | BundleRejection
      readonly detail: string
      readonly errors: ReadonlyArray<string>
    }

const refuse = (reason: "bad_signature" | BundleRejection, detail: string, errors: ReadonlyArray<string> = [detail]) =>
  ({ ok: false, reason, detail, errors }) as const

/**
 * Verify a signed bundle document and compile it. Never throws. In order: the document's shape (`schema`), the
 * signature under `rootPublicKey` and the digest it names (`bad_signature`), then the bundle itself as
 * {@link compileBundle} checks it: Cedar schema and data-class rules (`schema`), policy syntax (`parse`),
 * annotations and validation of every policy against the schema (`validation`).
 */
export const verifyBundle = (rootPublicKey: Uint8Array, input: unknown, ed: Ed25519 = fastEd25519): BundleVerdict => {
  const decoded = decodeSigned(input)
  if (decoded._tag === "Failure") return refuse("schema", `bundle document: ${decoded.failure.message}`)
  const b = decoded.success
  const rootKid = keyIdOf(rootPublicKey)
  if (b.rootKid !== rootKid) {
    return refuse("bad_signature", `bundle is signed by root ${b.rootKid}, expected ${rootKid}`)
  }
  const { sig, ...body } = b
  if (!ed.verify(Buffer.from(sig, "base64url"), bundleSigningBytes(body), rootPublicKey)) {
    return refuse("bad_signature", `bundle signature does not verify under root ${rootKid}`)
  }
  const contents: BundleContents = {
    v: b.v,
    role: b.role,
    schema: b.schema,
    policies: b.policies,
    dataClasses: b.dataClasses,
  }
  const digest = bundleDigest(contents)
  if (digest !== b.digest) return refuse("schema", `bundle names digest ${b.digest}, its contents hash to ${digest}`)
  const compiled = compileBundle(contents)
  if (!compiled.ok) return refuse(compiled.reason, compiled.detail, compiled.errors)
  return { ok: true, bundle: b, digest, engine: compiled.engine }
}
