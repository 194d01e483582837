import type { NatsConnection } from "@nats-io/transport-node"
import {
  BusConfig,
  type ConsumerHandle,
  consume,
  DeadLetters,
  type Handler,
  HandlerError,
  Nats,
  type ProvisionOptions,
  Publisher,
  provision,
  Signer,
  Trust,
  type TrustedChain,
  Verifier,
} from "@vigil/bus"
import { randomSeed } from "@vigil/crypto"
import type { Draft, Event, Principal, Service, SigningKey } from "@vigil/events"
import { followUp, PRINCIPALS } from "@vigil/events"
import type { Manifest, RootKey } from "@vigil/keys"
import {
  buildManifest,
  ensureDeploymentKeys,
  KeyStore,
  ManifestChain,
  rotateKey,
  signingKeyOf,
  signManifest,
} from "@vigil/keys"
import { Effect, Exit, Layer, Option, Redacted, Result, Scope } from "effect"
import type { NatsServer, StartNatsOptions } from "./nats.ts"
import { startNats } from "./nats.ts"

/**
 * A real Vigil deployment for bus tests: a root key and one signing key per principal (libs/keys, in a memory
 * KeyStore), a root-signed manifest granting each its catalog types, and the verified {@link ManifestChain} that
 * services trust. Plus the bus Layer a service gets on a test server, connected as its own NATS user.
 */

export interface Deployment {
  readonly name: string
  readonly root: RootKey
  /** Each principal's current signing key (after any {@link Deployment.rotate}). */
  readonly keys: Readonly<Record<Principal, SigningKey>>
  /** The verified chain; rotations append to it, so a Trust built from it sees them. */
  readonly chain: ManifestChain
  /** Every signed version, oldest first. */
  readonly manifests: ReadonlyArray<Manifest>
  /** Rotate a principal to a fresh key valid from `at` (its old key expires then); returns the new key. */
  rotate(principal: Principal, at: string): SigningKey
}

export interface DeploymentOptions {
  readonly name?: string
  /** Version 1's `issuedAt`, which is also when every key becomes valid (default: one hour ago). */
  readonly issuedAt?: string
}

const chainOrThrow = (rootPublicKey: Uint8Array, manifests: ReadonlyArray<unknown>): ManifestChain => {
  const r = ManifestChain.make(rootPublicKey, manifests)
  if (Result.isFailure(r)) throw new Error(`manifest chain refused: ${r.failure.message}`)
  return r.success
}

export const createDeployment = (opts: DeploymentOptions = {}): Deployment => {
  const name = opts.name ?? "test"
  const issuedAt = opts.issuedAt ?? new Date(Date.now() - 3_600_000).toISOString()
  const { root, keys: initial } = Effect.runSync(
    ensureDeploymentKeys(PRINCIPALS).pipe(Effect.provide(KeyStore.layerMemory)),
  )
  const keys: Record<Principal, SigningKey> = { ...initial }
  const v1 = signManifest(
    root.seed,
    buildManifest({
      deployment: name,
      version: 1,
      issuedAt,
      prev: null,
      keys: PRINCIPALS.map((p) => ({ principal: p, publicKey: keys[p].publicKey })),
    }),
  )
  const manifests: Array<Manifest> = [v1]
  const chain = chainOrThrow(root.publicKey, manifests)
  return {
    name,
    root,
    keys,
    chain,
    manifests,
    rotate: (principal, at) => {
      const fresh = signingKeyOf(principal, randomSeed())
      const next = signManifest(root.seed, rotateKey(manifests.at(-1) as Manifest, principal, fresh.publicKey, at))
      const appended = chain.append(next)
      if (Result.isFailure(appended)) throw new Error(`rotation refused: ${appended.failure.message}`)
      manifests.push(next)
      keys[principal] = fresh
      return fresh
    },
  }
}

/** What a service process needs to join the bus; JSON-safe, so a child process can be handed it. */
export interface BusFixture {
  readonly url: string
  /** NATS user (role) and its nkey seed (`SU…`). */
  readonly user: Service
  readonly natsSeed: string
  readonly principal: Principal
  /** Ed25519 signing seed, base64url. */
  readonly signingSeed: string
  /** Root public key (base64url) and the signed manifest versions the process verifies into its trust. */
  readonly rootPublicKey: string
  readonly manifests: ReadonlyArray<Manifest>
  readonly maxEventBytes?: number
}

export interface BusFixtureOptions {
  /** Sign with this key instead of the role's own. */
  readonly key?: SigningKey
  readonly maxEventBytes?: number
}

export const busFixture = (
  server: NatsServer,
  role: Service,
  dep: Deployment,
  opts: BusFixtureOptions = {},
): BusFixture => {
  const natsSeed = server.creds[role]?.seed
  if (natsSeed === undefined) throw new Error(`no NATS credentials for ${role} on ${server.url}`)
  const key = opts.key ?? dep.keys[role]
  return {
    url: server.url,
    user: role,
    natsSeed,
    principal: key.principal,
    signingSeed: Buffer.from(key.seed).toString("base64url"),
    rootPublicKey: Buffer.from(dep.root.publicKey).toString("base64url"),
    manifests: [...dep.manifests],
    ...(opts.maxEventBytes === undefined ? {} : { maxEventBytes: opts.maxEventBytes }),
  }
}

/** Everything the bus layer provides a service. */
export type BusServices = Nats | BusConfig | Signer | Trust | Verifier | Publisher | DeadLetters

/**
 * The bus layers a service process composes: its own NATS user, signer, static trust, signature workers, publisher
 * and DLQ.
 */
export const busLayer = (settings: {
  readonly url: string
  readonly user: Service
  readonly natsSeed: string
  readonly key: SigningKey
  readonly trust: TrustedChain
  readonly maxEventBytes?: number
}) => {
  const config = BusConfig.layer({
    url: settings.url,
    user: settings.user,
    nkeySeed: Option.some(Redacted.make(settings.natsSeed)),
    ...(settings.maxEventBytes === undefined ? {} : { maxEventBytes: settings.maxEventBytes }),
  })
  const base = Layer.mergeAll(
    Nats.layer,
    Signer.layer(settings.key),
    Trust.layerStatic(settings.trust),
    Verifier.layer(),
  ).pipe(Layer.provideMerge(config))
  return Layer.mergeAll(Publisher.layer, DeadLetters.layer).pipe(Layer.provideMerge(base))
}

/** {@link busLayer} from a {@link BusFixture} (in a child process: verifies the manifests into a fresh chain). */
export const busLayerOf = (f: BusFixture) =>
  busLayer({
    url: f.url,
    user: f.user,
    natsSeed: f.natsSeed,
    key: signingKeyOf(f.principal, new Uint8Array(Buffer.from(f.signingSeed, "base64url"))),
    trust: chainOrThrow(new Uint8Array(Buffer.from(f.rootPublicKey, "base64url")), f.manifests),
    ...(f.maxEventBytes === undefined ? {} : { maxEventBytes: f.maxEventBytes }),
  })

/** The bus Layer of `role` on a test server, trusting the deployment's chain (rotations included). */
export const busFor = (server: NatsServer, role: Service, dep: Deployment, opts: BusFixtureOptions = {}) => {
  const f = busFixture(server, role, dep, opts)
  return busLayer({
    url: f.url,
    user: role,
    natsSeed: f.natsSeed,
    key: opts.key ?? dep.keys[role],
    trust: dep.chain,
    ...(opts.maxEventBytes === undefined ? {} : { maxEventBytes: opts.maxEventBytes }),
  })
}

/** A running service's bus: effects run with its layer, scoped resources (consumers) live until `close`. */
export interface RunningBus {
  run<A, E>(effect: Effect.Effect<A, E, BusServices | Scope.Scope>): Promise<A>
  /** Stop consumers and drain the connection (the clean shutdown path). Idempotent. */
  close(): Promise<void>
}

export const startBus = async <E>(layer: Layer.Layer<BusServices, E>): Promise<RunningBus> => {
  const scope = Effect.runSync(Scope.make())
  const closeScope = () => Effect.runPromise(Scope.close(scope, Exit.void))
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope)).catch(async (e: unknown) => {
    await closeScope()
    throw e
  })
  let closed = false
  return {
    run: (effect) => Effect.runPromise(effect.pipe(Effect.provide(context), Scope.provide(scope))),
    close: async () => {
      if (closed) return
      closed = true
      await closeScope()
    },
  }
}

/** A fixed blob reference for the prompt / masked text (content is not stored by these tests). */
export const BLOB = {
  sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  size: 4,
  mediaType: "text/plain",
} as const

/** A `task.submitted` draft as the gateway makes it. */
export const taskDraft = (
  session: string,
  overrides: Partial<Draft<"task.submitted">> = {},
): Draft<"task.submitted"> => ({
  type: "task.submitted",
  session,
  data: { channel: "cli", workspace: "/home/user/documents", promptChars: 4 },
  blobs: { prompt: BLOB },
  ...overrides,
})

/** DLP's answer to a task: `prompt.screened` under `id` (the publisher's derived id for this input), caused by it. */
export const screenedDraft = (input: Event<"task.submitted">, id: string): Draft<"prompt.screened"> =>
  followUp(input, {
    type: "prompt.screened",
    id,
    data: { task: input.id, verdict: "clean", findings: [] },
    blobs: { masked: input.blobs?.prompt ?? BLOB },
  })

/** DLP's handler in these tests: publish the follow-up; a publish failure is a handler failure (nak, redelivery). */
export const screenHandler =
  (onInvoke?: (event: Event<"task.submitted">, deliveryCount: number) => void): Handler<"task.submitted", Publisher> =>
  (event, delivery) =>
    Effect.gen(function* () {
      onInvoke?.(event, delivery.deliveryCount)
      const publisher = yield* Publisher
      yield* publisher.publish(screenedDraft(event, publisher.derivedId(event.id, "dlp")))
    }).pipe(Effect.mapError((cause) => new HandlerError({ message: `follow-up of ${event.id} failed`, cause })))

/** DLP's durable for its `task.submitted` input. */
export const DLP_TASKS = "dlp__task_submitted"

/** Start the dlp consumer of `task.submitted` on a running bus. */
export const consumeTasks = (
  bus: RunningBus,
  handler: Handler<"task.submitted", Publisher>,
  opts: { readonly concurrency?: number; readonly batch?: number } = {},
): Promise<ConsumerHandle> => bus.run(consume({ durable: DLP_TASKS, ...opts }, handler))

/** A secured nats-server provisioned by the admin user, a deployment, and the buses started on it. */
export interface VigilBus {
  readonly server: NatsServer
  /** The provisioner's connection (`$JS.API.>`): for reading streams and consumer state in assertions. */
  readonly admin: NatsConnection
  readonly dep: Deployment
  /** Start `role`'s bus (closed by `stop`). */
  bus(role: Service, opts?: BusFixtureOptions): Promise<RunningBus>
  /** Close every bus, the admin connection and the server (temp dir removed). */
  stop(): Promise<void>
}

export const startVigilBus = async (
  opts: {
    readonly provision?: ProvisionOptions
    readonly deployment?: Deployment
    readonly nats?: Omit<StartNatsOptions, "secure">
  } = {},
): Promise<VigilBus> => {
  const server = await startNats({ ...opts.nats, secure: true })
  const buses: Array<RunningBus> = []
  let admin: NatsConnection | undefined
  const stop = async () => {
    for (const b of buses.splice(0)) await b.close().catch(() => undefined)
    await admin?.close().catch(() => undefined)
    await server.stop()
  }
  try {
    admin = await server.connect("admin")
    await Effect.runPromise(provision(admin, opts.provision))
  } catch (e) {
    await stop()
    throw e
  }
  const dep = opts.deployment ?? createDeployment()
  return {
    server,
    admin,
    dep,
    bus: async (role, busOpts) => {
      const b = await startBus(busFor(server, role, dep, busOpts))
      buses.push(b)
      return b
    },
    stop,
  }
}
