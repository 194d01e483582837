import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { keyIdOf, nodeEd25519 } from "@vigil/crypto"
import { encodeEvent, newEventId, PRINCIPALS, type SigningKey, signEvent, verifyEvent } from "@vigil/events"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { afterEach, beforeEach } from "vitest"
import type { ManifestChain } from "./chain.ts"
import {
  ensureDeploymentKeys,
  ensureManifest,
  ROOT_PUBLIC_KEY_FILE,
  readManifestChain,
  rotateSigningKey,
} from "./deployment.ts"
import { KeyStore } from "./keystore.ts"

let dir = ""
beforeEach(async () => {
  dir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), "vigil-deploy-")), "keys")
})
afterEach(async () => {
  await fs.rm(path.dirname(dir), { recursive: true, force: true })
})

const T0 = Date.parse("2025-01-01T00:00:00.000Z")
const T1 = Date.parse("2025-02-01T00:00:00.000Z")
const withFiles = <A, E>(effect: Effect.Effect<A, E, KeyStore>) => Effect.provide(effect, KeyStore.layerFile(dir))
const manifestFiles = () => Effect.promise(async () => (await fs.readdir(path.join(dir, "manifest"))).sort())

/** A `consent.denied` event by `key` at `at`, as wire bytes. */
const eventBytes = (key: SigningKey, at: number, type: "consent.denied" | "containment.ordered" = "consent.denied") => {
  const data =
    type === "consent.denied" ? { request: newEventId(at), intent: newEventId(at) } : { target: "s1", reason: "test" }
  return encodeEvent(
    signEvent(key, { type, session: "s1", data, id: newEventId(at), time: new Date(at).toISOString() } as never),
  )
}
const verify = (bytes: Uint8Array, chain: ManifestChain) => verifyEvent(bytes, { keys: chain, maxBytes: 65_536 })

describe("ensureDeploymentKeys", () => {
  it.effect("creates the root key and one signing key per principal, then loads the same ones", () =>
    Effect.gen(function* () {
      const first = yield* ensureDeploymentKeys(["gateway", "dlp"])
      const again = yield* ensureDeploymentKeys(["gateway", "dlp"])
      assert.deepStrictEqual(again, first)
      assert.strictEqual(first.keys.gateway.principal, "gateway")
      assert.strictEqual(first.keys.gateway.kid, keyIdOf(first.keys.gateway.publicKey))
      assert.deepStrictEqual(first.keys.gateway.publicKey, nodeEd25519.publicKey(first.keys.gateway.seed))
      assert.strictEqual(first.root.kid, keyIdOf(first.root.publicKey))
      assert.strictEqual(new Set([first.root.kid, first.keys.gateway.kid, first.keys.dlp.kid]).size, 3)
      assert.deepStrictEqual(yield* (yield* KeyStore).list(), ["dlp", "gateway", "root"])
    }).pipe(withFiles),
  )
})

describe("ensureManifest", () => {
  it.effect("writes version 1 once, as canonical bytes, and the root public key beside it", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const chain = yield* ensureManifest(dir)
      assert.strictEqual(chain.latest.version, 1)
      assert.strictEqual(chain.latest.deployment, "local")
      assert.deepStrictEqual(
        chain.latest.keys.map((k) => k.principal),
        [...PRINCIPALS],
      )
      assert.strictEqual(chain.latest.issuedAt, "2025-01-01T00:00:00.000Z")
      assert.deepStrictEqual(yield* manifestFiles(), ["1.json"])
      yield* TestClock.setTime(T1)
      assert.strictEqual((yield* ensureManifest(dir)).latest.version, 1)
      assert.deepStrictEqual(yield* manifestFiles(), ["1.json"])
      const { root } = yield* ensureDeploymentKeys([])
      const pub = yield* Effect.promise(() => fs.readFile(path.join(dir, ROOT_PUBLIC_KEY_FILE), "utf8"))
      assert.strictEqual(pub, `${Buffer.from(root.publicKey).toString("base64url")}\n`)
      const back = yield* readManifestChain(dir, root.publicKey)
      assert.deepStrictEqual(back.manifests, chain.manifests)
    }).pipe(withFiles),
  )

  it.effect("a rotated stored key becomes the next version; `sha256sum N.json` is the prev of N+1", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const v1 = yield* ensureManifest(dir, { principals: ["gateway", "dlp"] })
      yield* TestClock.setTime(T1)
      const fresh = yield* rotateSigningKey("gateway")
      const v2 = yield* ensureManifest(dir, { principals: ["gateway", "dlp"] })
      assert.strictEqual(v2.latest.version, 2)
      assert.deepStrictEqual(yield* manifestFiles(), ["1.json", "2.json"])
      const bytes = yield* Effect.promise(() => fs.readFile(path.join(dir, "manifest", "1.json")))
      assert.strictEqual(v2.latest.prev, createHash("sha256").update(bytes).digest("hex"))
      const oldGateway = v1.latest.keys.find((k) => k.principal === "gateway")
      assert.deepStrictEqual(
        v2.latest.keys.filter((k) => k.principal === "gateway").map((k) => [k.kid, k.notBefore, k.notAfter]),
        [
          [oldGateway?.kid, "2025-01-01T00:00:00.000Z", "2025-02-01T00:00:00.000Z"],
          [fresh.kid, "2025-02-01T00:00:00.000Z", null],
        ],
      )
      // append-only: the earlier version is untouched
      assert.deepStrictEqual(v2.manifests[0], v1.latest)
    }).pipe(withFiles),
  )

  it.effect("refuses a stored key that the manifest already retired, and a gap in the files", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      yield* ensureManifest(dir, { principals: ["gateway"] })
      const store = yield* KeyStore
      const old = yield* store.load("gateway")
      yield* TestClock.setTime(T1)
      yield* rotateSigningKey("gateway")
      yield* ensureManifest(dir, { principals: ["gateway"] })
      yield* store.save("gateway", old)
      const retired = yield* Effect.flip(ensureManifest(dir, { principals: ["gateway"] }))
      assert.strictEqual(retired._tag, "DeploymentError")
      assert.include(retired.message, "retired")

      yield* Effect.promise(() => fs.rename(path.join(dir, "manifest", "2.json"), path.join(dir, "manifest", "3.json")))
      const gap = yield* Effect.flip(ensureManifest(dir, { principals: ["gateway"] }))
      assert.strictEqual(gap._tag, "DeploymentError")
      assert.include(gap.message, "2.json is missing")
    }).pipe(withFiles),
  )

  it.effect("refuses a manifest directory signed by another root", () =>
    Effect.gen(function* () {
      yield* ensureManifest(dir, { principals: ["gateway"] })
      yield* (yield* KeyStore).save("root", new Uint8Array(32).fill(1))
      const err = yield* Effect.flip(ensureManifest(dir, { principals: ["gateway"] }))
      assert.strictEqual(err._tag, "ManifestChainError")
      assert.strictEqual(err._tag === "ManifestChainError" && err.reason, "wrong_root")
    }).pipe(withFiles),
  )

  it.effect("concurrent callers agree on one history", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const chains = yield* Effect.all(
        Array.from({ length: 6 }, () => ensureManifest(dir, { principals: ["gateway", "dlp"] })),
        { concurrency: "unbounded" },
      )
      for (const c of chains) assert.deepStrictEqual(c.manifests, chains[0]?.manifests)
      assert.deepStrictEqual(yield* manifestFiles(), ["1.json"])
    }).pipe(withFiles),
  )
})

describe("end to end with @vigil/events", () => {
  it.effect("events signed by deployment keys verify against the chain, across a rotation", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const { keys } = yield* ensureDeploymentKeys(["gateway"])
      const v1 = yield* ensureManifest(dir)
      const ok = verify(eventBytes(keys.gateway, T0 + 1000), v1)
      assert.isTrue(ok.ok)
      assert.strictEqual(ok.ok && ok.key.manifestVersion, 1)

      // a key signing a type its principal is not granted
      const refused = verify(eventBytes(keys.gateway, T0 + 1000, "containment.ordered"), v1)
      assert.isFalse(refused.ok)
      assert.strictEqual(!refused.ok && refused.reason, "key_not_authorized")

      yield* TestClock.setTime(T1)
      const fresh = yield* rotateSigningKey("gateway")
      const v2 = yield* ensureManifest(dir)
      const before = verify(eventBytes(keys.gateway, T1 - 1), v2)
      assert.isTrue(before.ok)
      const after = verify(eventBytes(keys.gateway, T1 + 1), v2)
      assert.isFalse(after.ok)
      assert.strictEqual(!after.ok && after.reason, "key_expired")
      const renewed = verify(eventBytes(fresh, T1 + 1), v2)
      assert.isTrue(renewed.ok)
      assert.strictEqual(renewed.ok && renewed.key.manifestVersion, 2)
      const early = verify(eventBytes(fresh, T1 - 1), v2)
      assert.strictEqual(!early.ok && early.reason, "key_not_yet_valid")
      const stranger = verify(eventBytes({ ...fresh, seed: new Uint8Array(32).fill(3), kid: "00".repeat(8) }, T1), v2)
      assert.strictEqual(!stranger.ok && stranger.reason, "unknown_key")
      // a forged signature under a known kid is bad_signature, not key_expired
      const forged = verify(eventBytes({ ...keys.gateway, seed: new Uint8Array(32).fill(4) }, T1 + 1), v2)
      assert.strictEqual(!forged.ok && forged.reason, "bad_signature")
    }).pipe(withFiles),
  )
})
