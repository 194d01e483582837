import { Schema } from "effect"
import { BlobRef, EventId, NonNegativeInt, Sha256Hex, Text, Token } from "./primitives.ts"

/**
 * The event catalog: the one place where event types, who may emit them, who consumes them and the shape of their
 * `data` are named. NATS permissions (infra/nats), durable consumers (libs/bus), the key manifest's default grants
 * (libs/keys) and the JSON Schemas in schemas/ are all generated from this table.
 */

/** The six services. */
export const SERVICES = ["gateway", "policy", "sandbox", "inference", "dlp", "auditor"] as const
export type Service = (typeof SERVICES)[number]
/** Signing principals: the services plus `ops`, the incident-response CLI (containment orders). */
export const PRINCIPALS = [...SERVICES, "ops"] as const
export type Principal = (typeof PRINCIPALS)[number]

export const TOOLS = [
  "fs.list",
  "fs.read",
  "fs.search",
  "fs.write",
  "fs.move",
  "fs.delete",
  "sheet.summarize",
  "net.fetch",
  "plugin.run",
  "shell.exec",
  "model.remote",
] as const
export const Tool = Schema.Literals(TOOLS)

export const DATA_CLASSES = ["public", "internal", "confidential", "restricted"] as const
export const DataClass = Schema.Literals(DATA_CLASSES)

/** One DLP hit: which detector, what kind of data, how many, never the matched text itself. */
export const Finding = Schema.Struct({
  detector: Text(64),
  kind: Schema.Literals(["secret", "pii", "financial", "health", "credential", "custom"]),
  count: NonNegativeInt,
  // Finite, not Number: both accept exactly [0, 1], but Number's JSON codec would put "NaN"/"Infinity" strings into
  // the generated JSON Schema in place of the bounds, and the wire never carries those.
  score: Schema.optionalKey(Schema.Finite.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })))),
  field: Schema.optionalKey(Text(256)),
})
const Findings = Schema.Array(Finding).pipe(Schema.check(Schema.isMaxLength(256)))
const ScreenVerdict = Schema.Literals(["clean", "masked", "blocked"])

export const Obligation = Schema.Struct({
  kind: Schema.Literals(["read-only", "redact", "max-bytes", "ask"]),
  bytes: Schema.optionalKey(NonNegativeInt),
  classes: Schema.optionalKey(Schema.Array(DataClass)),
})

/** What a consent covers: this one intent, or a narrow durable grant (tool + path prefix + expiry). */
export const ConsentScope = Schema.Struct({
  kind: Schema.Literals(["once", "durable"]),
  tool: Schema.optionalKey(Tool),
  pathPrefix: Schema.optionalKey(Text(4096)),
  until: Schema.optionalKey(Text(32)),
})

const Json = Schema.Json
const Severity = Schema.Literals(["info", "low", "medium", "high", "critical"])
const Tier = Schema.Literals(["os", "wasm", "microvm"])

interface Entry<D extends Schema.Top> {
  readonly data: D
  readonly producers: ReadonlyArray<Principal>
  readonly consumers: ReadonlyArray<Service>
  /** Blob roles the event must reference (content kept out of the event). */
  readonly blobs: ReadonlyArray<string>
  readonly doc: string
}
const entry = <D extends Schema.Top>(e: Entry<D>): Entry<D> => e

export const CATALOG = {
  "task.submitted": entry({
    doc: "A user asked the agent to do something; the prompt text is the `prompt` blob.",
    producers: ["gateway"],
    consumers: ["dlp"],
    blobs: ["prompt"],
    data: Schema.Struct({
      channel: Schema.Literals(["ui", "cli", "api"]),
      workspace: Text(4096),
      promptChars: NonNegativeInt,
    }),
  }),
  "prompt.screened": entry({
    doc: "DLP screened the prompt; `masked` is what the model may see.",
    producers: ["dlp"],
    consumers: ["inference"],
    blobs: ["masked"],
    data: Schema.Struct({ task: EventId, verdict: ScreenVerdict, findings: Findings }),
  }),
  "intent.proposed": entry({
    doc: "The model proposes one tool call.",
    producers: ["inference"],
    consumers: ["dlp", "policy"],
    blobs: [],
    data: Schema.Struct({
      tool: Tool,
      args: Schema.Record(Schema.String, Json),
      reason: Text(2000),
      step: NonNegativeInt,
    }),
  }),
  "intent.screened": entry({
    doc: "DLP findings for an intent's arguments, so policy can deny sending secrets.",
    producers: ["dlp"],
    consumers: ["policy"],
    blobs: [],
    data: Schema.Struct({ intent: EventId, verdict: ScreenVerdict, findings: Findings }),
  }),
  "decision.made": entry({
    doc: "Policy decided an intent; `intentHash` binds the decision to the exact intent it judged.",
    producers: ["policy"],
    consumers: ["sandbox", "gateway"],
    blobs: [],
    data: Schema.Struct({
      intent: EventId,
      intentHash: Sha256Hex,
      effect: Schema.Literals(["allow", "deny", "ask"]),
      rules: Schema.Array(Text(128)),
      explanation: Text(1000),
      obligations: Schema.Array(Obligation),
      bundle: Sha256Hex,
      dataClass: Schema.optionalKey(DataClass),
    }),
  }),
  "consent.requested": entry({
    doc: "The gateway asked the user, in plain language, to allow an intent.",
    producers: ["gateway"],
    consumers: ["policy"],
    blobs: [],
    data: Schema.Struct({ decision: EventId, intent: EventId, question: Text(2000), proposed: ConsentScope }),
  }),
  "consent.granted": entry({
    doc: "The user allowed it, once or as a narrow durable grant.",
    producers: ["gateway"],
    consumers: ["policy", "sandbox"],
    blobs: [],
    data: Schema.Struct({ request: EventId, intent: EventId, scope: ConsentScope }),
  }),
  "consent.denied": entry({
    doc: "The user refused.",
    producers: ["gateway"],
    consumers: ["policy", "sandbox"],
    blobs: [],
    data: Schema.Struct({ request: EventId, intent: EventId, reason: Schema.optionalKey(Text(1000)) }),
  }),
  "consent.revoked": entry({
    doc: "The user withdrew a durable grant; the next matching action is decided afresh.",
    producers: ["gateway"],
    consumers: ["policy", "sandbox"],
    blobs: [],
    data: Schema.Struct({ grant: EventId, reason: Schema.optionalKey(Text(1000)) }),
  }),
  "action.started": entry({
    doc: "The sandbox began executing an allowed intent.",
    producers: ["sandbox"],
    consumers: ["dlp", "gateway"],
    blobs: [],
    data: Schema.Struct({ decision: EventId, intent: EventId, tool: Tool, tier: Tier }),
  }),
  "action.completed": entry({
    doc: "The action finished; its output is the `output` blob.",
    producers: ["sandbox"],
    consumers: ["dlp", "gateway"],
    blobs: ["output"],
    data: Schema.Struct({ action: EventId, exitCode: Schema.Int, durationMs: NonNegativeInt }),
  }),
  "action.failed": entry({
    doc: "The action did not run to completion, or was refused by the sandbox.",
    producers: ["sandbox"],
    consumers: ["dlp", "gateway"],
    blobs: [],
    data: Schema.Struct({ action: EventId, code: Text(64), reason: Text(2000) }),
  }),
  "change.staged": entry({
    doc: "A write was staged, not applied; previous bytes are kept as a blob so undo is exact.",
    producers: ["sandbox"],
    consumers: ["dlp", "gateway"],
    blobs: [],
    data: Schema.Struct({
      action: EventId,
      op: Schema.Literals(["write", "move", "delete"]),
      path: Text(4096),
      before: Schema.optionalKey(BlobRef),
      after: Schema.optionalKey(BlobRef),
    }),
  }),
  "result.screened": entry({
    doc: "DLP screened an action's output; `masked` is what the model may see.",
    producers: ["dlp"],
    consumers: ["inference"],
    blobs: ["masked"],
    data: Schema.Struct({ action: EventId, verdict: ScreenVerdict, findings: Findings }),
  }),
  "answer.proposed": entry({
    doc: "The model's answer to the user, before DLP.",
    producers: ["inference"],
    consumers: ["dlp"],
    blobs: ["answer"],
    data: Schema.Struct({ task: EventId, step: NonNegativeInt }),
  }),
  "answer.released": entry({
    doc: "DLP released the (possibly masked) answer to the user.",
    producers: ["dlp"],
    consumers: ["gateway"],
    blobs: ["answer"],
    data: Schema.Struct({ answer: EventId, verdict: ScreenVerdict, findings: Findings }),
  }),
  "answer.blocked": entry({
    doc: "DLP withheld the answer and says why.",
    producers: ["dlp"],
    consumers: ["gateway"],
    blobs: [],
    data: Schema.Struct({ answer: EventId, findings: Findings, explanation: Text(1000) }),
  }),
  "change.committed": entry({
    doc: "The user kept a staged change.",
    producers: ["gateway"],
    consumers: ["sandbox"],
    blobs: [],
    data: Schema.Struct({ change: EventId }),
  }),
  "change.reverted": entry({
    doc: "The user undid a staged change.",
    producers: ["gateway"],
    consumers: ["sandbox"],
    blobs: [],
    data: Schema.Struct({ change: EventId }),
  }),
  "checkpoint.signed": entry({
    doc: "The auditor signed a C2SP checkpoint of the Merkle log.",
    producers: ["auditor"],
    consumers: ["gateway"],
    blobs: [],
    data: Schema.Struct({ origin: Text(256), size: NonNegativeInt, root: Text(64), note: Text(4096) }),
  }),
  "alert.raised": entry({
    doc: "A threshold rule fired, or a service refused something ops should know about.",
    producers: ["auditor", "policy", "dlp", "sandbox", "gateway", "inference", "ops"],
    consumers: ["gateway"],
    blobs: [],
    data: Schema.Struct({
      rule: Text(128),
      severity: Severity,
      summary: Text(2000),
      evidence: Schema.Array(EventId).pipe(Schema.check(Schema.isMaxLength(64))),
      details: Schema.optionalKey(Schema.Record(Schema.String, Json)),
    }),
  }),
  "containment.ordered": entry({
    doc: "Ops ordered a session contained: its sandboxes are killed and its pending intents refused.",
    producers: ["ops"],
    consumers: ["sandbox", "gateway", "policy"],
    blobs: [],
    data: Schema.Struct({ target: Token, reason: Text(1000) }),
  }),
} as const

export type EventType = keyof typeof CATALOG
export const EVENT_TYPES = Object.keys(CATALOG) as ReadonlyArray<EventType>
export type EventData<T extends EventType> = (typeof CATALOG)[T]["data"]["Type"]

export const isEventType = (s: string): s is EventType => Object.hasOwn(CATALOG, s)

/** Event types a principal may emit according to the catalog (the manifest's default grant). */
export const typesProducedBy = (p: Principal): ReadonlyArray<EventType> =>
  EVENT_TYPES.filter((t) => (CATALOG[t].producers as ReadonlyArray<string>).includes(p))

/** Event types a service consumes; each gets its own durable consumer (nats-server 2.9: one filter per consumer). */
export const typesConsumedBy = (s: Service): ReadonlyArray<EventType> =>
  EVENT_TYPES.filter((t) => (CATALOG[t].consumers as ReadonlyArray<string>).includes(s))
