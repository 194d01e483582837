import type { Event, EventData } from "@vigil/events"
import type { Decision, PolicyEngine, RequestOptions } from "@vigil/policy"

/**
 * The policy service's state machine, without I/O or clock: what it has learned (durable grants, revocations,
 * containments, DLP findings, open asks) and what it decides for each input. The service (decider.ts) feeds it
 * events in the order their durables deliver them, publishes the decisions it returns, and tells it once each is
 * stored (`committed`); the same inputs always give the same decisions.
 */

export type Intent = Event<"intent.proposed">

/** Tools whose arguments leave the device: their decision waits for DLP's findings on the arguments. */
export const EGRESS_TOOLS: ReadonlySet<string> = new Set(["net.fetch", "model.remote", "plugin.run"])

/** How many decided intent ids the fold remembers. Forgetting an old one is safe: a redelivery is decided again
 * under the same derived decision id, which JetStream stores once. */
export const DECIDED_MEMORY = 65_536

export interface PolicyContext {
  readonly grantedFolders: ReadonlyArray<string>
  readonly role: string
  readonly egressAllowlist: ReadonlyArray<string>
  readonly device: RequestOptions["device"]
}

/** Where the engine in force comes from (the bundle holder): undefined until a good bundle is taken. */
export interface EngineSource {
  readonly current: PolicyEngine | undefined
}

interface Grant {
  readonly id: string
  readonly session: string
  readonly tool?: string
  readonly pathPrefix?: string
  readonly until?: number
}

/**
 * A decision to publish: `decision` on `intent`, caused by `cause` (the intent, or the consent that answers its ask),
 * under the id derived from `idFrom`. `first`: the intent's first decision (an ask stays open after it).
 */
export interface Outcome {
  readonly intent: Intent
  readonly intentHash: string
  readonly decision: Decision
  readonly cause: Event
  readonly idFrom: string
  readonly first: boolean
}

/** What an intent needs next: a decision now, a wait for DLP's findings, or nothing (decided already). */
export type Received =
  | { readonly kind: "decide"; readonly outcome: Outcome }
  | { readonly kind: "await-screening"; readonly intent: string }
  | { readonly kind: "done" }

/** A consent: decided on its open ask, or an ask this process never saw (the history may know it). */
export type Consented = { readonly kind: "decide"; readonly outcome: Outcome } | { readonly kind: "unknown" }

const pathOf = (intent: Intent): string | undefined => {
  const p = intent.data.args.path
  return typeof p === "string" ? p : undefined
}

const covers = (g: Grant, intent: Intent, now: number): boolean => {
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

const NO_BUNDLE = "0".repeat(64)

export class PolicyCore {
  readonly #ctx: PolicyContext
  readonly #engines: EngineSource
  readonly #intents = new Map<string, { readonly intent: Intent; readonly hash: string }>()
  readonly #screened = new Map<string, EventData<"intent.screened">>()
  /** Intents decided in this process life, oldest first; bounded (see DECIDED_MEMORY). */
  readonly #decided = new Set<string>()
  readonly #grants = new Map<string, Grant>()
  /**
   * Grant and revocation arrive through different durables, so a revocation can come before its grant (and a grant
   * redelivered after a restart can follow its revocation): a revoked grant id never becomes a grant again.
   */
  readonly #revoked = new Set<string>()
  readonly #contained = new Map<string, string>()

  constructor(ctx: PolicyContext, engines: EngineSource) {
    this.#ctx = ctx
    this.#engines = engines
  }

  // ---------------------------------------------------------------- state: the same from history as when live

  grant(e: Event<"consent.granted">): void {
    const scope = e.data.scope
    if (scope.kind !== "durable" || this.#revoked.has(e.id)) return
    const until = scope.until === undefined ? undefined : Date.parse(scope.until)
    this.#grants.set(e.id, {
      id: e.id,
      session: e.session,
      ...(scope.tool === undefined ? {} : { tool: scope.tool }),
      ...(scope.pathPrefix === undefined ? {} : { pathPrefix: scope.pathPrefix }),
      ...(until === undefined || Number.isNaN(until) ? {} : { until }),
    })
  }

  /** Whether a grant in force was revoked. */
  revoke(e: Event<"consent.revoked">): boolean {
    this.#revoked.add(e.data.grant)
    return this.#grants.delete(e.data.grant)
  }

  contain(e: Event<"containment.ordered">): void {
    this.#contained.set(e.data.target, e.data.reason)
  }

  // ---------------------------------------------------------------- inputs that decide

  /** An intent, with the SHA-256 of its canonical bytes as verified. */
  receive(intent: Intent, hash: string, now: number): Received {
    if (this.#decided.has(intent.id)) return { kind: "done" }
    this.#intents.set(intent.id, { intent, hash })
    if (EGRESS_TOOLS.has(intent.data.tool) && !this.#screened.has(intent.id))
      return { kind: "await-screening", intent: intent.id }
    return { kind: "decide", outcome: this.#first(intent, hash, now) }
  }

  /** DLP's findings on an intent's arguments: decides the intent when it was waiting for them. */
  screened(e: Event<"intent.screened">, now: number): Outcome | undefined {
    this.#screened.set(e.data.intent, e.data)
    const open = this.#intents.get(e.data.intent)
    if (open === undefined || this.#decided.has(open.intent.id)) return undefined
    return this.#first(open.intent, open.hash, now)
  }

  /** DLP did not answer in time for `intentId`: a deny (fail closed), unless it was decided meanwhile. */
  screeningTimedOut(intentId: string): Outcome | undefined {
    const open = this.#intents.get(intentId)
    if (open === undefined || this.#decided.has(intentId)) return undefined
    this.#screened.set(intentId, { intent: intentId, verdict: "blocked", findings: [] })
    const decision = this.#denial(
      "DLP did not screen the data that would leave the device in time, so it may not leave.",
      "dlp-timeout",
    )
    return {
      intent: open.intent,
      intentHash: open.hash,
      decision,
      cause: open.intent,
      idFrom: open.intent.id,
      first: true,
    }
  }

  /** The user's consent: the final decision on its open ask. */
  consent(e: Event<"consent.granted">): Consented {
    this.grant(e)
    const open = this.#intents.get(e.data.intent)
    if (open === undefined) return { kind: "unknown" }
    return { kind: "decide", outcome: this.#consented(e, open.intent, open.hash) }
  }

  /**
   * A consent for an ask an earlier run of the service decided, found in the stored history (the intent, and the
   * DLP findings on it if any): decided as if the ask were open here.
   */
  consentRecovered(
    e: Event<"consent.granted">,
    intent: Intent,
    hash: string,
    findings: EventData<"intent.screened"> | undefined,
  ): Outcome {
    if (findings !== undefined) this.#screened.set(intent.id, findings)
    return this.#consented(e, intent, hash)
  }

  /** The user refused the ask: nothing more is decided on it. */
  refused(e: Event<"consent.denied">): void {
    this.#forget(e.data.intent)
  }

  /** `o` is stored: an intent decided (its redeliveries are done), and an intent no longer open unless it asks. */
  committed(o: Outcome): void {
    if (o.first) {
      this.#decided.add(o.intent.id)
      if (this.#decided.size > DECIDED_MEMORY) this.#decided.delete(this.#decided.values().next().value as string)
    }
    if (!o.first || o.decision.effect !== "ask") this.#forget(o.intent.id)
  }

  stats() {
    return { pending: this.#intents.size, grants: this.#grants.size, contained: this.#contained.size }
  }

  // ---------------------------------------------------------------- decisions

  #first(intent: Intent, hash: string, now: number): Outcome {
    let d = this.#evaluate(intent, false)
    if (d.effect === "ask") {
      const grant = [...this.#grants.values()].find((g) => covers(g, intent, now))
      if (grant !== undefined) {
        const withConsent = this.#evaluate(intent, true)
        if (withConsent.effect === "allow") d = { ...withConsent, rules: [...withConsent.rules, `grant:${grant.id}`] }
      }
    }
    return { intent, intentHash: hash, decision: d, cause: intent, idFrom: intent.id, first: true }
  }

  #consented(e: Event<"consent.granted">, intent: Intent, hash: string): Outcome {
    const d = this.#evaluate(intent, true)
    const decision = d.effect === "allow" ? { ...d, rules: [...d.rules, `consent:${e.id}`] } : d
    return { intent, intentHash: hash, decision, cause: e, idFrom: e.id, first: false }
  }

  #evaluate(intent: Intent, consent: boolean): Decision {
    const why = this.#contained.get(intent.session)
    if (why !== undefined) return this.#denial(`Ops contained this session: ${why}`.slice(0, 1000), "containment")
    const engine = this.#engines.current
    if (engine === undefined) return this.#denial("No policy bundle is loaded, so nothing is allowed.", "no-bundle")
    const findings = this.#screened.get(intent.id)?.findings
    return engine.decideIntent(intent.data, {
      grantedFolders: this.#ctx.grantedFolders,
      role: this.#ctx.role,
      device: this.#ctx.device,
      egressAllowlist: this.#ctx.egressAllowlist,
      consent,
      ...(findings === undefined ? {} : { dlpFindings: findings }),
    })
  }

  #denial(explanation: string, rule: string): Decision {
    return {
      effect: "deny",
      rules: [rule],
      explanation,
      obligations: [],
      bundle: this.#engines.current?.digest ?? NO_BUNDLE,
      diagnostics: { errors: [], classification: [], permits: [] },
    }
  }

  #forget(id: string): void {
    this.#intents.delete(id)
    this.#screened.delete(id)
  }
}
