import { TOOLS } from "@vigil/events"
import { Schema } from "effect"
import {
  type AuthorizationAnswer,
  type CedarValue,
  cedar,
  type DetailedError,
  type PolicyJson,
  type StatefulAuthorizationCall,
} from "./cedar.ts"
import { type Classifier, type DataClass, makeClassifier, parseDataClassConfig } from "./classify.ts"
import { BundleContents, bundleDigest } from "./contents.ts"
import { mergeObligations, type Obligation, parseObligations } from "./obligations.ts"
import { buildRequest, type IntentInput, type PolicyRequest, type RequestOptions } from "./request.ts"

/**
 * The policy engine: one compiled bundle (schema-validated, pre-parsed Cedar policy set, data-class rules) and
 * `decide`, which turns Cedar's permit/forbid answer into Vigil's allow / ask / deny:
 *
 * 1. a `forbid` policy matches → **deny**; the matching forbids are the rules, their `@reason`s the explanation;
 * 2. otherwise, an `@effect("ask")` permit matches → **ask** (or **allow** when the request carries the user's
 *    consent); the matching ask policies are the rules. An ask cannot be lifted by adding a broader permit;
 * 3. otherwise, a plain permit matches → **allow**; the matching permits are the rules;
 * 4. nothing matches → **deny**, "No policy allows this.".
 *
 * Obligations are the `@obligation` annotations of every permit that matched (asks and plain), merged most
 * restrictive; an ask adds the `ask` obligation. Anything that goes wrong — a request that does not fit the schema,
 * a policy that errors while evaluating, an exception from the engine — is a deny whose explanation starts with
 * "policy engine error:" (fail closed: a forbid that errors must not become "no forbid matched").
 */

export type Effect = "allow" | "deny" | "ask"

export interface Decision {
  readonly effect: Effect
  /** Ids of the policies that determined the effect (empty for default deny and engine errors). */
  readonly rules: ReadonlyArray<string>
  /** Plain language, from the determining policies' `@reason`s. */
  readonly explanation: string
  readonly obligations: ReadonlyArray<Obligation>
  /** Highest class of the data involved; absent when the request could not even be built. */
  readonly dataClass?: DataClass
  /** Digest of the bundle that decided. */
  readonly bundle: string
  readonly diagnostics: {
    /** Engine errors that forced a deny. */
    readonly errors: ReadonlyArray<string>
    /** Data-class rules that matched. */
    readonly classification: ReadonlyArray<string>
    /** Every permit that matched when no forbid did (asks included). */
    readonly permits: ReadonlyArray<string>
  }
}

/** One policy of a compiled bundle, as its annotations describe it. */
export interface PolicyInfo {
  readonly id: string
  /** Bundle file key, e.g. "default/egress.cedar", and the 1-based line the policy starts on. */
  readonly file: string
  readonly line: number
  /** `deny` for forbid, `ask` for a permit annotated `@effect("ask")`, `allow` for other permits. */
  readonly effect: Effect
  readonly reason: string
  readonly obligations: ReadonlyArray<Obligation>
  readonly text: string
}

export type BundleRejection = "schema" | "parse" | "validation"

export interface CompileOptions {
  /**
   * Check every request against the schema inside Cedar (types, required attributes, enum members) before it is
   * evaluated. Default true. Without it decisions are about twice as fast and stay fail-closed — a missing or
   * mistyped attribute a policy reads is an evaluation error, hence a deny — but an attribute no policy reads is
   * not checked. For bulk replay of historical intents, not for the live service.
   */
  readonly validateRequests?: boolean
  /**
   * How many distinct Cedar requests keep their answer (least recently used dropped first); 0 turns it off. Default
   * {@link DEFAULT_ANSWER_CACHE}. An answer depends only on the request and this engine's pre-parsed policies and
   * schema (Cedar has no clock, randomness or I/O), so a repeated request gets exactly the answer Cedar would give
   * again, without the ~0.3 ms Cedar spends turning the request's JSON into its own values on every call.
   */
  readonly answerCache?: number
}

export const DEFAULT_ANSWER_CACHE = 4096

export type CompileVerdict =
  | { readonly ok: true; readonly engine: PolicyEngine }
  | {
      readonly ok: false
      readonly reason: BundleRejection
      /** One line summary. */
      readonly detail: string
      /** Every problem found, each naming the file (and line) it is in. */
      readonly errors: ReadonlyArray<string>
    }

export interface PolicyEngine {
  readonly digest: string
  readonly role: string | null
  readonly contents: BundleContents
  readonly policies: ReadonlyArray<PolicyInfo>
  readonly classifier: Classifier
  /** Whether requests are checked against the schema (see {@link CompileOptions}). */
  readonly validateRequests: boolean
  /** Cedar answers served from the cache, and Cedar calls made (see {@link CompileOptions.answerCache}). */
  readonly cacheStats: () => { readonly hits: number; readonly calls: number; readonly size: number }
  /** Validator warnings (the bundle was accepted). */
  readonly warnings: ReadonlyArray<string>
  /** Decide a built request. Never throws. */
  decide(request: PolicyRequest): Decision
  /** Build the request for an intent with this bundle's data-class rules, then decide. Never throws. */
  decideIntent(intent: IntentInput, options: Omit<RequestOptions, "dataClasses">): Decision
}

export const DEFAULT_DENY = "No policy allows this."
export const ENGINE_ERROR = "policy engine error"
/** Appended to an ask's explanation when the user's consent turned it into an allow. */
export const CONSENT_NOTE = "You agreed to this when asked."

const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/u
const MAX_REASON = 300
const MAX_EXPLANATION = 1000
const ANNOTATIONS = new Set(["id", "reason", "effect", "obligation", "doc"])

/** Thrown (and caught) inside {@link compileBundle}. */
class Rejected extends Error {
  readonly reason: BundleRejection
  readonly errors: ReadonlyArray<string>
  constructor(reason: BundleRejection, detail: string, errors: ReadonlyArray<string> = [detail]) {
    super(detail)
    this.reason = reason
    this.errors = errors
  }
}

const errText = (e: DetailedError): string => (e.help ? `${e.message} (${e.help})` : e.message)
const lineAt = (text: string, offset: number): number => text.slice(0, offset).split("\n").length

const decodeContents = Schema.decodeUnknownResult(BundleContents, { onExcessProperty: "error", errors: "first" })

/** Names pre-parsed in this process (Cedar's table is per thread; Node runs compile and decide on one). */
const preparsed = new Set<string>()

/**
 * Check a bundle and compile it into an engine: the Cedar schema parses and declares every catalog tool as an
 * action; data-classes.json is valid; every policy file parses; every policy has a unique `@id`, a `@reason`, a
 * well-formed `@effect`/`@obligation`; every policy validates against the schema (strict mode). The policy set and
 * schema are then pre-parsed once. Never throws: a bad bundle is a rejection naming each problem.
 */
export const compileBundle = (input: unknown, options: CompileOptions = {}): CompileVerdict => {
  try {
    return { ok: true, engine: compileOrThrow(input, options) }
  } catch (e) {
    if (e instanceof Rejected) return { ok: false, reason: e.reason, detail: e.message, errors: e.errors }
    const detail = `${ENGINE_ERROR}: ${(e as Error)?.message ?? String(e)}`
    return { ok: false, reason: "parse", detail, errors: [detail] }
  }
}

/** {@link compileBundle}, throwing a {@link PolicyBundleError} on rejection. */
export const compileBundleOrThrow = (input: unknown, options: CompileOptions = {}): PolicyEngine => {
  const v = compileBundle(input, options)
  if (!v.ok) throw new PolicyBundleError(v.reason, v.detail, v.errors)
  return v.engine
}

export class PolicyBundleError extends Error {
  override readonly name = "PolicyBundleError"
  readonly reason: BundleRejection | "bad_signature"
  readonly errors: ReadonlyArray<string>
  constructor(reason: BundleRejection | "bad_signature", detail: string, errors: ReadonlyArray<string> = [detail]) {
    super(`${reason}: ${detail}${errors.length > 1 ? `\n  ${errors.join("\n  ")}` : ""}`)
    this.reason = reason
    this.errors = errors
  }
}

const compileOrThrow = (input: unknown, options: CompileOptions): PolicyEngine => {
  const decoded = decodeContents(input)
  if (decoded._tag === "Failure") throw new Rejected("schema", `bundle contents: ${decoded.failure.message}`)
  const contents = decoded.success
  const digest = bundleDigest(contents)

  // 1. Cedar schema.
  const parsedSchema = cedar.checkParseSchema(contents.schema)
  if (parsedSchema.type === "failure") {
    const errors = parsedSchema.errors.map((e) => `schema.cedarschema: ${errText(e)}`)
    throw new Rejected("schema", errors[0] ?? "schema.cedarschema does not parse", errors)
  }
  const schemaJson = cedar.schemaToJson(contents.schema)
  if (schemaJson.type === "failure") throw new Rejected("schema", "schema.cedarschema cannot be converted to JSON")
  const actions = schemaJson.json[""]?.actions ?? {}
  const missing = TOOLS.filter((t) => actions[t]?.appliesTo === undefined)
  if (missing.length > 0) {
    throw new Rejected("schema", `schema.cedarschema declares no requestable action for ${missing.join(", ")}`)
  }
  // Every action group each tool belongs to, transitively: the action entity sent along when requests are not
  // checked against the schema (the schema is otherwise what tells Cedar that fs.write is in "destructive").
  const actionGroups = new Map<string, string[]>()
  for (const t of TOOLS) {
    const seen = new Set<string>()
    const todo = [t as string]
    while (todo.length > 0) {
      for (const up of actions[todo.pop() as string]?.memberOf ?? []) {
        if (up.type !== undefined && up.type !== "Action") continue
        if (!seen.has(up.id)) {
          seen.add(up.id)
          todo.push(up.id)
        }
      }
    }
    actionGroups.set(t, [...seen].sort())
  }

  // 2. Data classes.
  const dc = parseDataClassConfig(contents.dataClasses)
  if (!dc.ok) throw new Rejected("schema", `data-classes.json: ${dc.detail}`)
  const classifier = makeClassifier(dc.config)

  // 3. Policies: parse each file, read annotations.
  const policies: PolicyInfo[] = []
  const parseErrors: string[] = []
  const annotationErrors: string[] = []
  const byId = new Map<string, PolicyInfo>()
  for (const file of Object.keys(contents.policies).sort()) {
    const text = contents.policies[file] as string
    const parts = cedar.policySetTextToParts(text)
    if (parts.type === "failure") {
      for (const e of parts.errors) {
        const at = e.sourceLocations?.[0]
        parseErrors.push(`${file}${at === undefined ? "" : `:${lineAt(text, at.start)}`}: ${errText(e)}`)
      }
      continue
    }
    if (parts.policy_templates.length > 0) annotationErrors.push(`${file}: policy templates are not supported`)
    let cursor = 0
    for (const part of parts.policies) {
      const at = text.indexOf(part, cursor)
      const offset = at === -1 ? 0 : at
      if (at !== -1) cursor = at + part.length
      const line = lineAt(text, offset)
      const where = `${file}:${line}`
      const json = cedar.policyToJson(part)
      if (json.type === "failure") {
        parseErrors.push(`${where}: ${json.errors.map(errText).join("; ")}`)
        continue
      }
      const info = readAnnotations(json.json, where, annotationErrors)
      if (info === undefined) continue
      const prior = byId.get(info.id)
      if (prior !== undefined) {
        annotationErrors.push(`${where}: @id("${info.id}") is already used at ${prior.file}:${prior.line}`)
        continue
      }
      const p: PolicyInfo = { ...info, file, line, text: part }
      byId.set(p.id, p)
      policies.push(p)
    }
  }
  if (parseErrors.length > 0) throw new Rejected("parse", parseErrors[0] as string, parseErrors)
  if (annotationErrors.length > 0) throw new Rejected("validation", annotationErrors[0] as string, annotationErrors)
  if (policies.length === 0) throw new Rejected("validation", "the bundle has no policies")

  // 4. Validate against the schema (strict mode).
  const staticPolicies: Record<string, string> = {}
  for (const p of policies) staticPolicies[p.id] = p.text
  const validation = cedar.validate({
    schema: contents.schema,
    policies: { staticPolicies },
    validationSettings: { mode: "strict" },
  })
  if (validation.type === "failure") {
    const errors = validation.errors.map(errText)
    throw new Rejected("validation", errors[0] ?? "validation failed", errors)
  }
  const located = (policyId: string, e: DetailedError): string => {
    const p = byId.get(policyId)
    if (p === undefined) return `${policyId}: ${errText(e)}`
    const at = e.sourceLocations?.[0]
    const line = at === undefined ? p.line : p.line + lineAt(p.text, at.start) - 1
    return `${p.file}:${line}: ${errText(e)}`
  }
  if (validation.validationErrors.length > 0) {
    const errors = validation.validationErrors.map((v) => located(v.policyId, v.error))
    throw new Rejected("validation", errors[0] as string, errors)
  }
  const warnings = [
    ...validation.validationWarnings.map((v) => located(v.policyId, v.error)),
    ...validation.otherWarnings.map(errText),
  ]

  // 5. Pre-parse once. Cedar keeps pre-parsed schemas and policy sets in a per-thread table keyed by name, with no
  //    way to drop an entry; naming them by the bundle digest makes a recompile of the same bundle (hot reload)
  //    reuse its entry, and one engine can never be re-pointed at different policies under its name.
  const name = `vigil-${digest}`
  if (!preparsed.has(name)) {
    const ps = cedar.preparseSchema(name, contents.schema)
    if (ps.type === "failure") throw new Rejected("schema", ps.errors.map(errText).join("; "))
    const pp = cedar.preparsePolicySet(name, { staticPolicies })
    if (pp.type === "failure") {
      const errors = pp.errors.map(errText)
      throw new Rejected("parse", errors[0] ?? "policy set does not parse", errors)
    }
    preparsed.add(name)
  }
  return makeEngine({
    name,
    digest,
    contents,
    policies,
    byId,
    classifier,
    warnings,
    actionGroups,
    validateRequests: options.validateRequests ?? true,
    answerCache: Math.max(0, Math.floor(options.answerCache ?? DEFAULT_ANSWER_CACHE)),
  })
}

const readAnnotations = (
  json: PolicyJson,
  where: string,
  errors: string[],
): Omit<PolicyInfo, "file" | "line" | "text"> | undefined => {
  const a = json.annotations ?? {}
  const before = errors.length
  for (const key of Object.keys(a)) {
    if (!ANNOTATIONS.has(key)) errors.push(`${where}: unknown annotation @${key} (${[...ANNOTATIONS].join(", ")})`)
  }
  const id = a.id
  if (id === undefined || !ID_PATTERN.test(id)) {
    errors.push(`${where}: every policy needs @id("…") matching ${ID_PATTERN.source}${id ? `, got "${id}"` : ""}`)
  }
  const reason = a.reason?.trim() ?? ""
  if (reason === "" || reason.length > MAX_REASON || /[\r\n]/u.test(reason)) {
    errors.push(`${where}: every policy needs @reason("one plain-language sentence"), at most ${MAX_REASON} characters`)
  }
  let effect: Effect = json.effect === "forbid" ? "deny" : "allow"
  if (a.effect !== undefined) {
    if (a.effect !== "ask") errors.push(`${where}: @effect must be "ask", got "${a.effect}"`)
    else if (json.effect === "forbid") errors.push(`${where}: @effect("ask") only applies to permit policies`)
    else effect = "ask"
  }
  let obligations: ReadonlyArray<Obligation> = []
  if (a.obligation !== undefined) {
    if (json.effect === "forbid") errors.push(`${where}: a forbid policy cannot carry obligations`)
    const parsed = parseObligations(a.obligation)
    if (parsed.ok) obligations = parsed.obligations
    else errors.push(`${where}: @obligation: ${parsed.detail}`)
  }
  if (errors.length > before || id === undefined) return undefined
  return { id, effect, reason, obligations }
}

const clip = (s: string): string => (s.length <= MAX_EXPLANATION ? s : `${s.slice(0, MAX_EXPLANATION - 1)}…`)

const explain = (ps: ReadonlyArray<PolicyInfo>): string => clip([...new Set(ps.map((p) => p.reason))].join(" "))

interface EngineParts {
  readonly name: string
  readonly digest: string
  readonly contents: BundleContents
  readonly policies: ReadonlyArray<PolicyInfo>
  readonly byId: ReadonlyMap<string, PolicyInfo>
  readonly classifier: Classifier
  readonly warnings: ReadonlyArray<string>
  readonly actionGroups: ReadonlyMap<string, ReadonlyArray<string>>
  readonly validateRequests: boolean
  readonly answerCache: number
}

const makeEngine = (parts: EngineParts): PolicyEngine => {
  const { name, digest, contents, policies, byId, classifier, warnings, actionGroups, validateRequests, answerCache } =
    parts
  // Keyed by the request exactly as it is handed to Cedar. Insertion order is recency: a hit is re-inserted, and the
  // oldest entry goes when the cache is full. Exceptions are never cached (they are a deny, and need not repeat).
  const answers = new Map<string, AuthorizationAnswer>()
  let hits = 0
  let calls = 0
  const authorize = (call: StatefulAuthorizationCall): AuthorizationAnswer => {
    if (answerCache === 0) {
      calls++
      return cedar.statefulIsAuthorized(call)
    }
    const key = JSON.stringify(call)
    const cached = answers.get(key)
    if (cached !== undefined) {
      hits++
      answers.delete(key)
      answers.set(key, cached)
      return cached
    }
    calls++
    const answer = cedar.statefulIsAuthorized(call)
    if (answers.size >= answerCache) answers.delete(answers.keys().next().value as string)
    answers.set(key, answer)
    return answer
  }
  const order = new Map(policies.map((p, i) => [p.id, i]))
  const sorted = (ids: ReadonlyArray<string>): PolicyInfo[] =>
    [...new Set(ids)]
      .map((id) => byId.get(id))
      .filter((p): p is PolicyInfo => p !== undefined)
      .sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0))

  const failed = (message: string, dataClass: DataClass | undefined, classification: ReadonlyArray<string>) => {
    const explanation = clip(`${ENGINE_ERROR}: ${message}`)
    return {
      effect: "deny" as const,
      rules: [],
      explanation,
      obligations: [],
      ...(dataClass === undefined ? {} : { dataClass }),
      bundle: digest,
      diagnostics: { errors: [explanation], classification, permits: [] },
    }
  }

  const decide = (request: PolicyRequest): Decision => {
    let dataClass: DataClass | undefined
    let classification: ReadonlyArray<string> = []
    try {
      dataClass = request.dataClass
      classification = request.classification
      const call = {
        principal: request.principal,
        action: request.action,
        resource: request.resource,
        context: request.context as Record<string, CedarValue>,
        preparsedPolicySetId: name,
      }
      // The schema is also what gives action entities their groups (`action in Action::"egress"`): without it,
      // group membership is silently false and a forbid on a group never matches — so without the schema, the
      // action entity and its groups go along with the request.
      const action = request.action as { type?: unknown; id?: unknown }
      const groups = actionGroups.get(request.tool)
      if (groups === undefined || action.type !== "Action" || action.id !== request.tool) {
        return failed(`the request's action does not match its tool ${request.tool}`, dataClass, classification)
      }
      const answer = validateRequests
        ? authorize({
            ...call,
            entities: request.entities,
            preparsedSchemaName: name,
            validateRequest: true,
          })
        : authorize({
            ...call,
            entities: [
              ...request.entities,
              { uid: request.action, attrs: {}, parents: groups.map((id) => ({ type: "Action", id })) },
            ],
          })
      if (answer.type === "failure") return failed(answer.errors.map(errText).join("; "), dataClass, classification)
      const { decision, diagnostics } = answer.response
      if (diagnostics.errors.length > 0) {
        const msgs = diagnostics.errors.map((e) => `policy ${e.policyId}: ${errText(e.error)}`)
        return failed(msgs.join("; "), dataClass, classification)
      }
      const matched = sorted(diagnostics.reason)
      if (decision === "deny") {
        const forbids = matched.filter((p) => p.effect === "deny")
        if (forbids.length === 0) {
          return {
            effect: "deny",
            rules: [],
            explanation: DEFAULT_DENY,
            obligations: [],
            dataClass,
            bundle: digest,
            diagnostics: { errors: [], classification, permits: [] },
          }
        }
        return {
          effect: "deny",
          rules: forbids.map((p) => p.id),
          explanation: explain(forbids),
          obligations: [],
          dataClass,
          bundle: digest,
          diagnostics: { errors: [], classification, permits: [] },
        }
      }
      const permits = matched.filter((p) => p.effect !== "deny")
      if (permits.length === 0) return failed("allowed without a matching permit", dataClass, classification)
      const asks = permits.filter((p) => p.effect === "ask")
      const determining = asks.length > 0 ? asks : permits
      const ask = asks.length > 0 && !request.consent
      const effect: Effect = ask ? "ask" : "allow"
      const reason = explain(determining)
      return {
        effect,
        rules: determining.map((p) => p.id),
        explanation: asks.length > 0 && !ask ? clip(`${reason} ${CONSENT_NOTE}`) : reason,
        obligations: mergeObligations(
          permits.map((p) => p.obligations),
          ask,
        ),
        dataClass,
        bundle: digest,
        diagnostics: { errors: [], classification, permits: permits.map((p) => p.id) },
      }
    } catch (e) {
      return failed((e as Error)?.message ?? String(e), dataClass, classification)
    }
  }

  return {
    digest,
    role: contents.role,
    contents,
    policies,
    classifier,
    validateRequests,
    cacheStats: () => ({ hits, calls, size: answers.size }),
    warnings,
    decide,
    decideIntent: (intent, options) => {
      let request: PolicyRequest
      try {
        request = buildRequest(intent, { ...options, dataClasses: classifier })
      } catch (e) {
        return failed((e as Error)?.message ?? String(e), undefined, [])
      }
      return decide(request)
    },
  }
}
