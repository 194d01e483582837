import { jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { KV_POLICY, kvStream, kvSubject, POLICY_BUNDLE_KEY, POLICY_BUNDLE_SUBJECT } from "@vigil/events"
import { type SignedBundle, verifyBundleSignature } from "./bundle.ts"

/**
 * The bus side of signed policy bundles, as the root holder sees it (`vigil policy bundle`, `vigil up`): the versions
 * stored under the bundle key of the policy KV bucket, and publishing a bundle there. The policy service reads them
 * on its own (services/policy/src/bundles.ts).
 */

/**
 * The highest version among the stored revisions of the bundle key that are signed by this root (signature, shape,
 * version: not compiled), or 0 when none is. A stored value that does not verify (a bundle signed before versions
 * existed, junk, another root's) counts as none for numbering, with a note: the root holder is publishing anyway.
 */
export const storedBundleVersion = async (
  nc: NatsConnection,
  rootPublicKey: Uint8Array,
  warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<number> => {
  // Direct gets of the key's stored values (`next_by_subj`), oldest first: no consumer left behind on the bucket.
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  const subject = kvSubject(KV_POLICY, POLICY_BUNDLE_KEY)
  let highest = 0
  const refused: string[] = []
  for (let seq = 1; ; ) {
    const m = await jsm.direct.getMessage(kvStream(KV_POLICY), { seq, next_by_subj: subject })
    if (m === null) break
    seq = m.seq + 1
    if (m.data.length === 0) continue // a delete or purge marker
    let doc: unknown
    try {
      doc = m.json()
    } catch {
      doc = undefined
    }
    const v = verifyBundleSignature(rootPublicKey, doc)
    if (v.ok) highest = Math.max(highest, v.version)
    else refused.push(`revision ${m.seq} (${v.reason}: ${v.detail})`)
  }
  if (refused.length > 0) {
    warn(
      `vigil: ${refused.length} stored policy bundle revision(s) do not verify and count as none for numbering: ${refused.join("; ")}`,
    )
  }
  return highest
}

/**
 * Store the bundle as the active one (KV) and announce it to the policy service (plain publish, no reply). The
 * bundle is published as it is: sign it with `signedBundleFrom(…, { bus })` so that its version is the next one
 * (the policy service refuses a lower version, ADR 0016).
 */
export const publishBundle = async (nc: NatsConnection, bundle: SignedBundle): Promise<void> => {
  const kv = await new Kvm(nc).open(KV_POLICY)
  const text = JSON.stringify(bundle)
  await kv.put(POLICY_BUNDLE_KEY, text)
  nc.publish(POLICY_BUNDLE_SUBJECT, text)
  await nc.flush()
}
