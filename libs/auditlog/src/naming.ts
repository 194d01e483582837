import type { SigningKey } from "@vigil/events"
import type { ManifestChain } from "@vigil/keys"
import { encodeVerifierKey, keyId, parseVerifierKey, type SignerKey, type VerifierKey } from "@vigil/note"

/** The log's origin line: names the deployment and its root key, so checkpoints of two deployments never mix. */
export const logOrigin = (chain: ManifestChain): string => `vigil/${chain.latest.deployment}/${chain.rootKid}`

/** Checkpoints are signed notes by the auditor's manifest key under the origin's name: rotation is the manifest's. */
export const noteSigner = (origin: string, key: SigningKey): SignerKey => ({
  name: origin,
  keyId: keyId(origin, key.publicKey),
  publicKey: key.publicKey,
  seed: key.seed,
})

/** Every auditor key the manifest ever granted, as note verifiers for `origin`. */
export const noteVerifiers = (origin: string, chain: ManifestChain): ReadonlyArray<VerifierKey> => {
  const seen = new Set<string>()
  const out: VerifierKey[] = []
  for (const m of chain.manifests) {
    for (const k of m.keys) {
      if (k.principal !== "auditor" || seen.has(k.kid)) continue
      seen.add(k.kid)
      out.push(parseVerifierKey(encodeVerifierKey(origin, Buffer.from(k.publicKey, "base64url"))))
    }
  }
  return out
}

/** An auditor key of the key manifest as the log's checkpoint verifier key, with its grant. */
export interface AuditorVerifierKey {
  /** c2sp.org/signed-note verifier key: `<origin>+<hex key id>+<base64(0x01 || Ed25519 public key)>`. */
  readonly vkey: string
  /** The note key id (8 hex digits), as in the checkpoint's signature lines. */
  readonly keyId: string
  /** The manifest's key id. */
  readonly kid: string
  readonly notBefore: string
  readonly notAfter: string | null
  /** The latest manifest version that grants it (its grant is taken from there). */
  readonly manifestVersion: number
  /** Granted by the latest manifest and valid at the time asked about. */
  readonly current: boolean
}

/**
 * Every auditor key the manifest chain ever granted as a verifier key for `origin`, newest grant first (the latest
 * `notBefore`; at a tie, the later manifest); `current` marks those the latest manifest grants for time `at`.
 */
export const auditorVerifierKeys = (
  origin: string,
  chain: ManifestChain,
  at: number = Date.now(),
): ReadonlyArray<AuditorVerifierKey> => {
  const latest = chain.latest.version
  const found = new Map<string, AuditorVerifierKey>()
  for (const m of [...chain.manifests].reverse()) {
    for (const k of m.keys) {
      if (k.principal !== "auditor" || found.has(k.kid)) continue
      const publicKey = Buffer.from(k.publicKey, "base64url")
      found.set(k.kid, {
        vkey: encodeVerifierKey(origin, publicKey),
        keyId: keyId(origin, publicKey).toString(16).padStart(8, "0"),
        kid: k.kid,
        notBefore: k.notBefore,
        notAfter: k.notAfter,
        manifestVersion: m.version,
        current:
          m.version === latest && Date.parse(k.notBefore) <= at && (k.notAfter === null || Date.parse(k.notAfter) > at),
      })
    }
  }
  return [...found.values()]
    .map((k, order) => ({ k, order }))
    .sort((a, b) => Date.parse(b.k.notBefore) - Date.parse(a.k.notBefore) || a.order - b.order)
    .map(({ k }) => k)
}
