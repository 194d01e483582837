import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { fastEd25519, KV_POLICY, POLICY_BUNDLE_KEY, POLICY_BUNDLE_SUBJECT } from "@vigil/events"
import { KeyStore, ROOT_KEY_NAME } from "@vigil/keys"
import { compileBundle, packBundle, type SignedBundle, signBundle, verifyBundleSignature } from "@vigil/policy"
import type { Home } from "@vigil/runtime"
import { Effect } from "effect"

export const POLICIES_DIR = resolve(fileURLToPath(new URL("../../policies", import.meta.url)))

export interface BundleSigning {
  /** The policies directory (default: the repo's policies/). */
  readonly dir?: string
  /**
   * The bus whose stored bundles number this one: the highest version among the stored revisions that verify
   * under this home's root key, + 1 (1 when none verifies). This is how `vigil policy bundle` and `vigil up` sign.
   */
  readonly bus?: NatsConnection
  /** An explicit version instead (tests); with neither, 1. */
  readonly version?: number
  /** Where a note about stored revisions that do not verify goes (default: stderr). */
  readonly warn?: (line: string) => void
}

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
  const subject = `$KV.${KV_POLICY}.${POLICY_BUNDLE_KEY}`
  let highest = 0
  const refused: string[] = []
  for (let seq = 1; ; ) {
    const m = await jsm.direct.getMessage(`KV_${KV_POLICY}`, { seq, next_by_subj: subject })
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
 * Pack `policies/` (the default set plus the role's folder), check that it compiles against its schema, and sign
 * it with the deployment root key as the next version (see {@link BundleSigning}). A bundle that does not validate
 * is never signed.
 */
export const signedBundleFrom = (home: Home, role: string | null, opts: BundleSigning = {}) =>
  Effect.gen(function* () {
    const dir = opts.dir ?? POLICIES_DIR
    const contents = yield* Effect.try({
      try: () => packBundle(dir, role),
      catch: (e) => new Error(`cannot read the policy bundle in ${dir}: ${e instanceof Error ? e.message : e}`),
    })
    const compiled = compileBundle(contents)
    if (!compiled.ok) {
      return yield* Effect.fail(new Error(`policy bundle refused (${compiled.reason}): ${compiled.errors.join("; ")}`))
    }
    const seed = yield* KeyStore.use((ks) => ks.load(ROOT_KEY_NAME)).pipe(
      Effect.provide(KeyStore.layerFile(home.keys)),
      Effect.mapError((e) => new Error(`cannot load the root key from ${join(home.keys)}: ${e._tag}`)),
    )
    const bus = opts.bus
    const version =
      opts.version ??
      (bus === undefined
        ? 1
        : 1 +
          (yield* Effect.tryPromise({
            try: () => storedBundleVersion(bus, fastEd25519.publicKey(seed), opts.warn),
            catch: (e) => new Error(`cannot read the stored policy bundle to number the next one: ${String(e)}`),
          })))
    return signBundle(seed, contents, version)
  })

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
