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
