import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import {
  BusConfig,
  type BusConnectError,
  type ConsumeError,
  type ConsumerHandle,
  consume,
  DeadLetters,
  type Handler,
  HandlerError,
  Nats,
  Publisher,
  publishHealth,
  Signer,
  type StreamReadError,
  StreamReader,
  Trust,
  Verifier,
} from "@vigil/bus"
import { fastEd25519, keyIdOf } from "@vigil/crypto"
import { durablesFor, type EventType, KEYS_MANIFEST_SUBJECT, type Service, type SigningKey } from "@vigil/events"
import { KeyStore, ManifestChain } from "@vigil/keys"
import {
  Config,
  Context,
  Data,
  Duration,
  Effect,
  Layer,
  Option,
  Redacted,
  Result,
  Schedule,
  Schema,
  type Scope,
  Stream,
} from "effect"
import { type Home, homeAt } from "./home.ts"
import { makePino, pinoLoggerLayer } from "./logger.ts"
import { runMainWith } from "./main.ts"
import { memoryAtRest } from "./memory.ts"
import { isAlive } from "./processes.ts"
import { telemetryLayer } from "./telemetry.ts"

/**
 * The service template (ADR 0019). A service is a `Layer` that acquires its consumers, responders and background
 * fibers in scope, built on {@link ServiceBus}: its verified identity, its own NATS connection, verification, the
 * publisher, the dead-letter subject, a verified stream reader and the health report. {@link launch} is the one
 * process entry: settings from `Config`, logging, signals, exit codes.
 */

export class ServiceStartError extends Data.TaggedError("ServiceStartError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** What the supervisor hands a service process (environment, read through `Config`). */
export interface ServiceSettingsShape {
  readonly home: Home
  readonly natsUrl: string
  /** Signature worker threads: unset = the service's own default; 0 = on the event loop. */
  readonly verifyWorkers: Option.Option<number>
  /** `vigil up`'s pid: the service stops when it is gone rather than live on as an orphan holding credentials. */
  readonly supervisorPid: Option.Option<number>
  readonly logLevel: string
}

export class ServiceSettings extends Context.Service<ServiceSettings, ServiceSettingsShape>()(
  "@vigil/runtime/ServiceSettings",
) {
  /** The settings, or a {@link ServiceStartError} that names the variable, what it must be and what it was. */
  static readonly load: Effect.Effect<ServiceSettingsShape, ServiceStartError> = Effect.gen(function* () {
    const home = yield* setting(
      "VIGIL_HOME",
      "a directory",
      Config.String("VIGIL_HOME").pipe(Config.withDefault(".vigil")),
    )
    const natsUrl = yield* setting("VIGIL_NATS_URL", "the bus URL (set by `vigil up`)", Config.String("VIGIL_NATS_URL"))
    const verifyWorkers = yield* wholeNumber("VIGIL_VERIFY_WORKERS", "a whole number of threads (0 = inline)", 256)
    const supervisorPid = yield* wholeNumber("VIGIL_SUPERVISOR_PID", "a process id", 2 ** 22)
    const logLevel = yield* setting(
      "VIGIL_LOG_LEVEL",
      "one of trace, debug, info, warn, error, fatal",
      Config.Literals(["trace", "debug", "info", "warn", "error", "fatal"], "VIGIL_LOG_LEVEL").pipe(
        Config.withDefault("info" as const),
      ),
    )
    return { home: homeAt(home), natsUrl, verifyWorkers, supervisorPid, logLevel }
  })

  static readonly layer = Layer.effect(ServiceSettings, ServiceSettings.load)
}

/** One setting, its failure said as "NAME must be WHAT, got VALUE". */
export const setting = <A>(name: string, what: string, config: Config.Config<A>): Effect.Effect<A, ServiceStartError> =>
  Effect.catch(config, (cause) =>
    Config.option(Config.String(name)).pipe(
      Effect.orElseSucceed(() => Option.none<string>()),
      Effect.flatMap((raw) =>
        Effect.fail(
          new ServiceStartError({
            message: `${name} must be ${what}${Option.isSome(raw) ? `, got ${JSON.stringify(raw.value)}` : " (unset)"}`,
            cause,
          }),
        ),
      ),
    ),
  )

/** An optional whole number in [0, max], refused as {@link setting} says. */
export const wholeNumber = (
  name: string,
  what: string,
  max: number,
): Effect.Effect<Option.Option<number>, ServiceStartError> =>
  setting(
    name,
    what,
    Config.option(Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: max })), name)),
  )

/** Who this process is: its name, its signing key (checked against the manifest) and the verified manifest chain. */
export class ServiceIdentity extends Context.Service<
  ServiceIdentity,
  { readonly name: Service; readonly key: SigningKey; readonly chain: ManifestChain; readonly home: Home }
>()("@vigil/runtime/ServiceIdentity") {}

/** Fields a part of the service adds to its heartbeat (libs/bus `publishHealth`), and the consumers it reports. */
export class Health extends Context.Service<
  Health,
  {
    readonly add: (fields: () => Record<string, unknown>) => Effect.Effect<void>
    readonly consumers: (handles: ReadonlyArray<ConsumerHandle>) => Effect.Effect<void>
    readonly report: () => Record<string, unknown>
  }
>()("@vigil/runtime/Health") {
  static readonly layer = Layer.sync(Health, () => {
    const parts: Array<() => Record<string, unknown>> = []
    const handles: ConsumerHandle[] = []
    return Health.of({
      add: (fields) => Effect.sync(() => void parts.push(fields)),
      consumers: (hs) => Effect.sync(() => void handles.push(...hs)),
      report: () =>
        Object.assign(
          { consumers: Object.fromEntries(handles.map((h) => [h.durable, { ...h.stats }])) },
          ...parts.map((p) => p()),
        ),
    })
  })
}

/** Everything a service's layer may use. */
export type ServiceBus =
  | ServiceIdentity
  | ServiceSettings
  | BusConfig
  | Nats
  | Trust
  | Signer
  | Verifier
  | Publisher
  | DeadLetters
  | StreamReader
  | Health

/** Why a service could not start: its settings, key or manifest, the bus. */
export type StartError = ServiceStartError | BusConnectError | StreamReadError

export interface LaunchOptions {
  /**
   * Signature worker threads when `VIGIL_VERIFY_WORKERS` is unset: unset here too, one per CPU beyond the first;
   * 0 checks signatures on the event loop, which suits a service bound by latency rather than throughput.
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
 * The bus a service runs on, for the service `name`: loads and checks its key, connects as its own NATS user and
 * provides everything in {@link ServiceBus}.
 */
export const serviceBus = (name: Service, options: LaunchOptions = {}): Layer.Layer<ServiceBus, StartError> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const settings = yield* ServiceSettings
      const { home } = settings
      const chain = yield* loadChain(home)
      const key = yield* loadSigningKey(home, name, chain)
      const seed = yield* Effect.try({
        try: () => readFileSync(join(home.nats, `${name}.nk`), "utf8").trim(),
        catch: (cause) => fail(`cannot read the ${name} NATS credentials in ${home.nats}`, cause),
      })
      const workers = Option.getOrUndefined(settings.verifyWorkers) ?? options.verifyWorkers
      const verifier = workers === 0 ? Verifier.inline : Verifier.layer(workers === undefined ? {} : { workers })
      const config = BusConfig.layer({
        url: settings.natsUrl,
        user: name,
        nkeySeed: Option.some(Redacted.make(seed)),
      })
      const base = Layer.mergeAll(
        Nats.layer,
        Signer.layer(key),
        Layer.succeed(Trust, Trust.of(Trust.make(chain))),
        verifier,
        Layer.succeed(ServiceIdentity, ServiceIdentity.of({ name, key, chain, home })),
        Health.layer,
      ).pipe(Layer.provideMerge(config))
      return Layer.mergeAll(Publisher.layer, DeadLetters.layer, StreamReader.layer).pipe(Layer.provideMerge(base))
    }),
  ).pipe(Layer.provideMerge(ServiceSettings.layer))

/** Manifest rotations are announced by the provisioner; each version is root-signed and verified on append. */
const followManifest = Effect.gen(function* () {
  const { nc } = yield* Nats
  const { chain } = yield* ServiceIdentity
  const sub = nc.subscribe(KEYS_MANIFEST_SUBJECT)
  yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
  const updates = Stream.fromAsyncIterable(sub, (cause) => cause).pipe(
    Stream.runForEach((msg) => {
      const r = Result.try(() => msg.json() as unknown).pipe(Result.flatMap((doc) => chain.append(doc)))
      if (Result.isSuccess(r)) return Effect.logInfo(`key manifest updated to v${r.success.version}`)
      const why = r.failure
      return Effect.logWarning(
        `ignored key manifest update: ${why instanceof Error ? why.message : String((why as { message?: unknown }).message ?? why)}`,
      )
    }),
    Effect.ignore,
  )
  yield* Effect.forkScoped(updates)
})

/** Completes when `vigil up` (the supervisor) is gone. */
const supervisorGone = Effect.gen(function* () {
  const { supervisorPid } = yield* ServiceSettings
  if (Option.isNone(supervisorPid) || supervisorPid.value <= 1) return yield* Effect.never
  const pid = supervisorPid.value
  yield* Effect.sync(() => isAlive(pid)).pipe(
    Effect.repeat({ until: (alive) => !alive, schedule: Schedule.spaced(Duration.seconds(1)) }),
  )
  yield* Effect.logWarning("supervisor gone: stopping")
})

/**
 * A service's whole life: build its layer on the bus, then answer health and follow manifest rotations until
 * interrupted (a signal) or the supervisor is gone; closing the scope releases everything in reverse.
 */
export const serviceMain = <E>(
  name: Service,
  app: Layer.Layer<never, E, ServiceBus>,
  options: LaunchOptions = {},
): Effect.Effect<void, E | StartError> =>
  Effect.gen(function* () {
    yield* followManifest
    yield* Layer.build(app)
    const { key } = yield* ServiceIdentity
    const trust = yield* Trust
    const health = yield* Health
    yield* publishHealth(name, () => ({
      ok: true,
      kid: key.kid,
      manifestVersion: trust.latestVersion(),
      ...health.report(),
    }))
    yield* Effect.logInfo(`${name} ready`)
    yield* Effect.forkScoped(memoryAtRest)
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.provide(serviceBus(name, options)),
    // Watched from the first moment, not once started: a start that hangs (no bus, say) must not outlive `vigil up`.
    Effect.raceFirst(supervisorGone.pipe(Effect.provide(ServiceSettings.layer))),
  )

/** The process entry of a service: `launch("dlp", DlpLive)`. */
export const launch = <E>(name: Service, app: Layer.Layer<never, E, ServiceBus>, options: LaunchOptions = {}): void => {
  const level = ServiceSettings.load.pipe(
    Effect.map((s): string => s.logLevel),
    Effect.orElseSucceed(() => "info"),
  )
  const log = makePino(name, Effect.runSync(level))
  // Telemetry wraps the whole life, so the exporter (when configured) flushes after the last scope closes.
  const program = serviceMain(name, app, options).pipe(Effect.provide(telemetryLayer(name)))
  runMainWith(log, name, program.pipe(Effect.provide(pinoLoggerLayer(log))))
}

/**
 * A consumer for every durable of `name` (libs/bus topology): the handler for its event type where given, else the
 * event is verified and acked (a service whose domain handlers have not landed yet).
 */
export const consumeDurables = <R>(
  name: Service,
  handlers: { readonly [T in EventType]?: Handler<T, R> } = {},
): Layer.Layer<never, ConsumeError, Exclude<R, Scope.Scope> | ServiceBus> =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const handles: ConsumerHandle[] = []
      for (const d of durablesFor(name)) {
        const h = (d.types.length === 1 ? handlers[d.types[0] as EventType] : undefined) as
          | Handler<EventType, R>
          | undefined
        handles.push(yield* consume({ durable: d.durable, stream: d.stream }, h ?? (() => Effect.void)))
      }
      yield* (yield* Health).consumers(handles)
    }),
  )

export type { Scope }
export { HandlerError }
