import { createHash } from "node:crypto"
import { hostname, platform } from "node:os"
import { BusConfig, type ConsumerHandle, consume, HandlerError, Nats, Publisher, Trust } from "@vigil/bus"
import {
  durableName,
  type Event,
  type EventData,
  type EventType,
  eventHash,
  followUp,
  POLICY_BUNDLE_SUBJECT,
  type Rejection,
  STREAM_EVENTS,
} from "@vigil/events"
import type { Decision, RequestOptions } from "@vigil/policy"
import type { Home, Log } from "@vigil/runtime"
import { Effect, Fiber } from "effect"
import { BundleHolder, type OfferRefused, readStoredRevisions, type StartOutcome } from "./bundles.ts"
import { readHistory } from "./history.ts"

/** Tools whose arguments leave the device: their decision waits for DLP's findings on the arguments. */
const EGRESS_TOOLS = new Set(["net.fetch", "model.remote", "plugin.run"])

export interface PolicySettings {
  readonly grantedFolders: ReadonlyArray<string>
  readonly role: string
  readonly egressAllowlist: ReadonlyArray<string>
  /** How long an egress intent waits for `intent.screened` before it is denied (fail closed). */
  readonly dlpTimeoutMs: number
}

interface Grant {
  readonly id: string
  readonly session: string
  readonly tool?: string
  readonly pathPrefix?: string
  readonly until?: number
}

type Intent = Event<"intent.proposed">

/** How many decided intent ids the service remembers (see `decided`). */
const DECIDED_MEMORY = 65_536

/** The path an intent acts on, for matching durable grants. */
const pathOf = (intent: Intent): string | undefined => {
  const p = intent.data.args.path
  return typeof p === "string" ? p : undefined
}

const grantCovers = (g: Grant, intent: Intent, now: number): boolean => {
  if (g.session !== intent.session) return false
  if (g.until !== undefined && now >= g.until) return false
  if (g.tool !== undefined && g.tool !== intent.data.tool) return false
  if (g.pathPrefix !== undefined) {
    const p = pathOf(intent)
    const prefix = g.pathPrefix.endsWith("/") ? g.pathPrefix : `${g.pathPrefix}/`
    if (p === undefined || !(p === g.pathPrefix || p.startsWith(prefix))) return false
  }
  return true
}

/**
 * The policy decision service: every intent gets exactly one signed `decision.made` bound to the intent's hash
 * (allow / deny / ask, the rules that fired, a plain-language reason, obligations, the bundle digest). `ask` turns
 * into a second decision once the user's signed consent arrives; durable grants answer later asks in their scope
 * until revoked or expired; a contained session gets nothing but denies. Anything it cannot evaluate is a deny.
 */
export const runPolicy = (settings: PolicySettings, home: Home, log: Log) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const publisher = yield* Publisher
    const bundles = new BundleHolder(home)
    const device = { id: hostname(), managed: false, os: platform() }

    const raise = (rule: string, summary: string, details: Record<string, string | number | null>) =>
      publisher
        .publish({
          type: "alert.raised",
          session: "policy",
          data: { rule, severity: "high", summary: summary.slice(0, 2000), evidence: [], details },
        })
        .pipe(
          Effect.tapError((e) =>
            Effect.sync(() =>
              log.error({ err: String(e), rule }, "the alert for a refused policy bundle was not published"),
            ),
          ),
          Effect.ignore,
        )
    /** A refused bundle (bad, or a rollback): the active one keeps deciding, and ops are told. */
    const alertRefused = (why: OfferRefused, source: "announcement" | "stored", extra: Record<string, number> = {}) => {
      const active = bundles.active
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
        ? log.warn({ offered: why.offered, active: why.active }, `${msg}: rollback: ${why.detail}`)
        : log.warn({ reason: why.reason }, `${msg}: ${why.detail}`)
    const offer = (doc: unknown) => {
      const r = bundles.offer(doc)
      if (r.ok) {
        if (r.changed) log.info({ bundle: r.digest, version: r.version }, "policy bundle active")
        return Effect.void
      }
      logRefused(r, "policy bundle refused")
      return alertRefused(r, "announcement")
    }
    // At start the bucket's stored revisions of the bundle key are the memory: the latest is taken only when it
    // verifies and no stored bundle outranks it; otherwise the last good one is kept, or none (fail closed).
    const started: StartOutcome | { readonly kind: "unreadable"; readonly detail: string } = yield* Effect.tryPromise(
      () => readStoredRevisions(nc),
    ).pipe(
      Effect.map((revisions) => bundles.start(revisions)),
      Effect.catch((e) => Effect.succeed({ kind: "unreadable" as const, detail: String(e.cause ?? e) })),
    )
    switch (started.kind) {
      case "empty":
        log.warn("no policy bundle stored: every intent is denied until one is published")
        break
      case "latest":
        log.info({ bundle: started.digest, version: started.version, revision: started.seq }, "policy bundle active")
        break
      case "kept":
        logRefused(started.latest, `stored policy bundle (revision ${started.latest.seq}) refused`)
        log.warn(
          { bundle: started.digest, version: started.version, revision: started.seq },
          `kept the last good policy bundle: version ${started.version} (revision ${started.seq})`,
        )
        yield* alertRefused(started.latest, "stored", { revision: started.latest.seq, kept: started.seq })
        break
      case "none-good":
        logRefused(started.latest, `stored policy bundle (revision ${started.latest.seq}) refused`)
        log.error(
          "no stored policy bundle verifies: every intent is denied until a good bundle is published (vigil policy bundle)",
        )
        yield* alertRefused(started.latest, "stored", { revision: started.latest.seq })
        break
      case "unreadable":
        log.error(
          { err: started.detail },
          "cannot read the stored policy bundle: every intent is denied until a good bundle is announced",
        )
        yield* raise("policy-bundle-refused", `The stored policy bundle cannot be read: ${started.detail}`, {
          reason: "unreadable",
          active: null,
          activeVersion: null,
          source: "stored",
        })
        break
    }
    const sub = nc.subscribe(POLICY_BUNDLE_SUBJECT, {
      callback: (_err, msg) => {
        let doc: unknown
        try {
          doc = msg.json()
        } catch {
          doc = { malformed: true }
        }
        Effect.runFork(offer(doc))
      },
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))

    const intents = new Map<string, Intent>()
    const screened = new Map<string, EventData<"intent.screened">>()
    const timers = new Map<string, Fiber.Fiber<void, never>>()
    // Intents decided in this process life, newest last; bounded, since a service runs for months. Forgetting an old
    // one is safe: a redelivery is decided again under the same derived decision id.
    const decided = new Set<string>()
    const markDecided = (id: string) => {
      decided.add(id)
      if (decided.size > DECIDED_MEMORY) decided.delete(decided.values().next().value as string)
    }
    const grants = new Map<string, Grant>()
    // Grant and revocation arrive through different durables, so a revocation can be handled before its grant (and
    // a grant redelivered after a restart can follow its revocation): a revoked grant id never becomes a grant again.
    const revoked = new Set<string>()
    const contained = new Map<string, string>()
    // SHA-256 of each intent's canonical bytes as the consumer verified them (no second canonicalisation).
    const intentHashes = new WeakMap<Intent, string>()
    const forget = (id: string) => {
      intents.delete(id)
      screened.delete(id)
    }

    const options = (intent: Intent, consent: boolean): Omit<RequestOptions, "dataClasses"> => {
      const findings = screened.get(intent.id)?.findings
      return {
        grantedFolders: settings.grantedFolders,
        role: settings.role,
        device,
        egressAllowlist: settings.egressAllowlist,
        consent,
        ...(findings === undefined ? {} : { dlpFindings: findings }),
      }
    }

    const denial = (explanation: string, rule: string): Decision => ({
      effect: "deny",
      rules: [rule],
      explanation,
      obligations: [],
      bundle: bundles.current?.digest ?? "0".repeat(64),
      diagnostics: { errors: [], classification: [], permits: [] },
    })

    const evaluate = (intent: Intent, consent: boolean): Decision => {
      const why = contained.get(intent.session)
      if (why !== undefined) return denial(`Ops contained this session: ${why}`.slice(0, 1000), "containment")
      const engine = bundles.current
      if (engine === undefined) return denial("No policy bundle is loaded, so nothing is allowed.", "no-bundle")
      return engine.decideIntent(intent.data, options(intent, consent))
    }

    const emit = (intent: Intent, d: Decision, id: string, cause: Event) =>
      publisher
        .publish(
          followUp(cause, {
            id,
            type: "decision.made",
            data: {
              intent: intent.id,
              intentHash: intentHashes.get(intent) ?? eventHash(intent),
              effect: d.effect,
              rules: [...d.rules],
              explanation: d.explanation.slice(0, 1000),
              obligations: d.obligations.map((o) => ({ ...o })),
              bundle: d.bundle,
              ...(d.dataClass === undefined ? {} : { dataClass: d.dataClass }),
            },
          }),
        )
        .pipe(
          Effect.mapError((cause) => new HandlerError({ message: `decision for ${intent.id} not published`, cause })),
        )

    /** The first decision on an intent (deterministic id: a redelivery re-publishes the same event). */
    const decideFirst = (intent: Intent) =>
      Effect.gen(function* () {
        if (decided.has(intent.id)) return
        let d = evaluate(intent, false)
        if (d.effect === "ask") {
          const grant = [...grants.values()].find((g) => grantCovers(g, intent, Date.now()))
          if (grant !== undefined) {
            const withConsent = evaluate(intent, true)
            if (withConsent.effect === "allow")
              d = { ...withConsent, rules: [...withConsent.rules, `grant:${grant.id}`] }
          }
        }
        yield* emit(intent, d, publisher.derivedId(intent.id, "policy"), intent)
        markDecided(intent.id)
        const t = timers.get(intent.id)
        if (t !== undefined) yield* Fiber.interrupt(t)
        timers.delete(intent.id)
        // An ask stays known until the user answers; anything else is done.
        if (d.effect !== "ask") forget(intent.id)
      })

    const onIntent = (intent: Intent) =>
      Effect.gen(function* () {
        if (decided.has(intent.id)) return
        intents.set(intent.id, intent)
        if (!EGRESS_TOOLS.has(intent.data.tool) || screened.has(intent.id)) return yield* decideFirst(intent)
        // Data would leave the device: wait for DLP's findings, and deny if they never come.
        const timer = yield* Effect.sleep(`${settings.dlpTimeoutMs} millis`).pipe(
          Effect.andThen(
            Effect.suspend(() => {
              if (decided.has(intent.id)) return Effect.void
              screened.set(intent.id, { intent: intent.id, verdict: "blocked", findings: [] })
              const d = denial(
                "DLP did not screen the data that would leave the device in time, so it may not leave.",
                "dlp-timeout",
              )
              return emit(intent, d, publisher.derivedId(intent.id, "policy"), intent).pipe(
                Effect.tap(() =>
                  Effect.sync(() => {
                    markDecided(intent.id)
                    forget(intent.id)
                  }),
                ),
                Effect.ignore,
              )
            }),
          ),
          Effect.forkDetach,
        )
        timers.set(intent.id, timer)
      })

    const onScreened = (e: Event<"intent.screened">) =>
      Effect.gen(function* () {
        screened.set(e.data.intent, e.data)
        const intent = intents.get(e.data.intent)
        if (intent !== undefined && !decided.has(intent.id)) yield* decideFirst(intent)
      })

    /** The state folds: the same for an event read back at start-up as for one delivered live. */
    const applyGrant = (e: Event<"consent.granted">) => {
      const scope = e.data.scope
      if (scope.kind !== "durable" || revoked.has(e.id)) return
      const until = scope.until === undefined ? undefined : Date.parse(scope.until)
      grants.set(e.id, {
        id: e.id,
        session: e.session,
        ...(scope.tool === undefined ? {} : { tool: scope.tool }),
        ...(scope.pathPrefix === undefined ? {} : { pathPrefix: scope.pathPrefix }),
        ...(until === undefined || Number.isNaN(until) ? {} : { until }),
      })
    }
    const applyRevocation = (e: Event<"consent.revoked">): boolean => {
      revoked.add(e.data.grant)
      return grants.delete(e.data.grant)
    }
    const applyContainment = (e: Event<"containment.ordered">) => contained.set(e.data.target, e.data.reason)

    /**
     * A consent for an intent this process never saw: the ask may have been decided by an earlier run of the service
     * (a restart while the user was deciding). The session's stored intent, decisions, denials and DLP findings
     * tell: the consent is honoured only when the intent's one decision so far is policy's `ask` and the user has not
     * refused it, so a consent can never produce a second final decision.
     */
    const recoverAsk = (consent: Event<"consent.granted">) =>
      Effect.tryPromise({
        try: async (): Promise<Intent | undefined> => {
          const id = consent.data.intent
          const find = async <T extends EventType>(type: T, pick: (e: Event<T>) => boolean) => {
            const found: Event<T>[] = []
            await readHistory(
              nc,
              type,
              history,
              (e) => (pick(e) ? void found.push(e) : undefined),
              refused,
              consent.session,
            )
            return found
          }
          const [intent] = await find("intent.proposed", (i) => i.id === id)
          if (intent === undefined) return undefined
          const decisions = await find("decision.made", (d) => d.data.intent === id)
          if (decisions.length === 0 || decisions.some((d) => d.data.effect !== "ask")) return undefined
          if ((await find("consent.denied", (d) => d.data.intent === id)).length > 0) return undefined
          const findings = (await find("intent.screened", (x) => x.data.intent === id)).at(-1)
          if (findings !== undefined) screened.set(id, findings.data)
          return intent
        },
        catch: (cause) =>
          new HandlerError({ message: `cannot read the history of intent ${consent.data.intent}`, cause }),
      })

    const onGranted = (e: Event<"consent.granted">) =>
      Effect.gen(function* () {
        applyGrant(e)
        const intent = intents.get(e.data.intent) ?? (yield* recoverAsk(e))
        if (intent === undefined) {
          log.warn({ consent: e.id, intent: e.data.intent }, "consent for an intent that has no open ask")
          return
        }
        const d = evaluate(intent, true)
        const final = d.effect === "allow" ? { ...d, rules: [...d.rules, `consent:${e.id}`] } : d
        yield* emit(intent, final, publisher.derivedId(e.id, "policy"), e)
        forget(intent.id)
      })

    const onDenied = (e: Event<"consent.denied">) => Effect.sync(() => forget(e.data.intent))
    const onRevoked = (e: Event<"consent.revoked">) =>
      Effect.sync(() => {
        if (applyRevocation(e)) log.info({ grant: e.data.grant }, "grant revoked")
      })
    const onContained = (e: Event<"containment.ordered">) =>
      Effect.sync(() => {
        applyContainment(e)
        log.warn({ session: e.data.target }, "session contained")
      })

    // The durables deliver only what this service has not acked yet, so what earlier runs of it learned (durable
    // grants, revocations, containments) is read back from the stream before the first intent is decided. Events
    // read here and delivered again by a durable fold to the same state.
    const trust = yield* Trust
    const cfg = yield* BusConfig
    const history = { keys: trust.resolver, maxEventBytes: cfg.maxEventBytes, maxSkewMs: cfg.duplicateWindowMs }
    const refused = (seq: number, why: Rejection) =>
      log.warn({ seq, reason: why.reason }, `ignored a stored event that does not verify: ${why.detail}`)
    const replay = <T extends EventType>(type: T, apply: (e: Event<T>) => unknown) =>
      Effect.tryPromise({
        try: () => readHistory(nc, type, history, (e) => void apply(e), refused),
        catch: (cause) => new Error(`cannot read ${type} history from ${STREAM_EVENTS}`, { cause }),
      })
    const rebuilt = {
      revocations: yield* replay("consent.revoked", applyRevocation),
      grants: yield* replay("consent.granted", applyGrant),
      containments: yield* replay("containment.ordered", applyContainment),
    }
    log.info({ ...rebuilt, durableGrants: grants.size }, "policy state rebuilt from the event stream")

    const wrap =
      <T extends Event>(f: (e: T) => Effect.Effect<void, HandlerError>) =>
      (e: T) =>
        f(e).pipe(
          Effect.catchDefect((cause) => Effect.fail(new HandlerError({ message: `${e.type} ${e.id} failed`, cause }))),
        )
    const handles: ConsumerHandle[] = [
      // Intents are independent of each other: decide many at once so decision publishes pipeline (a decision's
      // id is derived from its intent, so even a concurrent redelivery is stored once).
      yield* consume({ durable: durableName("policy", "intent.proposed"), concurrency: 64 }, (intent: Intent, d) => {
        intentHashes.set(intent, createHash("sha256").update(d.canonical).digest("hex"))
        return wrap(onIntent)(intent)
      }),
      yield* consume({ durable: durableName("policy", "intent.screened") }, wrap(onScreened)),
      yield* consume({ durable: durableName("policy", "consent.requested") }, () => Effect.void),
      yield* consume({ durable: durableName("policy", "consent.granted") }, wrap(onGranted)),
      yield* consume({ durable: durableName("policy", "consent.denied") }, wrap(onDenied)),
      yield* consume({ durable: durableName("policy", "consent.revoked") }, wrap(onRevoked)),
      yield* consume({ durable: durableName("policy", "containment.ordered") }, wrap(onContained)),
    ]
    return {
      handles,
      health: () => ({
        bundle: bundles.current?.digest ?? null,
        bundleVersion: bundles.version ?? null,
        pending: intents.size,
        grants: grants.size,
        answers: bundles.current?.cacheStats() ?? null,
      }),
    }
  })
