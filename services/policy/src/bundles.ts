import { POLICY_BUNDLE_SUBJECT } from "@vigil/events"
import { type BundleVerdict, type PolicyEngine, verifyBundle, verifyBundleSignature } from "@vigil/policy"

/** Why a bundle was not taken; the previous bundle (if any) keeps deciding. */
export interface BundleRefusal {
  readonly reason: string
  readonly detail: string
}

/** A bundle's identity: the digest decisions name and its signed release number. */
export interface BundleId {
  readonly digest: string
  readonly version: number
}

/** What became of an offered bundle. */
export type Offer =
  | { readonly ok: true; readonly digest: string; readonly version: number; readonly changed: boolean }
  | ({ readonly ok: false; readonly kind: "refused" } & BundleRefusal)
  /** Root-signed and valid, but older than the bundle in force, or the same version with other contents. */
  | {
      readonly ok: false
      readonly kind: "rollback"
      readonly reason: "rollback"
      readonly detail: string
      readonly offered: BundleId
      readonly active: BundleId
    }

export type OfferRefused = Exclude<Offer, { readonly ok: true }>

/** One stored value of the bundle key: its stream sequence and the parsed document (undefined: a delete marker). */
export interface StoredRevision {
  readonly seq: number
  readonly doc: unknown
}

/** How the service chose its bundle at start from the stored revisions. */
export type StartOutcome =
  /** Nothing was ever stored: every intent is denied until a bundle is published (no alert: a fresh deployment). */
  | { readonly kind: "empty" }
  /** The latest stored bundle verified and is in force. */
  | ({ readonly kind: "latest"; readonly seq: number } & BundleId)
  /** The latest stored value was refused; an earlier revision (the last good bundle) is in force instead. */
  | ({
      readonly kind: "kept"
      readonly seq: number
      readonly latest: OfferRefused & { readonly seq: number }
    } & BundleId)
  /** Nothing stored verifies: no bundle is in force and every intent is denied (fail closed). */
  | { readonly kind: "none-good"; readonly latest: OfferRefused & { readonly seq: number } }

const short = (digest: string) => `${digest.slice(0, 16)}…`

/** Why `offered` may not replace `active`, or undefined when it may (a higher version, or the same bundle again). */
const rollbackOf = (offered: BundleId, active: BundleId): OfferRefused | undefined => {
  if (offered.version > active.version) return undefined
  if (offered.version === active.version && offered.digest === active.digest) return undefined
  const detail =
    offered.version < active.version
      ? `version ${offered.version} (${short(offered.digest)}) is older than version ${active.version} (${short(active.digest)}) in force`
      : `version ${offered.version} (${short(offered.digest)}) is already in force with other contents (${short(active.digest)})`
  return { ok: false, kind: "rollback", reason: "rollback", detail, offered, active }
}

const DELETED: OfferRefused = {
  ok: false,
  kind: "refused",
  reason: "deleted",
  detail: "the stored policy bundle was deleted from the bucket",
}

const refusedBy = (v: Extract<BundleVerdict, { readonly ok: false }>): OfferRefused => ({
  ok: false,
  kind: "refused",
  reason: v.reason,
  detail: v.detail,
})

/**
 * The policy bundle in force: only a root-signed bundle whose policies validate against its schema, and whose
 * version is higher than the one in force, is ever swapped in (ADR 0016). `current` is undefined until the first
 * good bundle arrives, and every decision is then a deny.
 */
export class BundleHolder {
  current: PolicyEngine | undefined
  /** Release number of `current`: the highest version this process has accepted (versions only ever rise). */
  version: number | undefined
  readonly #rootPublicKey: Uint8Array

  constructor(rootPublicKey: Uint8Array) {
    this.#rootPublicKey = rootPublicKey
  }

  /** The identity of the bundle in force, if any. */
  get active(): BundleId | undefined {
    return this.current === undefined || this.version === undefined
      ? undefined
      : { digest: this.current.digest, version: this.version }
  }

  #take(engine: PolicyEngine, version: number) {
    this.current = engine
    this.version = version
  }

  /** Verify and take a signed bundle document (a hot reload); returns the refusal when it is not taken. */
  offer(doc: unknown): Offer {
    const verdict = verifyBundle(this.#rootPublicKey, doc)
    if (!verdict.ok) return refusedBy(verdict)
    const active = this.active
    if (active !== undefined) {
      const rollback = rollbackOf(verdict, active)
      if (rollback !== undefined) return rollback
    }
    const changed = active?.digest !== verdict.digest || active.version !== verdict.version
    if (changed) this.#take(verdict.engine, verdict.version)
    return { ok: true, digest: verdict.digest, version: verdict.version, changed }
  }

  /**
   * Choose the bundle to start with from the bucket's stored revisions of the bundle key (oldest first). The latest
   * is taken when it verifies (root signature, schema, version, policies) and no stored revision outranks it.
   * Otherwise the last good bundle is kept: the verified revision with the highest version (the earliest of equal
   * versions, the one a running service would have taken first). With none, nothing is in force (fail closed).
   */
  start(revisions: ReadonlyArray<StoredRevision>): StartOutcome {
    const latest = revisions.at(-1)
    if (latest === undefined) return { kind: "empty" }
    const signed = revisions.map((r) => ({
      seq: r.seq,
      doc: r.doc,
      sig: r.doc === undefined ? undefined : verifyBundleSignature(this.#rootPublicKey, r.doc),
    }))
    const candidates = signed
      .flatMap((s) => (s.sig?.ok === true ? [{ ...s, version: s.sig.version }] : []))
      .sort((a, b) => b.version - a.version || a.seq - b.seq)
    const compiled = new Map<number, BundleVerdict>()
    let best: { readonly seq: number; readonly verdict: Extract<BundleVerdict, { readonly ok: true }> } | undefined
    for (const c of candidates) {
      const verdict = verifyBundle(this.#rootPublicKey, c.doc)
      compiled.set(c.seq, verdict)
      if (verdict.ok) {
        best = { seq: c.seq, verdict }
        break
      }
    }

    const lastSig = (signed.at(-1) as (typeof signed)[number]).sig
    const latestProblem = ((): OfferRefused | undefined => {
      if (lastSig === undefined) return DELETED
      if (!lastSig.ok) return refusedBy(lastSig)
      const full = compiled.get(latest.seq)
      if (full !== undefined && !full.ok) return refusedBy(full)
      if (best === undefined || best.seq === latest.seq) return undefined
      return rollbackOf(lastSig, best.verdict)
    })()

    if (best === undefined) {
      const problem: OfferRefused = latestProblem ?? {
        ok: false,
        kind: "refused",
        reason: "schema",
        detail: "no stored revision of the bundle verifies",
      }
      return { kind: "none-good", latest: { ...problem, seq: latest.seq } }
    }
    this.#take(best.verdict.engine, best.verdict.version)
    const id = { digest: best.verdict.digest, version: best.verdict.version }
    if (latestProblem === undefined) return { kind: "latest", seq: best.seq, ...id }
    return { kind: "kept", seq: best.seq, ...id, latest: { ...latestProblem, seq: latest.seq } }
  }
}

export { POLICY_BUNDLE_SUBJECT }
