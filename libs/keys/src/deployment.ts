import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fastEd25519, keyIdOf, randomSeed } from "@vigil/crypto"
import { writeFileAtomic } from "@vigil/durable"
import { canonicalBytes, PRINCIPALS, type Principal, type SigningKey } from "@vigil/events"
import { Clock, Data, Effect, Result } from "effect"
import { ManifestChain } from "./chain.ts"
import { KeyStore } from "./keystore.ts"
import { buildManifest, type Manifest, rotateKeys, signManifest, type UnsignedManifest } from "./manifest.ts"

/** Name of the deployment root key in the {@link KeyStore}; each principal's signing key is stored under its name. */
export const ROOT_KEY_NAME = "root"

/** The deployment root key: signs key manifests, never events. */
export interface RootKey {
  readonly kid: string
  readonly seed: Uint8Array
  readonly publicKey: Uint8Array
}

export interface DeploymentKeys<P extends Principal = Principal> {
  readonly root: RootKey
  readonly keys: { readonly [K in P]: SigningKey }
}

/** A manifest directory that cannot be read or written, or a stored key the manifest has already retired. */
export class DeploymentError extends Data.TaggedError("DeploymentError")<{
  readonly message: string
  readonly path?: string
  readonly cause?: unknown
}> {}

/** The {@link SigningKey} (kid, public key) of a principal's seed. */
export const signingKeyOf = (principal: Principal, seed: Uint8Array): SigningKey => {
  const publicKey = fastEd25519.publicKey(seed)
  return { principal, kid: keyIdOf(publicKey), seed, publicKey }
}

/** Load, or create on first use, the root key and one signing key per principal. */
export const ensureDeploymentKeys = <const P extends Principal>(principals: ReadonlyArray<P>) =>
  Effect.gen(function* () {
    const store = yield* KeyStore
    const rootSeed = yield* store.loadOrCreate(ROOT_KEY_NAME)
    const rootPublicKey = fastEd25519.publicKey(rootSeed)
    const keys = {} as Record<P, SigningKey>
    for (const p of principals) keys[p] = signingKeyOf(p, yield* store.loadOrCreate(p))
    const root: RootKey = { kid: keyIdOf(rootPublicKey), seed: rootSeed, publicKey: rootPublicKey }
    return { root, keys } as DeploymentKeys<P>
  })

/** Replace a principal's stored signing key with a fresh one; the next {@link ensureManifest} grants it. */
export const rotateSigningKey = (principal: Principal) =>
  Effect.gen(function* () {
    const seed = randomSeed()
    yield* (yield* KeyStore).save(principal, seed)
    return signingKeyOf(principal, seed)
  })

const manifestDir = (dir: string) => path.join(dir, "manifest")
const MANIFEST_FILE = /^([1-9][0-9]{0,8})\.json$/u

/** The parsed `<dir>/manifest/<version>.json` files, version 1 first (an empty list when there are none). */
const readManifestFiles = (dir: string) =>
  Effect.tryPromise({
    try: async () => {
      const mdir = manifestDir(dir)
      let names: Array<string>
      try {
        names = await fs.readdir(mdir)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
        throw e
      }
      const versions = names
        .flatMap((n) => {
          const m = MANIFEST_FILE.exec(n)
          return m === null ? [] : [Number(m[1])]
        })
        .sort((a, b) => a - b)
      const out: Array<unknown> = []
      for (const [i, v] of versions.entries()) {
        const file = path.join(mdir, `${v}.json`)
        if (v !== i + 1)
          throw new DeploymentError({ message: `${path.join(mdir, `${i + 1}.json`)} is missing`, path: file })
        try {
          out.push(JSON.parse(await fs.readFile(file, "utf8")))
        } catch (cause) {
          throw new DeploymentError({ message: `cannot read manifest ${file}`, path: file, cause })
        }
      }
      return out
    },
    catch: (cause) =>
      cause instanceof DeploymentError
        ? cause
        : new DeploymentError({
            message: `cannot read manifest directory ${manifestDir(dir)}`,
            path: manifestDir(dir),
            cause,
          }),
  })

/** The verified manifest chain stored under `<dir>/manifest/`. */
export const readManifestChain = (dir: string, rootPublicKey: Uint8Array) =>
  Effect.gen(function* () {
    const manifests = yield* readManifestFiles(dir)
    return yield* Effect.fromResult(ManifestChain.make(rootPublicKey, manifests))
  })

/** File name of the root public key (base64url, one line) beside the manifests, for processes that only verify. */
export const ROOT_PUBLIC_KEY_FILE = "root.pub"

/** Write `<dir>/root.pub` when it is missing or names another key. */
const writeRootPublicKey = (dir: string, root: RootKey) =>
  Effect.tryPromise({
    try: async () => {
      const text = `${Buffer.from(root.publicKey).toString("base64url")}\n`
      const current = await fs.readFile(path.join(dir, ROOT_PUBLIC_KEY_FILE), "utf8").catch(() => undefined)
      if (current !== text) writeFileAtomic(dir, ROOT_PUBLIC_KEY_FILE, text, { mode: 0o644, how: "replace" })
    },
    catch: (cause) => new DeploymentError({ message: `cannot write ${path.join(dir, ROOT_PUBLIC_KEY_FILE)}`, cause }),
  })

/** Write `<dir>/manifest/<version>.json` unless it exists; false when another writer got there first. */
const writeManifest = (dir: string, m: Manifest) =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(manifestDir(dir), { recursive: true, mode: 0o755 })
      // The file holds the canonical bytes, so `sha256sum <dir>/manifest/1.json` is the `prev` of version 2.
      return writeFileAtomic(manifestDir(dir), `${m.version}.json`, canonicalBytes(m), { mode: 0o644, how: "create" })
    },
    catch: (cause) =>
      new DeploymentError({ message: `cannot write manifest v${m.version}`, path: manifestDir(dir), cause }),
  })

/** What the manifest must change so that it grants exactly the stored keys, or undefined when it already does. */
const nextVersion = (
  chain: ManifestChain | undefined,
  keys: ReadonlyArray<SigningKey>,
  deployment: string,
  nowMs: number,
): Result.Result<UnsignedManifest | undefined, DeploymentError> => {
  if (chain === undefined) {
    const issuedAt = new Date(nowMs).toISOString()
    return Result.succeed(
      buildManifest({
        deployment,
        version: 1,
        issuedAt,
        prev: null,
        keys: keys.map((k) => ({ principal: k.principal, publicKey: k.publicKey })),
      }),
    )
  }
  const latest = chain.latest
  if (latest.deployment !== deployment) {
    return Result.fail(
      new DeploymentError({ message: `the manifest is for deployment ${latest.deployment}, not ${deployment}` }),
    )
  }
  const atMs = Math.max(nowMs, Date.parse(latest.issuedAt))
  const rotations: Array<SigningKey> = []
  for (const k of keys) {
    const granted = latest.keys.find((g) => g.kid === k.kid)
    if (granted === undefined) {
      rotations.push(k)
      continue
    }
    if (granted.principal !== k.principal) {
      return Result.fail(
        new DeploymentError({ message: `stored key ${k.kid} of ${k.principal} is granted to ${granted.principal}` }),
      )
    }
    if (granted.notAfter !== null && Date.parse(granted.notAfter) <= atMs) {
      return Result.fail(
        new DeploymentError({
          message: `stored key ${k.kid} of ${k.principal} was retired by manifest v${latest.version}; rotate it (rotateSigningKey)`,
        }),
      )
    }
  }
  if (rotations.length === 0) return Result.succeed(undefined)
  return Result.succeed(rotateKeys(latest, rotations, new Date(atMs).toISOString()))
}

/**
 * Keep the deployment's key manifest in step with the key store, and return the verified chain.
 *
 * Versions live as `<dir>/manifest/<version>.json` (canonical JSON, append-only: an existing version is never
 * rewritten). With none there, version 1 grants every principal's stored key its catalog types. When a principal's
 * stored key is not the one the latest version grants (see {@link rotateSigningKey}), the next version rotates to it.
 * Concurrent callers are safe: versions are created exclusively and the loser re-reads. The root public key, the
 * trust anchor for processes that only verify, is written beside them as `<dir>/root.pub` (base64url).
 */
export const ensureManifest = (
  dir: string,
  options: { readonly deployment?: string; readonly principals?: ReadonlyArray<Principal> } = {},
) =>
  Effect.gen(function* () {
    const { root, keys } = yield* ensureDeploymentKeys(options.principals ?? PRINCIPALS)
    const stored = Object.values<SigningKey>(keys)
    for (let attempt = 0; attempt < 5; attempt++) {
      const files = yield* readManifestFiles(dir)
      const chain = files.length === 0 ? undefined : yield* Effect.fromResult(ManifestChain.make(root.publicKey, files))
      const next = yield* Effect.fromResult(
        nextVersion(
          chain,
          stored,
          options.deployment ?? chain?.latest.deployment ?? "local",
          yield* Clock.currentTimeMillis,
        ),
      )
      if (next === undefined && chain !== undefined) {
        yield* writeRootPublicKey(dir, root)
        return chain
      }
      if (next !== undefined) yield* writeManifest(dir, signManifest(root.seed, next))
    }
    return yield* new DeploymentError({
      message: `manifest in ${manifestDir(dir)} kept changing under concurrent writers`,
    })
  })

/**
 * {@link ensureManifest} on a home's key directory, with every principal's signing key as the file keystore there
 * holds it: what a test or a sample log needs to sign as any principal of that home.
 */
export const homeSigningKeys = (dir: string) =>
  Effect.gen(function* () {
    const chain = yield* ensureManifest(dir)
    const { keys } = yield* ensureDeploymentKeys(PRINCIPALS)
    return { chain, keys }
  }).pipe(Effect.provide(KeyStore.layerFile(dir)))
