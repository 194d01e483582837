import { constants } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fastEd25519, keyIdOf, randomSeed } from "@vigil/crypto"
import { writeFileAtomic } from "@vigil/durable"
import { Context, Data, Effect, Layer, Schema } from "effect"

/** Key names are lower-case file-name-safe tokens ("root", "gateway", …): no path separators, no case collisions. */
export const KEY_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/u

/** No key is stored under this name. */
export class KeyNotFound extends Data.TaggedError("KeyNotFound")<{ readonly name: string; readonly message: string }> {}

/** A key file or key directory that others could read or replace. Nothing is read from it. */
export class KeyPermissionError extends Data.TaggedError("KeyPermissionError")<{
  readonly path: string
  readonly mode: number
  readonly message: string
}> {}

/** The store could not be read or written, a key file is malformed, or a key name is invalid. */
export class KeyStoreError extends Data.TaggedError("KeyStoreError")<{
  readonly op: "load" | "save" | "list" | "open"
  readonly name?: string
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Named Ed25519 seeds (32 bytes, the RFC 8032 private key) of a deployment: the root key that signs the key manifest
 * and one signing key per principal.
 *
 * The interface speaks only of names and seeds, so another backend (an OS keychain such as libsecret or the macOS
 * Keychain, or a hardware token that unwraps a stored seed) is just another layer; callers do not change. A device
 * that never releases the seed would instead need a `sign(name, bytes)` method here and a signer in place of
 * `SigningKey.seed`. Implementations never log secret material or put it in errors.
 */
export class KeyStore extends Context.Service<
  KeyStore,
  {
    /** The seed stored under `name`. */
    load(name: string): Effect.Effect<Uint8Array, KeyNotFound | KeyPermissionError | KeyStoreError>
    /** Store `seed` under `name`, replacing any previous key of that name (a rotation). */
    save(name: string, seed: Uint8Array): Effect.Effect<void, KeyStoreError>
    /** The seed under `name`; when there is none, a fresh random one is stored first (at most once, race-free). */
    loadOrCreate(name: string): Effect.Effect<Uint8Array, KeyPermissionError | KeyStoreError>
    /** Names of the stored keys, sorted. */
    list(): Effect.Effect<ReadonlyArray<string>, KeyStoreError>
  }
>()("@vigil/keys/KeyStore") {
  /**
   * Keys as files `<dir>/<name>.key` (see {@link KeyFile}), mode 0600, in a directory of mode 0700 that is created
   * when missing. Like OpenSSH, it refuses a key file or directory that group or others may access.
   */
  static layerFile(dir: string): Layer.Layer<KeyStore, KeyPermissionError | KeyStoreError> {
    return Layer.effect(KeyStore, makeFileStore(dir))
  }

  /** Keys in memory, for tests. */
  static readonly layerMemory: Layer.Layer<KeyStore> = Layer.sync(KeyStore, () => makeMemoryStore())
}

/**
 * The key file, one line of JSON: `{"v":1,"alg":"ed25519","kid":…,"publicKey":…,"seed":…}` with base64url (no
 * padding) `seed` and `publicKey`. The public key and kid are there so an operator can tell which key a file holds
 * without touching the seed, and they are checked against the seed on load (a damaged file is refused).
 */
export const KeyFile = Schema.Struct({
  v: Schema.Literal(1),
  alg: Schema.Literal("ed25519"),
  kid: Schema.String,
  publicKey: Schema.String,
  seed: Schema.String.pipe(Schema.check(Schema.isPattern(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/u))),
})
export type KeyFile = typeof KeyFile.Type

const decodeKeyFile = Schema.decodeUnknownOption(Schema.fromJsonString(KeyFile), { onExcessProperty: "error" })

const keyFileText = (seed: Uint8Array): string => {
  const publicKey = fastEd25519.publicKey(seed)
  const file: KeyFile = {
    v: 1,
    alg: "ed25519",
    kid: keyIdOf(publicKey),
    publicKey: Buffer.from(publicKey).toString("base64url"),
    seed: Buffer.from(seed).toString("base64url"),
  }
  return `${JSON.stringify(file)}\n`
}

/** The seed in a key file's text, or undefined when the text is not a consistent key file. */
const seedOfKeyFile = (text: string): Uint8Array | undefined => {
  // No schema message is passed on: it could quote the seed.
  const file = decodeKeyFile(text)
  if (file._tag === "None") return undefined
  const seed = new Uint8Array(Buffer.from(file.value.seed, "base64url"))
  const publicKey = fastEd25519.publicKey(seed)
  const ok =
    Buffer.from(publicKey).toString("base64url") === file.value.publicKey && keyIdOf(publicKey) === file.value.kid
  return ok ? seed : undefined
}

const checkName = (op: KeyStoreError["op"], name: string): Effect.Effect<void, KeyStoreError> =>
  KEY_NAME_PATTERN.test(name)
    ? Effect.void
    : Effect.fail(new KeyStoreError({ op, name, message: `invalid key name ${JSON.stringify(name.slice(0, 80))}` }))

const checkSeed = (name: string, seed: Uint8Array): Effect.Effect<void, KeyStoreError> =>
  seed instanceof Uint8Array && seed.length === 32
    ? Effect.void
    : Effect.fail(new KeyStoreError({ op: "save", name, message: "an Ed25519 seed is 32 bytes" }))

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`

const errnoOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code

const makeMemoryStore = (): KeyStore["Service"] => {
  const keys = new Map<string, Uint8Array>()
  const load = (name: string) =>
    checkName("load", name).pipe(
      Effect.flatMap(() => {
        const seed = keys.get(name)
        return seed === undefined
          ? Effect.fail(new KeyNotFound({ name, message: `no key named ${name}` }))
          : Effect.succeed(seed.slice())
      }),
    )
  const save = (name: string, seed: Uint8Array) =>
    Effect.andThen(checkName("save", name), checkSeed(name, seed)).pipe(
      Effect.andThen(Effect.sync(() => void keys.set(name, seed.slice()))),
    )
  return KeyStore.of({
    load,
    save,
    loadOrCreate: (name) =>
      load(name).pipe(
        Effect.catchTag("KeyNotFound", () =>
          Effect.sync(() => {
            const seed = randomSeed()
            keys.set(name, seed.slice())
            return seed
          }),
        ),
      ),
    list: () => Effect.sync(() => [...keys.keys()].sort()),
  })
}

const makeFileStore = Effect.fnUntraced(function* (dir: string) {
  yield* Effect.tryPromise({
    try: () => fs.mkdir(dir, { recursive: true, mode: 0o700 }),
    catch: (cause) => new KeyStoreError({ op: "open", message: `cannot create key directory ${dir}`, cause }),
  })
  const dirStat = yield* Effect.tryPromise({
    try: () => fs.stat(dir),
    catch: (cause) => new KeyStoreError({ op: "open", message: `cannot stat key directory ${dir}`, cause }),
  })
  if (!dirStat.isDirectory()) {
    return yield* new KeyStoreError({ op: "open", message: `key directory ${dir} is not a directory` })
  }
  if ((dirStat.mode & 0o077) !== 0) {
    return yield* new KeyPermissionError({
      path: dir,
      mode: dirStat.mode & 0o777,
      message: `key directory ${dir} has mode ${octal(dirStat.mode)}; group and others must have no access (chmod 700 ${dir})`,
    })
  }

  const fileOf = (name: string) => path.join(dir, `${name}.key`)

  const load = Effect.fn("KeyStore.load")(function* (name: string) {
    yield* checkName("load", name)
    const file = fileOf(name)
    const read = yield* Effect.tryPromise({
      try: () => readPrivateFile(file),
      catch: (cause) => new KeyStoreError({ op: "load", name, message: `cannot read key file ${file}`, cause }),
    })
    switch (read.kind) {
      case "missing":
        return yield* new KeyNotFound({ name, message: `no key file ${file}` })
      case "insecure":
        return yield* new KeyPermissionError({
          path: file,
          mode: read.mode,
          message: `key file ${file} has mode ${octal(read.mode)}${read.foreignOwner ? " and another owner" : ""}; it must be owned by this user and not be accessible to group or others (chmod 600 ${file})`,
        })
      case "not-a-file":
        return yield* new KeyStoreError({ op: "load", name, message: `key file ${file} is not a regular file` })
    }
    const seed = seedOfKeyFile(read.text)
    if (seed === undefined) {
      return yield* new KeyStoreError({ op: "load", name, message: `key file ${file} is malformed or damaged` })
    }
    return seed
  })

  const write = (name: string, seed: Uint8Array, how: "replace" | "create") =>
    Effect.try({
      try: () => writeFileAtomic(dir, `${name}.key`, keyFileText(seed), { mode: 0o600, how }),
      catch: (cause) =>
        new KeyStoreError({ op: "save", name, message: `cannot write key file ${fileOf(name)}`, cause }),
    })

  const save = Effect.fn("KeyStore.save")(function* (name: string, seed: Uint8Array) {
    yield* checkName("save", name)
    yield* checkSeed(name, seed)
    yield* write(name, seed, "replace")
  })

  const loadOrCreate = Effect.fn("KeyStore.loadOrCreate")(function* (name: string) {
    yield* checkName("load", name)
    const existing = yield* load(name).pipe(Effect.catchTag("KeyNotFound", () => Effect.succeed(undefined)))
    if (existing !== undefined) return existing
    const seed = randomSeed()
    // Created by link, which refuses to replace: if another process created the key meanwhile, use theirs.
    const created = yield* write(name, seed, "create")
    if (!created) {
      return yield* load(name).pipe(
        Effect.catchTag("KeyNotFound", (e) => Effect.fail(new KeyStoreError({ op: "load", name, message: e.message }))),
      )
    }
    yield* Effect.logDebug("created key").pipe(
      Effect.annotateLogs({ key: name, kid: keyIdOf(fastEd25519.publicKey(seed)) }),
    )
    return seed
  })

  const list = Effect.fn("KeyStore.list")(function* () {
    const names = yield* Effect.tryPromise({
      try: () => fs.readdir(dir),
      catch: (cause) => new KeyStoreError({ op: "list", message: `cannot list key directory ${dir}`, cause }),
    })
    return names
      .filter((n) => n.endsWith(".key") && KEY_NAME_PATTERN.test(n.slice(0, -4)))
      .map((n) => n.slice(0, -4))
      .sort()
  })

  return KeyStore.of({ load, save, loadOrCreate, list })
})

type PrivateRead =
  | { readonly kind: "ok"; readonly text: string }
  | { readonly kind: "missing" }
  | { readonly kind: "not-a-file" }
  | { readonly kind: "insecure"; readonly mode: number; readonly foreignOwner: boolean }

/**
 * Read a file only if it is a regular file owned by this user with no group or other permission bits. The checks
 * use fstat on the opened descriptor, so the file checked is the file read (a symlink is followed and its target
 * checked).
 */
const readPrivateFile = async (file: string): Promise<PrivateRead> => {
  let handle: fs.FileHandle
  try {
    handle = await fs.open(file, constants.O_RDONLY)
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return { kind: "missing" }
    throw e
  }
  try {
    const st = await handle.stat()
    if (!st.isFile()) return { kind: "not-a-file" }
    const foreignOwner = process.getuid !== undefined && st.uid !== process.getuid()
    if ((st.mode & 0o077) !== 0 || foreignOwner) return { kind: "insecure", mode: st.mode & 0o777, foreignOwner }
    return { kind: "ok", text: await handle.readFile("utf8") }
  } finally {
    await handle.close()
  }
}
