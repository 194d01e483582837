import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { KV_POLICY, POLICY_BUNDLE_KEY, POLICY_BUNDLE_SUBJECT } from "@vigil/events"
import { KeyStore, ROOT_KEY_NAME } from "@vigil/keys"
import { compileBundle, packBundle, type SignedBundle, signBundle } from "@vigil/policy"
import type { Home } from "@vigil/runtime"
import { Effect } from "effect"

export const POLICIES_DIR = resolve(fileURLToPath(new URL("../../policies", import.meta.url)))

/**
 * Pack `policies/` (the default set plus the role's folder), check that it compiles against its schema, and sign
 * it with the deployment root key. A bundle that does not validate is never signed.
 */
export const signedBundleFrom = (home: Home, role: string | null, dir: string = POLICIES_DIR) =>
  Effect.gen(function* () {
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
    return signBundle(seed, contents)
  })

/** Store the bundle as the active one (KV) and announce it to the policy service (plain publish, no reply). */
export const publishBundle = async (nc: NatsConnection, bundle: SignedBundle): Promise<void> => {
  const kv = await new Kvm(nc).open(KV_POLICY)
  const text = JSON.stringify(bundle)
  await kv.put(POLICY_BUNDLE_KEY, text)
  nc.publish(POLICY_BUNDLE_SUBJECT, text)
  await nc.flush()
}
