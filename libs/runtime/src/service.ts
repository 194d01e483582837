import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import {
  BusConfig,
  type ConsumerHandle,
  consume,
  DeadLetters,
  durablesOf,
  type Handler,
  Nats,
  type Nats as NatsService,
  Publisher,
  publishHealth,
  Signer,
  Trust,
  Verifier,
} from "@vigil/bus"
import {
  type EventType,
  fastEd25519,
  KEYS_MANIFEST_SUBJECT,
  keyIdOf,
  type Service,
  type SigningKey,
} from "@vigil/events"
import { KeyStore, ManifestChain } from "@vigil/keys"
import { Data, Effect, Fiber, Layer, Option, Redacted, Result, type Scope } from "effect"
import { type Home, homeFromEnv } from "./home.ts"
import { type Log, makePino, pinoLoggerLayer } from "./logger.ts"
import { isAlive } from "./processes.ts"

export class ServiceStartError extends Data.TaggedError("ServiceStartError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Handlers by input type. A type the service consumes but has no handler for yet is verified and acked. */
export type Handlers<R> = { readonly [T in EventType]?: Handler<T, R> }

/** What a service's own consumption program gets: its verified key and manifest, its data dir, its logger. */
export interface ServiceContext {
  readonly key: SigningKey
  readonly chain: ManifestChain
  readonly home: Home
  readonly log: Log
}

export interface ServiceDefinition<R> {
  readonly name: Service
  readonly handlers?: Handlers<R>
  /**
   * Instead of one handler per input type, the service binds its durables itself (e.g. the auditor's batched
   * ingest); returns its consumer handles and extra health fields.
   */
  readonly custom?: (
    ctx: ServiceContext,
  ) => Effect.Effect<
    { readonly handles: ReadonlyArray<ConsumerHandle>; readonly health?: () => Record<string, unknown> },
    unknown,
    R | BusConfig | NatsService | Trust | Signer | Publisher | DeadLetters | Scope.Scope
  >
  /** Extra services the handlers need (domain state, engines). */
  readonly layer?: Layer.Layer<R, unknown, NatsService | Publisher>
  /** Extra fields for the health report. */
  readonly health?: () => Record<string, unknown>
  /**
   * Signature worker threads (`VIGIL_VERIFY_WORKERS` overrides): unset, one per CPU beyond the first; 0 checks
   * signatures on the event loop, which suits a service bound by latency rather than throughput.
   */
  readonly verifyWorkers?: number
}

const fail = (message: string, cause?: unknown) =>
  new ServiceStartError({ message, ...(cause === undefined ? {} : { cause }) })

/** The deployment's manifest history from `<home>/keys/manifest/<n>.json`, verified under the root public key. */
export const loadChain = (home: Home): Effect.Effect<ManifestChain, ServiceStartError> =>
  Effect.gen(function* () {
    const rootPub = yield* Effect.try({
      try: () => new Uint8Array(Buffer.from(readFileSync(join(home.keys, "root.pub"), "utf8").trim(), "base64url")),
      catch: (cause) =>
        fail(`cannot read the root public key ${join(home.keys, "root.pub")} (run \`vigil up\` once)`, cause),
    })
    const manifests = yield* Effect.try({
      try: () =>
        readdirSync(home.manifests)
          .filter((f) => /^\d+\.json$/.test(f))
          .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10))
          .map((f) => JSON.parse(readFileSync(join(home.manifests, f), "utf8")) as unknown),
      catch: (cause) => fail(`cannot read key manifests in ${home.manifests}`, cause),
    })
    const chain = ManifestChain.make(rootPub, manifests)
    if (Result.isFailure(chain)) return yield* fail(`key manifest refused: ${chain.failure.message}`)
    return chain.success
  })

/** The service's signing key, checked against the latest manifest: a key the manifest does not list cannot sign. */
export const loadSigningKey = (
  home: Home,
  name: Service,
  chain: ManifestChain,
): Effect.Effect<SigningKey, ServiceStartError> =>
  Effect.gen(function* () {
    const seed = yield* KeyStore.use((ks) => ks.load(name)).pipe(
      Effect.provide(KeyStore.layerFile(home.keys)),
      Effect.mapError((e) => fail(`cannot load the ${name} signing key from ${home.keys}: ${e._tag}`, e)),
    )
    const publicKey = fastEd25519.publicKey(seed)
    const kid = keyIdOf(publicKey)
    const entry = chain.latest.keys.find((k) => k.kid === kid)
    // A retired key (notAfter set) would start fine and then have every event refused as key_expired.
    if (entry === undefined || entry.principal !== name || entry.notAfter !== null) {
      return yield* fail(
        `the ${name} key ${kid} is not in key manifest v${chain.latest.version}; re-run \`vigil up\` to rotate it in`,
      )
    }
    return { principal: name, kid, seed, publicKey }
  })

/**
 * Everything a Vigil service process does before its domain logic: load its key, check it against the signed
 * manifest, connect as its own NATS user, bind its durables (verification + DLQ in libs/bus), follow manifest
 * rotations live, answer health requests; then run until SIGTERM/SIGINT and shut down through the layer graph.
 */
export const serviceProgram = <R>(def: ServiceDefinition<R>, home: Home, log: Log) =>
  Effect.gen(function* () {
    const chain = yield* loadChain(home)
    const key = yield* loadSigningKey(home, def.name, chain)
    const url = process.env.VIGIL_NATS_URL
    if (url === undefined) return yield* fail("VIGIL_NATS_URL is not set")
    const seed = yield* Effect.try({
      try: () => readFileSync(join(home.nats, `${def.name}.nk`), "utf8").trim(),
      catch: (cause) => fail(`cannot read the ${def.name} NATS credentials in ${home.nats}`, cause),
    })
    const trust = Trust.make(chain)
    const config = BusConfig.layer({ url, user: def.name, nkeySeed: Option.some(Redacted.make(seed)) })
    const fromEnv = process.env.VIGIL_VERIFY_WORKERS
    if (fromEnv !== undefined && !/^\d{1,3}$/u.test(fromEnv)) {
      return yield* fail(
        `VIGIL_VERIFY_WORKERS must be a whole number of threads (0 = inline), got ${JSON.stringify(fromEnv)}`,
      )
    }
    const workers = fromEnv === undefined ? def.verifyWorkers : Number(fromEnv)
    const verifier = workers === 0 ? Verifier.inline : Verifier.layer(workers === undefined ? {} : { workers })
    const base = Layer.mergeAll(Nats.layer, Signer.layer(key), Layer.succeed(Trust, Trust.of(trust)), verifier).pipe(
      Layer.provideMerge(config),
    )
    const bus = Layer.mergeAll(Publisher.layer, DeadLetters.layer).pipe(Layer.provideMerge(base))
    const app = def.layer === undefined ? bus : Layer.provideMerge(def.layer, bus)

    const run = Effect.gen(function* () {
      const { nc } = yield* Nats
      // Manifest rotations are announced by the provisioner; each version is root-signed and verified on append.
      const sub = nc.subscribe(KEYS_MANIFEST_SUBJECT, {
        callback: (_err, msg) => {
          let parsed: unknown
          try {
            parsed = msg.json()
          } catch {
            return
          }
          const r = chain.append(parsed)
          if (Result.isFailure(r))
            log.warn({ reason: r.failure.reason }, `ignored key manifest update: ${r.failure.message}`)
          else log.info({ version: r.success.version }, "key manifest updated")
        },
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
      const handles: Array<ConsumerHandle> = []
      let customHealth: (() => Record<string, unknown>) | undefined
      if (def.custom !== undefined) {
        const started = yield* def.custom({ key, chain, home, log })
        handles.push(...started.handles)
        customHealth = started.health
      } else {
        for (const d of durablesOf(def.name)) {
          const h = (d.types.length === 1 ? def.handlers?.[d.types[0] as EventType] : undefined) as
            | Handler<EventType, R>
            | undefined
          handles.push(yield* consume({ durable: d.durable, stream: d.stream }, h ?? (() => Effect.void)))
        }
      }
      yield* publishHealth(def.name, () => ({
        ok: true,
        kid: key.kid,
        manifestVersion: trust.latestVersion(),
        consumers: Object.fromEntries(handles.map((h) => [h.durable, { ...h.stats }])),
        ...def.health?.(),
        ...customHealth?.(),
      }))
      log.info({ kid: key.kid, manifestVersion: chain.latest.version, durables: handles.length }, `${def.name} ready`)
      return yield* Effect.never
    })
    // `def.layer` provides R, which the compiler cannot see through the conditional above.
    return yield* Effect.scoped(run).pipe(Effect.provide(app)) as Effect.Effect<never, unknown>
  })

/** Process entry point for a service: runs {@link serviceProgram}, exits 0 on SIGTERM/SIGINT after a clean drain. */
export const runService = <R>(def: ServiceDefinition<R>): void => {
  const log = makePino(def.name)
  const home = homeFromEnv()
  const fiber = Effect.runFork(serviceProgram(def, home, log).pipe(Effect.provide(pinoLoggerLayer(log))))
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, `${def.name} stopping`)
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.once("SIGTERM", () => stop("SIGTERM"))
  process.once("SIGINT", () => stop("SIGINT"))
  // A supervisor killed with SIGKILL cannot stop its children; a service started by one stops when it is gone,
  // rather than living on as an orphan holding credentials and a bus connection.
  const supervisor = Number(process.env.VIGIL_SUPERVISOR_PID)
  if (Number.isInteger(supervisor) && supervisor > 1) {
    setInterval(() => {
      if (!isAlive(supervisor)) stop("supervisor gone")
    }, 1_000).unref()
  }
  fiber.addObserver((exit) => {
    if (exit._tag === "Success" || stopping) {
      log.info(`${def.name} stopped`)
      log.flush()
      process.exitCode = 0
    } else {
      log.fatal({ cause: String(exit.cause) }, `${def.name} failed`)
      log.flush()
      process.exitCode = 1
    }
    // Give pino's async destination a moment, then leave even if a stray handle would keep the loop alive.
    setTimeout(() => process.exit(), 200).unref()
  })
}
