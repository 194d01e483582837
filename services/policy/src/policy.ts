import { createHash } from "node:crypto"
import { hostname, platform } from "node:os"
import {
  consume,
  type Delivery,
  HandlerError,
  Nats,
  type PublishError,
  Publisher,
  type StreamReadError,
  StreamReader,
} from "@vigil/bus"
import {
  durableName,
  type Event,
  eventHash,
  followUp,
  KV_POLICY,
  kvStream,
  kvSubject,
  POLICY_BUNDLE_KEY,
  POLICY_BUNDLE_SUBJECT,
} from "@vigil/events"
import { Health, type ServiceBus, ServiceIdentity } from "@vigil/runtime"
import { Clock, Config, Context, Duration, Effect, FiberMap, Layer, Stream } from "effect"
import { BundleHolder, type OfferRefused, type StoredRevision } from "./bundles.ts"
import { type Intent, type Outcome, PolicyCore } from "./core.ts"

/** The policy service's settings (environment, through `Config`), and the root key bundles must be signed by. */
export interface PolicySettingsShape {
  readonly grantedFolders: ReadonlyArray<string>
  readonly role: string
  readonly egressAllowlist: ReadonlyArray<string>
  /** How long an egress intent waits for `intent.screened` before it is denied (fail closed). */
  readonly dlpTimeout: Duration.Duration
  readonly rootPublicKey: Uint8Array
}

const list = (name: string) =>
  Config.String(name).pipe(
    Config.withDefault(""),
    Config.map((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    ),
  )

export class PolicySettings extends Context.Service<PolicySettings, PolicySettingsShape>()(
  "@vigil/policy-service/PolicySettings",
) {
  static readonly config = Config.all({
    // The granted folders default to the workspace `vigil up` was started on.
    grantedFolders: Config.all([list("VIGIL_GRANTED_FOLDERS"), list("VIGIL_WORKSPACE")]).pipe(
      Config.map(([granted, workspace]) => (granted.length > 0 ? granted : workspace)),
    ),
    role: Config.String("VIGIL_POLICY_ROLE").pipe(Config.withDefault("staff")),
    egressAllowlist: list("VIGIL_EGRESS_ALLOWLIST"),
    dlpTimeout: Config.Int("VIGIL_DLP_TIMEOUT_MS").pipe(Config.withDefault(10_000), Config.map(Duration.millis)),
  })

  /** From the environment, with the root public key the service's verified manifest chain was checked under. */
  static readonly layer = Layer.effect(
    PolicySettings,
    Effect.gen(function* () {
      const settings = yield* PolicySettings.config
      const { chain } = yield* ServiceIdentity
      return PolicySettings.of({ ...settings, rootPublicKey: chain.rootPublicKey })
    }),
  )
}

/** Bound on the revisions of the bundle key read back at start (the bucket keeps 16 per key, libs/bus topology). */
const MAX_REVISIONS = 256

const revisionOf = (r: { readonly seq: number; readonly data: Uint8Array }): StoredRevision => {
  if (r.data.length === 0) return { seq: r.seq, doc: undefined }
  try {
    return { seq: r.seq, doc: JSON.parse(Buffer.from(r.data).toString("utf8")) as unknown }
  } catch {
    return { seq: r.seq, doc: { malformed: true } }
  }
}

/**
 * The policy decision service: every intent gets exactly one signed `decision.made` bound to the intent's hash
 * (allow / deny / ask, the rules that fired, a plain-language reason, obligations, the bundle digest). `ask` turns
 * into a second decision once the user's signed consent arrives; durable grants answer later asks in their scope
 * until revoked or expired; a contained session gets nothing but denies. Anything it cannot evaluate is a deny.
 *
 * The decisions themselves are {@link PolicyCore}'s; this service feeds it, publishes what it decides, keeps the
 * DLP timers, and holds the bundle in force.
 */
export class PolicyDecider extends Context.Service<
  PolicyDecider,
  {
    readonly intent: (intent: Intent, hash: string) => Effect.Effect<void, HandlerError>
    readonly screened: (e: Event<"intent.screened">) => Effect.Effect<void, HandlerError>
    readonly granted: (e: Event<"consent.granted">) => Effect.Effect<void, HandlerError>
    readonly denied: (e: Event<"consent.denied">) => Effect.Effect<void>
    readonly revoked: (e: Event<"consent.revoked">) => Effect.Effect<void>
    readonly contained: (e: Event<"containment.ordered">) => Effect.Effect<void>
    /** A bundle announced on the bus (a hot reload): taken, or refused with an alert. */
    readonly offerBundle: (doc: unknown) => Effect.Effect<void>
    readonly health: () => Record<string, unknown>
  }
>()("@vigil/policy-service/PolicyDecider") {
  static readonly layer = Layer.effect(
    PolicyDecider,
    Effect.gen(function* () {
      const settings = yield* PolicySettings
      const publisher = yield* Publisher
      const reader = yield* StreamReader
      const bundles = new BundleHolder(settings.rootPublicKey)
      const core = new PolicyCore(
        {
          grantedFolders: settings.grantedFolders,
          role: settings.role,
          egressAllowlist: settings.egressAllowlist,
          device: { id: hostname(), managed: false, os: platform() },
        },
        bundles,
      )
      const timers = yield* FiberMap.make<string>()

      const raise = Effect.fn("PolicyDecider.raise")(function* (
        rule: string,
        summary: string,
        details: Record<string, string | number | null>,
      ) {
        yield* publisher
          .publish({
            type: "alert.raised",
            session: "policy",
            data: { rule, severity: "high", summary: summary.slice(0, 2000), evidence: [], details },
          })
          .pipe(
            Effect.tapError((e) =>
              Effect.logError("the alert for a refused policy bundle was not published").pipe(
                Effect.annotateLogs({ err: String(e), rule }),
              ),
            ),
            Effect.ignore,
          )
      })
      /** A refused bundle (bad, or a rollback): the active one keeps deciding, and ops are told. */
      const alertRefused = (
        why: OfferRefused,
        source: "announcement" | "stored",
        extra: Record<string, number> = {},
      ) => {
        if (why.kind === "rollback") {
          return raise("policy-bundle-rollback", `A policy bundle rollback was refused: ${why.detail}`, {
            offeredVersion: why.offered.version,
            offeredDigest: why.offered.digest,
            activeVersion: why.active.version,
            activeDigest: why.active.digest,
            source,
            ...extra,
          })
        }
        const active = bundles.active
        return raise("policy-bundle-refused", `A policy bundle was refused (${why.reason}): ${why.detail}`, {
          reason: why.reason,
          active: active?.digest ?? null,
          activeVersion: active?.version ?? null,
          source,
          ...extra,
        })
      }
      const logRefused = (why: OfferRefused, msg: string) =>
        why.kind === "rollback"
          ? Effect.logWarning(`${msg}: rollback: ${why.detail}`).pipe(
              Effect.annotateLogs({ offered: why.offered, active: why.active }),
            )
          : Effect.logWarning(`${msg}: ${why.detail}`).pipe(Effect.annotateLogs({ reason: why.reason }))

      const offerBundle = Effect.fn("PolicyDecider.offerBundle")(function* (doc: unknown) {
        const r = bundles.offer(doc)
        if (r.ok) {
          if (r.changed)
            yield* Effect.logInfo("policy bundle active").pipe(
              Effect.annotateLogs({ bundle: r.digest, version: r.version }),
            )
          return
        }
        yield* logRefused(r, "policy bundle refused")
        yield* alertRefused(r, "announcement")
      })

      // The decision path runs once per intent inside the consumer's span: no span of its own (measured: at 1,000
      // unique intents/s the extra spans put the service at its CPU limit; docs/benchmarks.md, issue 12).
      const publish = Effect.fnUntraced(function* (o: Outcome) {
        const d = o.decision
        yield* publisher
          .publish(
            followUp(o.cause, {
              id: publisher.derivedId(o.idFrom, "policy"),
              type: "decision.made",
              data: {
                intent: o.intent.id,
                intentHash: o.intentHash,
                effect: d.effect,
                rules: [...d.rules],
                explanation: d.explanation.slice(0, 1000),
                obligations: d.obligations.map((x) => ({ ...x })),
                bundle: d.bundle,
                ...(d.dataClass === undefined ? {} : { dataClass: d.dataClass }),
              },
            }),
          )
          .pipe(
            Effect.mapError(
              (cause: PublishError) =>
                new HandlerError({ message: `decision for ${o.intent.id} not published`, cause }),
            ),
          )
        core.committed(o)
      })

      /** A first decision made before DLP's timeout: the timer is done with. */
      const decideFirst = (o: Outcome) => publish(o).pipe(Effect.andThen(FiberMap.remove(timers, o.intent.id)))

      const timeout = (intentId: string) =>
        Effect.sleep(settings.dlpTimeout).pipe(
          Effect.andThen(
            Effect.suspend(() => {
              const o = core.screeningTimedOut(intentId)
              return o === undefined ? Effect.void : publish(o)
            }),
          ),
          // A deny that could not be stored is decided again when the intent is redelivered.
          Effect.ignore,
        )

      const intent = Effect.fnUntraced(function* (intent: Intent, hash: string) {
        const r = core.receive(intent, hash, yield* Clock.currentTimeMillis)
        if (r.kind === "decide") return yield* decideFirst(r.outcome)
        // Data would leave the device: wait for DLP's findings, and deny if they never come.
        if (r.kind === "await-screening")
          yield* FiberMap.run(timers, intent.id, timeout(intent.id), { onlyIfMissing: true })
      })

      const screened = Effect.fn("PolicyDecider.screened")(function* (e: Event<"intent.screened">) {
        const o = core.screened(e, yield* Clock.currentTimeMillis)
        if (o !== undefined) yield* decideFirst(o)
      })

      /**
       * A consent for an intent this process never saw: the ask may have been decided by an earlier run of the
       * service (a restart while the user was deciding). The session's stored intent, decisions, refusals and DLP
       * findings tell: the consent is honoured only when the intent's one decision so far is policy's `ask` and the
       * user has not refused it, so a consent can never produce a second final decision.
       */
      const recoverAsk = Effect.fn("PolicyDecider.recoverAsk")(function* (consent: Event<"consent.granted">) {
        const id = consent.data.intent
        const find = <T extends "intent.proposed" | "decision.made" | "consent.denied" | "intent.screened">(
          type: T,
          pick: (e: Event<T>) => boolean,
        ) =>
          Effect.gen(function* () {
            const found: Event<T>[] = []
            yield* reader.events(type, (e) => (pick(e) ? void found.push(e) : undefined), {
              session: consent.session,
            })
            return found
          })
        const [intent] = yield* find("intent.proposed", (i) => i.id === id)
        if (intent === undefined) return undefined
        const decisions = yield* find("decision.made", (d) => d.data.intent === id)
        if (decisions.length === 0 || decisions.some((d) => d.data.effect !== "ask")) return undefined
        if ((yield* find("consent.denied", (d) => d.data.intent === id)).length > 0) return undefined
        const findings = (yield* find("intent.screened", (x) => x.data.intent === id)).at(-1)
        return { intent, findings: findings?.data }
      })

      const granted = Effect.fn("PolicyDecider.granted")(function* (e: Event<"consent.granted">) {
        const r = core.consent(e)
        if (r.kind === "decide") return yield* publish(r.outcome)
        const found = yield* recoverAsk(e).pipe(
          Effect.mapError(
            (cause: StreamReadError) =>
              new HandlerError({ message: `cannot read the history of intent ${e.data.intent}`, cause }),
          ),
        )
        if (found === undefined) {
          yield* Effect.logWarning("consent for an intent that has no open ask").pipe(
            Effect.annotateLogs({ consent: e.id, intent: e.data.intent }),
          )
          return
        }
        yield* publish(core.consentRecovered(e, found.intent, eventHash(found.intent), found.findings))
      })

      const revoked = (e: Event<"consent.revoked">) =>
        Effect.suspend(() =>
          core.revoke(e)
            ? Effect.logInfo("grant revoked").pipe(Effect.annotateLogs({ grant: e.data.grant }))
            : Effect.void,
        )
      const contained = (e: Event<"containment.ordered">) =>
        Effect.suspend(() => {
          core.contain(e)
          return Effect.logWarning("session contained").pipe(Effect.annotateLogs({ session: e.data.target }))
        })

      // At start the bucket's stored revisions of the bundle key are the memory: the latest is taken only when it
      // verifies and no stored bundle outranks it; otherwise the last good one is kept, or none (fail closed).
      const stored = yield* reader
        .messages(kvStream(KV_POLICY), kvSubject(KV_POLICY, POLICY_BUNDLE_KEY), MAX_REVISIONS)
        .pipe(Effect.result)
      if (stored._tag === "Failure") {
        const detail = String(stored.failure.cause)
        yield* Effect.logError(
          "cannot read the stored policy bundle: every intent is denied until a good bundle is announced",
        ).pipe(Effect.annotateLogs({ err: detail }))
        yield* raise("policy-bundle-refused", `The stored policy bundle cannot be read: ${detail}`, {
          reason: "unreadable",
          active: null,
          activeVersion: null,
          source: "stored",
        })
      } else {
        const started = bundles.start(stored.success.map(revisionOf))
        switch (started.kind) {
          case "empty":
            yield* Effect.logWarning("no policy bundle stored: every intent is denied until one is published")
            break
          case "latest":
            yield* Effect.logInfo("policy bundle active").pipe(
              Effect.annotateLogs({ bundle: started.digest, version: started.version, revision: started.seq }),
            )
            break
          case "kept":
            yield* logRefused(started.latest, `stored policy bundle (revision ${started.latest.seq}) refused`)
            yield* Effect.logWarning(
              `kept the last good policy bundle: version ${started.version} (revision ${started.seq})`,
            ).pipe(Effect.annotateLogs({ bundle: started.digest, version: started.version, revision: started.seq }))
            yield* alertRefused(started.latest, "stored", { revision: started.latest.seq, kept: started.seq })
            break
          case "none-good":
            yield* logRefused(started.latest, `stored policy bundle (revision ${started.latest.seq}) refused`)
            yield* Effect.logError(
              "no stored policy bundle verifies: every intent is denied until a good bundle is published (vigil policy bundle)",
            )
            yield* alertRefused(started.latest, "stored", { revision: started.latest.seq })
            break
        }
      }

      // The durables deliver only what this service has not acked yet, so what earlier runs of it learned (durable
      // grants, revocations, containments) is read back from the stream before the first intent is decided. Events
      // read here and delivered again by a durable fold to the same state.
      const rebuilt = {
        revocations: yield* reader.events("consent.revoked", (e) => void core.revoke(e)),
        grants: yield* reader.events("consent.granted", (e) => core.grant(e)),
        containments: yield* reader.events("containment.ordered", (e) => core.contain(e)),
      }
      yield* Effect.logInfo("policy state rebuilt from the event stream").pipe(
        Effect.annotateLogs({ ...rebuilt, durableGrants: core.stats().grants }),
      )

      return PolicyDecider.of({
        intent,
        screened,
        granted,
        denied: (e) => Effect.sync(() => core.refused(e)),
        revoked,
        contained,
        offerBundle,
        health: () => ({
          bundle: bundles.current?.digest ?? null,
          bundleVersion: bundles.version ?? null,
          pending: core.stats().pending,
          grants: core.stats().grants,
          answers: bundles.current?.cacheStats() ?? null,
        }),
      })
    }),
  )
}

/** Bundle announcements (`vigil policy bundle`), offered one at a time. */
const followBundles = Layer.effectDiscard(
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const decider = yield* PolicyDecider
    const sub = nc.subscribe(POLICY_BUNDLE_SUBJECT)
    yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
    const offers = Stream.fromAsyncIterable(sub, (cause) => cause).pipe(
      Stream.runForEach((msg) => {
        let doc: unknown
        try {
          doc = msg.json()
        } catch {
          doc = { malformed: true }
        }
        return decider.offerBundle(doc)
      }),
      Effect.ignore,
    )
    yield* Effect.forkScoped(offers)
  }),
)

/** SHA-256 of the intent's canonical bytes as the consumer verified them (no second canonicalisation). */
const canonicalHash = (d: Delivery) => createHash("sha256").update(d.canonical).digest("hex")

/** The service's consumers, one per durable, bound to the decider. */
const consumers = Layer.effectDiscard(
  Effect.gen(function* () {
    const decider = yield* PolicyDecider
    const health = yield* Health
    // A bug in a handler becomes a nak (and in the end a dead letter) of that one event, not a crashed service.
    const guard =
      <T extends Event>(f: (e: T) => Effect.Effect<void, HandlerError>) =>
      (e: T) =>
        f(e).pipe(
          Effect.catchDefect((cause) => Effect.fail(new HandlerError({ message: `${e.type} ${e.id} failed`, cause }))),
        )
    const handles = [
      // Intents are independent of each other: decide many at once so decision publishes pipeline (a decision's
      // id is derived from its intent, so even a concurrent redelivery is stored once).
      yield* consume({ durable: durableName("policy", "intent.proposed"), concurrency: 64 }, (intent: Intent, d) =>
        guard((i: Intent) => decider.intent(i, canonicalHash(d)))(intent),
      ),
      yield* consume({ durable: durableName("policy", "intent.screened") }, guard(decider.screened)),
      yield* consume({ durable: durableName("policy", "consent.requested") }, () => Effect.void),
      yield* consume({ durable: durableName("policy", "consent.granted") }, guard(decider.granted)),
      yield* consume({ durable: durableName("policy", "consent.denied") }, guard(decider.denied)),
      yield* consume({ durable: durableName("policy", "consent.revoked") }, guard(decider.revoked)),
      yield* consume({ durable: durableName("policy", "containment.ordered") }, guard(decider.contained)),
    ]
    yield* health.consumers(handles)
    yield* health.add(decider.health)
  }),
)

/** The policy service on the bus: `launch("policy", PolicyLive)`. */
export const PolicyLive: Layer.Layer<never, unknown, ServiceBus> = Layer.mergeAll(consumers, followBundles).pipe(
  Layer.provide(PolicyDecider.layer),
  Layer.provide(PolicySettings.layer),
)
