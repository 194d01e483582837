import { type Ed25519, fastEd25519, keyIdOf } from "@vigil/crypto"
import { contextBytes, KeyId } from "@vigil/events"
import { Schema } from "effect"
import { BundleContents, bundleContentFields, bundleDigest, loadBundleDir } from "./contents.ts"
import { type BundleRejection, compileBundle, type PolicyEngine } from "./engine.ts"

/**
 * Signed policy bundles: the bundle contents (schema, policies, data-class rules, role) as one JSON document,
 * signed by the deployment root key over `"vigil/policy-bundle/v1\n"` + the canonical document without `sig`.
 * This is what the platform team publishes (to the policy KV bucket) and what the policy service loads.
 *
 * Every bundle carries a release `version` (a positive integer, inside the signed part): each one published is the
 * previous one's version + 1, and the policy service never takes a lower version than the one it runs (nor the
 * same version with other contents), so an older root-signed bundle cannot be replayed (ADR 0016). The digest names
 * the contents alone: the same contents re-signed as a later version keep their digest.
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
  /** Release number: 1 for a deployment's first bundle, then +1 for each one published (never reused). */
  version: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
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
 * Sign bundle contents as release `version` with the root key's 32-byte seed. Throws a TypeError when the contents
 * are not schema-valid or the version is not a positive integer (a malformed bundle is never signed); compile it
 * first to check the policies themselves.
 */
export const signBundle = (
  rootSeed: Uint8Array,
  contents: BundleContents,
  version: number,
  ed: Ed25519 = fastEd25519,
): SignedBundle => {
  const decoded = decodeContents(contents)
  if (decoded._tag === "Failure") throw new TypeError(`invalid bundle contents: ${decoded.failure.message}`)
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new TypeError(`invalid bundle version ${String(version)}: a positive integer`)
  }
  const c = decoded.success
  const body = {
    v: c.v,
    role: c.role,
    schema: c.schema,
    policies: c.policies,
    dataClasses: c.dataClasses,
    rootKid: keyIdOf(ed.publicKey(rootSeed)),
    digest: bundleDigest(c),
    version,
  }
  const sig = Buffer.from(ed.sign(bundleSigningBytes(body), rootSeed)).toString("base64url")
  return { ...body, sig }
}

export type BundleVerdict =
  | {
      readonly ok: true
      readonly bundle: SignedBundle
      readonly digest: string
      /** The signed release number. */
      readonly version: number
      /** The compiled, pre-parsed engine of the bundle. */
      readonly engine: PolicyEngine
    }
  | {
      readonly ok: false
      readonly reason: "bad_signature" | BundleRejection
      readonly detail: string
      readonly errors: ReadonlyArray<string>
    }

export type BundleSignatureVerdict =
  | { readonly ok: true; readonly bundle: SignedBundle; readonly digest: string; readonly version: number }
  | Extract<BundleVerdict, { readonly ok: false }>

const refuse = (reason: "bad_signature" | BundleRejection, detail: string, errors: ReadonlyArray<string> = [detail]) =>
  ({ ok: false, reason, detail, errors }) as const

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * Check who signed a bundle document and what it names, without compiling its policies (cheap: what numbering the
 * next release needs). Never throws. The document's shape, including a release `version` (`schema`; a bundle signed
 * before versions existed is refused as such), the signature under `rootPublicKey` (`bad_signature`) and the
 * digest it names (`schema`).
 */
export const verifyBundleSignature = (
  rootPublicKey: Uint8Array,
  input: unknown,
  ed: Ed25519 = fastEd25519,
): BundleSignatureVerdict => {
  if (isRecord(input) && typeof input.sig === "string" && !("version" in input)) {
    return refuse(
      "schema",
      "bundle has no version: it was signed before policy bundles were versioned and is refused (ADR 0016); sign and publish a new one with `vigil policy bundle`",
    )
  }
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
  const contents = contentsOf(b)
  const digest = bundleDigest(contents)
  if (digest !== b.digest) return refuse("schema", `bundle names digest ${b.digest}, its contents hash to ${digest}`)
  return { ok: true, bundle: b, digest, version: b.version }
}

/** What a bundle's digest covers: its contents, without version or signature. */
const contentsOf = (b: SignedBundle): BundleContents => ({
  v: b.v,
  role: b.role,
  schema: b.schema,
  policies: b.policies,
  dataClasses: b.dataClasses,
})

/**
 * Verify a signed bundle document and compile it. Never throws. In order: what {@link verifyBundleSignature}
 * checks (shape and version: `schema`; signature: `bad_signature`; digest: `schema`), then the bundle itself as
 * {@link compileBundle} checks it: Cedar schema and data-class rules (`schema`), policy syntax (`parse`),
 * annotations and validation of every policy against the schema (`validation`). Whether the version may replace
 * the one in force is the caller's decision.
 */
export const verifyBundle = (rootPublicKey: Uint8Array, input: unknown, ed: Ed25519 = fastEd25519): BundleVerdict => {
  const signed = verifyBundleSignature(rootPublicKey, input, ed)
  if (!signed.ok) return signed
  const b = signed.bundle
  const contents = contentsOf(b)
  const compiled = compileBundle(contents)
  if (!compiled.ok) return refuse(compiled.reason, compiled.detail, compiled.errors)
  return { ...signed, engine: compiled.engine }
}
