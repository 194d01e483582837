import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { NatsConnection } from "@nats-io/transport-node"
import { fastEd25519 } from "@vigil/crypto"
import { KeyStore, ROOT_KEY_NAME } from "@vigil/keys"
import { Effect } from "effect"
import { packBundle, signBundle } from "./bundle.ts"
import { storedBundleVersion } from "./bundle-store.ts"
import { compileBundle } from "./engine.ts"

/** The repo's policies directory (the default set, roles, schema, data classes, tests). */
export const POLICIES_DIR = resolve(fileURLToPath(new URL("../../../policies", import.meta.url)))

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
 * Pack `policies/` (the default set plus the role's folder), check that it compiles against its schema, and sign
 * it with the deployment root key of the Vigil home whose key directory is `home.keys` as the next version (see
 * {@link BundleSigning}). A bundle that does not validate is never signed.
 */
export const signedBundleFrom = (home: { readonly keys: string }, role: string | null, opts: BundleSigning = {}) =>
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
