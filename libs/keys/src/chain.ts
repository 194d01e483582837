import { type Ed25519, fastEd25519, keyIdOf } from "@vigil/crypto"
import type { KeyLookup, KeyResolver, TrustedKey } from "@vigil/events"
import { Data, Result } from "effect"
import { type Manifest, manifestDigest, verifyManifest } from "./manifest.ts"

export type ChainRejection =
  | "empty"
  | "schema"
  | "wrong_root"
  | "bad_signature"
  | "version_gap"
  | "prev_mismatch"
  | "time_regression"
  | "deployment_mismatch"
  | "conflict"

/** A manifest that cannot join the chain. `version` is the version the chain expected at that point. */
export class ManifestChainError extends Data.TaggedError("ManifestChainError")<{
  readonly reason: ChainRejection
  readonly version: number
  readonly message: string
}> {}

/** One verified version, indexed for resolution. */
interface Version {
  readonly manifest: Manifest
  readonly digest: string
  readonly issuedAtMs: number
  readonly keys: ReadonlyMap<string, TrustedKey>
  /** The `ok` answers, allocated once: resolution is on the hot path of every event verification. */
  readonly hits: ReadonlyMap<string, KeyLookup>
}

const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms))

const indexVersion = (manifest: Manifest, digest: string): Version => {
  const keys = new Map<string, TrustedKey>()
  const hits = new Map<string, KeyLookup>()
  for (const k of manifest.keys) {
    const key: TrustedKey = {
      kid: k.kid,
      principal: k.principal,
      publicKey: new Uint8Array(Buffer.from(k.publicKey, "base64url")),
      types: new Set(k.types),
      notBefore: Date.parse(k.notBefore),
      notAfter: k.notAfter === null ? Number.POSITIVE_INFINITY : Date.parse(k.notAfter),
      manifestVersion: manifest.version,
    }
    keys.set(k.kid, key)
    hits.set(k.kid, { ok: true, key })
  }
  return { manifest, digest, issuedAtMs: Date.parse(manifest.issuedAt), keys, hits }
}

/**
 * The verified history of a deployment's key manifest, and the {@link KeyResolver} event verification uses.
 *
 * Every version is checked when it joins: schema, signature by the root key, versions consecutive from 1, `prev` =
 * digest of the version before, same deployment, `issuedAt` non-decreasing. A key id is then resolved against the
 * version in force at the event's time (the latest one issued at or before it), so a rotation never invalidates
 * events signed before it, and a retired key cannot sign events dated after its retirement.
 */
export class ManifestChain implements KeyResolver {
  readonly #rootPublicKey: Uint8Array
  readonly #ed: Ed25519
  readonly #versions: Array<Version> = []
  /** For each kid, the indexes (ascending) of the versions that list it. */
  readonly #kidVersions = new Map<string, Array<number>>()

  private constructor(rootPublicKey: Uint8Array, ed: Ed25519) {
    this.#rootPublicKey = rootPublicKey.slice()
    this.#ed = ed
  }

  /** Verify and link `manifests` (version 1 first) under the root public key. */
  static make(
    rootPublicKey: Uint8Array,
    manifests: ReadonlyArray<unknown>,
    options: { readonly ed?: Ed25519 } = {},
  ): Result.Result<ManifestChain, ManifestChainError> {
    if (manifests.length === 0) {
      return Result.fail(new ManifestChainError({ reason: "empty", version: 1, message: "no manifest versions" }))
    }
    const chain = new ManifestChain(rootPublicKey, options.ed ?? fastEd25519)
    for (const m of manifests) {
      const r = chain.#link(m, false)
      if (Result.isFailure(r)) return Result.fail(r.failure)
    }
    return Result.succeed(chain)
  }

  /** The root public key every version is signed by (a copy). */
  get rootPublicKey(): Uint8Array {
    return this.#rootPublicKey.slice()
  }

  /** Key id of the root key every version is signed by. */
  get rootKid(): string {
    return keyIdOf(this.#rootPublicKey)
  }

  /** The newest version. */
  get latest(): Manifest {
    return (this.#versions.at(-1) as Version).manifest
  }

  /** All versions, oldest first. */
  get manifests(): ReadonlyArray<Manifest> {
    return this.#versions.map((v) => v.manifest)
  }

  /**
   * Verify `input` and add it as the next version. Appending a version the chain already holds, byte for byte, is
   * a no-op success (watchers redeliver); a different manifest under an existing version number is a `conflict`.
   */
  append(input: unknown): Result.Result<Manifest, ManifestChainError> {
    return this.#link(input, true)
  }

  #link(input: unknown, redelivery: boolean): Result.Result<Manifest, ManifestChainError> {
    const expected = this.#versions.length + 1
    const fail = (reason: ChainRejection, message: string, version = expected) =>
      Result.fail(new ManifestChainError({ reason, version, message }))
    const verdict = verifyManifest(this.#rootPublicKey, input, this.#ed)
    if (!verdict.ok) return fail(verdict.reason, `manifest v${expected}: ${verdict.detail}`)
    const m = verdict.manifest
    const digest = manifestDigest(m)
    if (redelivery && m.version < expected) {
      const held = this.#versions[m.version - 1] as Version
      return held.digest === digest
        ? Result.succeed(held.manifest)
        : fail(
            "conflict",
            `manifest v${m.version} differs from the version ${m.version} already in the chain`,
            m.version,
          )
    }
    if (m.version !== expected) {
      return fail("version_gap", `expected manifest v${expected}, got v${m.version}`)
    }
    const prev = this.#versions.at(-1)
    if (prev !== undefined) {
      if (m.prev !== prev.digest) {
        return fail(
          "prev_mismatch",
          `manifest v${m.version} prev ${m.prev} is not the digest of v${prev.manifest.version} (${prev.digest})`,
        )
      }
      if (m.deployment !== prev.manifest.deployment) {
        return fail(
          "deployment_mismatch",
          `manifest v${m.version} is for deployment ${m.deployment}, the chain for ${prev.manifest.deployment}`,
        )
      }
      if (Date.parse(m.issuedAt) < prev.issuedAtMs) {
        return fail(
          "time_regression",
          `manifest v${m.version} issued at ${m.issuedAt}, before v${prev.manifest.version} (${prev.manifest.issuedAt})`,
        )
      }
    }
    const index = this.#versions.length
    this.#versions.push(indexVersion(m, digest))
    for (const k of m.keys) {
      const where = this.#kidVersions.get(k.kid)
      if (where === undefined) this.#kidVersions.set(k.kid, [index])
      else where.push(index)
    }
    return Result.succeed(m)
  }

  /** Index of the version in force at `atMs` (the latest issued at or before it), or -1 before version 1. */
  #versionAt(atMs: number): number {
    let lo = 0
    let hi = this.#versions.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.#versions[mid] as Version).issuedAtMs <= atMs) lo = mid + 1
      else hi = mid
    }
    return lo - 1
  }

  resolve(kid: string, atMs: number): KeyLookup {
    const where = this.#kidVersions.get(kid)
    if (where === undefined) return { ok: false, reason: "unknown_key", detail: `key ${kid} is in no manifest version` }
    if (Number.isNaN(atMs)) {
      return { ok: false, reason: "unknown_key", detail: `key ${kid} cannot be resolved at an invalid time` }
    }
    const v = this.#versionAt(atMs)
    const version = this.#versions[v]
    const key = version?.keys.get(kid)
    if (version !== undefined && key !== undefined) {
      if (atMs < key.notBefore) {
        return {
          ok: false,
          reason: "key_not_yet_valid",
          detail: `key ${kid} (${key.principal}) is valid from ${iso(key.notBefore)}, event time ${iso(atMs)} (manifest v${key.manifestVersion})`,
          key,
        }
      }
      if (atMs >= key.notAfter) {
        return {
          ok: false,
          reason: "key_expired",
          detail: `key ${kid} (${key.principal}) expired at ${iso(key.notAfter)}, event time ${iso(atMs)} (manifest v${key.manifestVersion})`,
          key,
        }
      }
      return version.hits.get(kid) as KeyLookup
    }
    // Not in the version in force: retired if an earlier version had it, otherwise granted only later.
    const earlier = where.findLast((i) => i < v)
    if (earlier !== undefined) {
      const old = (this.#versions[earlier] as Version).keys.get(kid) as TrustedKey
      return {
        ok: false,
        reason: "key_expired",
        detail: `key ${kid} (${old.principal}) was removed before ${iso(atMs)}; last granted by manifest v${old.manifestVersion}`,
        key: old,
      }
    }
    const later = this.#versions[where[0] as number] as Version
    const next = later.keys.get(kid) as TrustedKey
    return {
      ok: false,
      reason: "key_not_yet_valid",
      detail: `key ${kid} (${next.principal}) is first granted by manifest v${next.manifestVersion} issued at ${later.manifest.issuedAt}, event time ${iso(atMs)}`,
      key: next,
    }
  }
}
