import { createHash } from "node:crypto"
import { type Ed25519, fastEd25519, keyIdOf } from "@vigil/crypto"
import {
  canonicalBytes,
  contextBytes,
  type EventType,
  isEventType,
  KeyId,
  PRINCIPALS,
  type Principal,
  Sha256Hex,
  Timestamp,
  Token,
  typesProducedBy,
} from "@vigil/events"
import { Schema } from "effect"

/**
 * The signed key manifest: which Ed25519 public key may sign which event types for which principal, and when.
 * The deployment root key signs each version; versions form a hash chain (`prev`), see chain.ts.
 */

export const MANIFEST_VERSION = 1

/** Base64url without padding of 32 bytes; the unused low bits of the last character must be zero (one spelling). */
export const PublicKeyB64 = Schema.String.pipe(Schema.check(Schema.isPattern(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/u)))
/** Base64url without padding of a 64-byte Ed25519 signature, canonical last character. */
const SignatureB64 = Schema.String.pipe(Schema.check(Schema.isPattern(/^[A-Za-z0-9_-]{85}[AQgw]$/u)))
/**
 * An event type name. Deliberately not restricted to this build's catalog: a verifier one release behind must still
 * accept a manifest that grants a type it does not know (it grants nothing there, as such events are refused as
 * `unknown_type` anyway). {@link buildManifest} only grants catalog types.
 */
const EventTypeName = Schema.String.pipe(Schema.check(Schema.isPattern(/^[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)*$/u)))

export const ManifestKey = Schema.Struct({
  kid: KeyId,
  principal: Schema.Literals(PRINCIPALS),
  publicKey: PublicKeyB64,
  types: Schema.Array(EventTypeName).pipe(Schema.check(Schema.isMaxLength(1024))),
  /** Validity window `[notBefore, notAfter)`; `notAfter: null` means open-ended. */
  notBefore: Timestamp,
  notAfter: Schema.NullOr(Timestamp),
}).pipe(
  Schema.check(
    Schema.makeFilter((k) =>
      keyIdOf(Buffer.from(k.publicKey, "base64url")) === k.kid
        ? undefined
        : { path: ["kid"], issue: "kid is not the key id of publicKey" },
    ),
    Schema.makeFilter((k) =>
      k.notAfter === null || Date.parse(k.notAfter) > Date.parse(k.notBefore)
        ? undefined
        : { path: ["notAfter"], issue: "notAfter must be after notBefore" },
    ),
  ),
)
export type ManifestKey = typeof ManifestKey.Type

const bodyFields = {
  v: Schema.Literal(MANIFEST_VERSION),
  deployment: Token,
  version: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))),
  issuedAt: Timestamp,
  /** SHA-256 of the previous version's canonical bytes ({@link manifestDigest}); null exactly for version 1. */
  prev: Schema.NullOr(Sha256Hex),
  keys: Schema.Array(ManifestKey).pipe(Schema.check(Schema.isMaxLength(4096))),
  /** Key id of the root key that signed this version. */
  rootKid: KeyId,
}

interface Body {
  readonly version: number
  readonly prev: string | null
  readonly keys: ReadonlyArray<ManifestKey>
  readonly rootKid: string
}
const bodyChecks = [
  Schema.makeFilter((m: Body) =>
    (m.version === 1) === (m.prev === null)
      ? undefined
      : { path: ["prev"], issue: "prev is null exactly for version 1" },
  ),
  Schema.makeFilter((m: Body) => {
    const kids = new Set<string>()
    for (const [i, k] of m.keys.entries()) {
      if (kids.has(k.kid)) return { path: ["keys", i, "kid"], issue: `key ${k.kid} is listed twice` }
      if (k.kid === m.rootKid) return { path: ["keys", i, "kid"], issue: "the root key may not sign events" }
      kids.add(k.kid)
    }
    return undefined
  }),
] as const

/** A manifest version as the root key signed it. */
export const Manifest = Schema.Struct({ ...bodyFields, sig: SignatureB64 }).pipe(Schema.check(...bodyChecks))
export type Manifest = typeof Manifest.Type

/** What {@link signManifest} signs: everything but `rootKid` (taken from the signing key) and `sig`. */
export type UnsignedManifest = Omit<Manifest, "rootKid" | "sig">

const ManifestBody = Schema.Struct(bodyFields).pipe(Schema.check(...bodyChecks))
const strict = { onExcessProperty: "error", errors: "first" } as const
const decodeManifest = Schema.decodeUnknownResult(Manifest, strict)
const decodeBody = Schema.decodeUnknownResult(ManifestBody, strict)

/** The exact bytes a manifest signature covers: "vigil/manifest/v1\n", then the canonical manifest without `sig`. */
export const manifestSigningBytes = (body: object): Uint8Array => contextBytes("vigil/manifest/v1", body)

/** SHA-256 (hex) of a signed manifest's RFC 8785 canonical bytes: what the next version's `prev` names. */
export const manifestDigest = (m: Manifest): string => createHash("sha256").update(canonicalBytes(m)).digest("hex")

/**
 * Sign a manifest version with the root key's seed; `rootKid` is set from that key. Throws a TypeError when the
 * manifest is not schema-valid: an invalid manifest is never signed.
 */
export const signManifest = (rootSeed: Uint8Array, unsigned: UnsignedManifest, ed: Ed25519 = fastEd25519): Manifest => {
  const rootKid = keyIdOf(ed.publicKey(rootSeed))
  const { v, deployment, version, issuedAt, prev, keys } = unsigned
  const body = decodeBody({ v, deployment, version, issuedAt, prev, keys, rootKid })
  if (body._tag === "Failure") throw new TypeError(`invalid manifest: ${body.failure.message}`)
  const sig = Buffer.from(ed.sign(manifestSigningBytes(body.success), rootSeed)).toString("base64url")
  return { ...body.success, sig }
}

export type ManifestRejection = "schema" | "wrong_root" | "bad_signature"

export type ManifestVerdict =
  | { readonly ok: true; readonly manifest: Manifest }
  | { readonly ok: false; readonly reason: ManifestRejection; readonly detail: string }

/**
 * Check that `input` is a schema-valid manifest signed by the root key `rootPublicKey`. Never throws.
 * `wrong_root`: signed (or claims to be signed) by another root; `bad_signature`: the signature does not verify.
 */
export const verifyManifest = (
  rootPublicKey: Uint8Array,
  input: unknown,
  ed: Ed25519 = fastEd25519,
): ManifestVerdict => {
  const decoded = decodeManifest(input)
  if (decoded._tag === "Failure") return { ok: false, reason: "schema", detail: decoded.failure.message }
  const m = decoded.success
  const rootKid = keyIdOf(rootPublicKey)
  if (m.rootKid !== rootKid) {
    return {
      ok: false,
      reason: "wrong_root",
      detail: `manifest v${m.version} names root ${m.rootKid}, expected ${rootKid}`,
    }
  }
  const { sig, ...body } = m
  if (!ed.verify(Buffer.from(sig, "base64url"), manifestSigningBytes(body), rootPublicKey)) {
    return {
      ok: false,
      reason: "bad_signature",
      detail: `signature of manifest v${m.version} does not verify under root ${rootKid}`,
    }
  }
  return { ok: true, manifest: m }
}

export interface KeyGrant {
  readonly principal: Principal
  readonly publicKey: Uint8Array
  /** Defaults to the manifest's `issuedAt`. */
  readonly notBefore?: string
  readonly notAfter?: string | null
  /** Defaults to the catalog's grant, {@link typesProducedBy}. */
  readonly types?: ReadonlyArray<EventType>
}

const grantEntry = (g: KeyGrant, issuedAt: string): ManifestKey => {
  if (!(g.publicKey instanceof Uint8Array) || g.publicKey.length !== 32) {
    throw new TypeError(`public key of ${g.principal} must be 32 bytes`)
  }
  const types = g.types ?? typesProducedBy(g.principal)
  for (const t of types) if (!isEventType(t)) throw new TypeError(`${t} is not an event type of the catalog`)
  return {
    kid: keyIdOf(g.publicKey),
    principal: g.principal,
    publicKey: Buffer.from(g.publicKey).toString("base64url"),
    types: [...types],
    notBefore: g.notBefore ?? issuedAt,
    notAfter: g.notAfter ?? null,
  }
}

/** An unsigned manifest version from key grants; sign it with {@link signManifest}. */
export const buildManifest = (input: {
  readonly deployment: string
  readonly version: number
  readonly issuedAt: string
  readonly prev: string | null
  readonly keys: ReadonlyArray<KeyGrant>
}): UnsignedManifest => ({
  v: MANIFEST_VERSION,
  deployment: input.deployment,
  version: input.version,
  issuedAt: input.issuedAt,
  prev: input.prev,
  keys: input.keys.map((g) => grantEntry(g, input.issuedAt)),
})

/**
 * The next version after `prev` with a new key for each named principal, issued at `at` and valid from `at`.
 * The principal's keys still valid at `at` are kept with `notAfter = at`, so events signed before the rotation still
 * verify (a key that would only have become valid at or after `at` is dropped). The new key inherits the types of
 * the key it replaces (the catalog's grant when the principal had none). Every other key is carried over unchanged.
 */
export const rotateKeys = (
  prev: Manifest,
  rotations: ReadonlyArray<{ readonly principal: Principal; readonly publicKey: Uint8Array }>,
  at: string,
): UnsignedManifest => {
  const atMs = Date.parse(at)
  if (!Number.isFinite(atMs)) throw new TypeError(`rotation time ${at} is not a timestamp`)
  if (atMs < Date.parse(prev.issuedAt)) {
    throw new RangeError(`rotation at ${at} precedes manifest v${prev.version} issued at ${prev.issuedAt}`)
  }
  const rotating = new Set(rotations.map((r) => r.principal))
  if (rotating.size !== rotations.length) throw new TypeError("one rotation per principal")
  const inherited = new Map<Principal, { readonly from: number; readonly types: ReadonlyArray<string> }>()
  const keys: Array<ManifestKey> = []
  for (const k of prev.keys) {
    const live = k.notAfter === null || Date.parse(k.notAfter) > atMs
    if (!rotating.has(k.principal) || !live) {
      keys.push(k)
      continue
    }
    const from = Date.parse(k.notBefore)
    if ((inherited.get(k.principal)?.from ?? Number.NEGATIVE_INFINITY) <= from) {
      inherited.set(k.principal, { from, types: k.types })
    }
    if (from < atMs) keys.push({ ...k, notAfter: at })
  }
  for (const r of rotations) {
    const entry = grantEntry({ principal: r.principal, publicKey: r.publicKey, notBefore: at }, at)
    if (prev.keys.some((k) => k.kid === entry.kid)) {
      throw new TypeError(`key ${entry.kid} is already in manifest v${prev.version}; rotate to a fresh key`)
    }
    keys.push({ ...entry, types: [...(inherited.get(r.principal)?.types ?? entry.types)] })
  }
  return {
    v: MANIFEST_VERSION,
    deployment: prev.deployment,
    version: prev.version + 1,
    issuedAt: at,
    prev: manifestDigest(prev),
    keys,
  }
}

/** {@link rotateKeys} for one principal. */
export const rotateKey = (
  prev: Manifest,
  principal: Principal,
  newPublicKey: Uint8Array,
  at: string,
): UnsignedManifest => rotateKeys(prev, [{ principal, publicKey: newPublicKey }], at)
