import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { keyIdOf, nodeEd25519 } from "@vigil/crypto"
import { writeFileAtomic } from "@vigil/durable"
import { Effect, Layer } from "effect"
import { afterEach, beforeEach } from "vitest"
import { KeyStore } from "./keystore.ts"

let tmp = ""
let dir = ""
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "vigil-keys-"))
  dir = path.join(tmp, "keys")
})
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true })
})

const seedOf = (byte: number) => new Uint8Array(32).fill(byte)
const mode = async (p: string) => (await fs.stat(p)).mode & 0o777
const inFiles = <A, E>(effect: Effect.Effect<A, E, KeyStore>) => Effect.provide(effect, KeyStore.layerFile(dir))

describe("KeyStore.layerFile", () => {
  it.effect("stores a key as a 0600 file in a 0700 directory it creates", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      yield* store.save("gateway", seedOf(7))
      assert.deepStrictEqual(yield* store.load("gateway"), seedOf(7))
      assert.strictEqual(yield* Effect.promise(() => mode(dir)), 0o700)
      assert.strictEqual(yield* Effect.promise(() => mode(path.join(dir, "gateway.key"))), 0o600)
    }).pipe(inFiles),
  )

  it.effect("key file: one JSON line naming the public key and kid beside the seed", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      yield* store.save("policy", seedOf(1))
      const text = yield* Effect.promise(() => fs.readFile(path.join(dir, "policy.key"), "utf8"))
      const publicKey = nodeEd25519.publicKey(seedOf(1))
      assert.deepStrictEqual(JSON.parse(text), {
        v: 1,
        alg: "ed25519",
        kid: keyIdOf(publicKey),
        publicKey: Buffer.from(publicKey).toString("base64url"),
        seed: Buffer.from(seedOf(1)).toString("base64url"),
      })
      assert.isTrue(text.endsWith("}\n"))
    }).pipe(inFiles),
  )

  it.effect("refuses a group/world-readable key file without revealing the seed", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      yield* store.save("dlp", seedOf(9))
      yield* Effect.promise(() => fs.chmod(path.join(dir, "dlp.key"), 0o644))
      const err = yield* Effect.flip(store.load("dlp"))
      assert.strictEqual(err._tag, "KeyPermissionError")
      assert.include(err.message, "0644")
      assert.include(err.message, "chmod 600")
      assert.notInclude(err.message, Buffer.from(seedOf(9)).toString("base64url"))
      // loadOrCreate must not paper over it by creating a new key
      assert.strictEqual((yield* Effect.flip(store.loadOrCreate("dlp")))._tag, "KeyPermissionError")
      yield* Effect.promise(() => fs.chmod(path.join(dir, "dlp.key"), 0o640))
      assert.strictEqual((yield* Effect.flip(store.load("dlp")))._tag, "KeyPermissionError")
      yield* Effect.promise(() => fs.chmod(path.join(dir, "dlp.key"), 0o400))
      assert.deepStrictEqual(yield* store.load("dlp"), seedOf(9))
    }).pipe(inFiles),
  )

  it.effect.skipIf(process.getuid?.() !== 0)("refuses a key file owned by another user", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      yield* store.save("sandbox", seedOf(3))
      yield* Effect.promise(() => fs.chown(path.join(dir, "sandbox.key"), 65534, 65534))
      const err = yield* Effect.flip(store.load("sandbox"))
      assert.strictEqual(err._tag, "KeyPermissionError")
      assert.include(err.message, "another owner")
    }).pipe(inFiles),
  )

  it.effect("refuses to open a key directory that group or others can access", () =>
    Effect.gen(function* () {
      yield* Effect.promise(() => fs.mkdir(dir, { mode: 0o755 }))
      yield* Effect.promise(() => fs.chmod(dir, 0o755))
      const err = yield* Effect.flip(Effect.scoped(Layer.build(KeyStore.layerFile(dir))))
      assert.strictEqual(err._tag, "KeyPermissionError")
      assert.include(err.message, "chmod 700")
    }),
  )

  it.effect("refuses malformed or damaged key files without quoting them", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      const write = (name: string, text: string) =>
        Effect.promise(() => fs.writeFile(path.join(dir, `${name}.key`), text, { mode: 0o600 }))
      yield* write("a", "not json at all SECRETSECRET")
      yield* store.save("b", seedOf(2))
      const good = JSON.parse(yield* Effect.promise(() => fs.readFile(path.join(dir, "b.key"), "utf8")))
      yield* write("c", JSON.stringify({ ...good, seed: Buffer.from(seedOf(5)).toString("base64url") }))
      yield* write("d", JSON.stringify({ ...good, extra: 1 }))
      for (const name of ["a", "c", "d"]) {
        const err = yield* Effect.flip(store.load(name))
        assert.strictEqual(err._tag, "KeyStoreError")
        assert.include(err.message, "malformed or damaged")
        assert.notInclude(err.message, "SECRET")
        assert.notInclude(err.message, Buffer.from(seedOf(5)).toString("base64url"))
      }
    }).pipe(inFiles),
  )

  it.effect("atomic writes: replacing keys leaves only key files, never temp files", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      for (let i = 0; i < 20; i++) yield* store.save("inference", seedOf(i))
      yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => store.save(`k${i % 4}`, seedOf(i))),
        { concurrency: "unbounded" },
      )
      const names = yield* Effect.promise(() => fs.readdir(dir))
      assert.deepStrictEqual(names.sort(), ["inference.key", "k0.key", "k1.key", "k2.key", "k3.key"])
      assert.deepStrictEqual(yield* store.load("inference"), seedOf(19))
      assert.deepStrictEqual(yield* store.list(), ["inference", "k0", "k1", "k2", "k3"])
    }).pipe(inFiles),
  )

  it.effect("exclusive create never replaces an existing file and cleans up its temp file", () =>
    Effect.gen(function* () {
      yield* Effect.promise(() => fs.mkdir(dir, { mode: 0o700 }))
      assert.isTrue(writeFileAtomic(dir, "x", "one", { mode: 0o600, how: "create" }))
      assert.isFalse(writeFileAtomic(dir, "x", "two", { mode: 0o600, how: "create" }))
      assert.strictEqual(yield* Effect.promise(() => fs.readFile(path.join(dir, "x"), "utf8")), "one")
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dir)), ["x"])
    }),
  )

  it.effect("loadOrCreate creates once, even under concurrent callers", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      const seeds = yield* Effect.all(
        Array.from({ length: 16 }, () => store.loadOrCreate("root")),
        { concurrency: "unbounded" },
      )
      for (const s of seeds) assert.deepStrictEqual(s, seeds[0])
      assert.strictEqual(seeds[0]?.length, 32)
      assert.deepStrictEqual(yield* store.load("root"), seeds[0])
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dir)), ["root.key"])
    }).pipe(inFiles),
  )

  it.effect("rejects key names that could escape the directory, and seeds that are not 32 bytes", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      for (const name of ["../root", "a/b", "", ".hidden", "Root", "x".repeat(65)]) {
        assert.strictEqual((yield* Effect.flip(store.load(name)))._tag, "KeyStoreError")
        assert.strictEqual((yield* Effect.flip(store.save(name, seedOf(1))))._tag, "KeyStoreError")
      }
      assert.strictEqual((yield* Effect.flip(store.save("short", new Uint8Array(31))))._tag, "KeyStoreError")
      assert.strictEqual((yield* Effect.flip(store.load("absent")))._tag, "KeyNotFound")
    }).pipe(inFiles),
  )
})

describe("KeyStore.layerMemory", () => {
  it.effect("load, save, loadOrCreate, list; returned seeds are copies", () =>
    Effect.gen(function* () {
      const store = yield* KeyStore
      assert.strictEqual((yield* Effect.flip(store.load("gateway")))._tag, "KeyNotFound")
      const seed = seedOf(4)
      yield* store.save("gateway", seed)
      seed.fill(0)
      const loaded = yield* store.load("gateway")
      assert.deepStrictEqual(loaded, seedOf(4))
      loaded.fill(0)
      assert.deepStrictEqual(yield* store.load("gateway"), seedOf(4))
      const root = yield* store.loadOrCreate("root")
      assert.deepStrictEqual(yield* store.loadOrCreate("root"), root)
      assert.deepStrictEqual(yield* store.list(), ["gateway", "root"])
    }).pipe(Effect.provide(KeyStore.layerMemory)),
  )
})
