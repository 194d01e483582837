import { readFileSync } from "node:fs"
import { EVENT_TYPES, type Event, type EventType, TOOLS } from "@vigil/events"
import { Schema } from "effect"

/**
 * Threshold alerts over the event stream: "more than N matching events within a window, per session (or
 * overall)". Rules are data (config), evaluated in log order by the auditor, which emits a signed `alert.raised`
 * for each firing. A rule fires once when its count crosses the threshold and re-arms when its window has emptied,
 * so a sustained burst is one alert, not one per event.
 */
export const AlertRule = Schema.Struct({
  id: Schema.String.pipe(Schema.check(Schema.isPattern(/^[a-z0-9][a-z0-9-]{0,63}$/u))),
  severity: Schema.Literals(["info", "low", "medium", "high", "critical"]),
  summary: Schema.String.pipe(Schema.check(Schema.isMaxLength(500))),
  match: Schema.Struct({
    type: Schema.Literals(EVENT_TYPES as [EventType, ...EventType[]]),
    /** For decision.made: the decision's effect. */
    effect: Schema.optionalKey(Schema.Literals(["allow", "deny", "ask"])),
    /** The tool of the intent the event is about (intent.proposed, decision.made, action.started). */
    tools: Schema.optionalKey(Schema.Array(Schema.Literals(TOOLS))),
  }),
  per: Schema.Literals(["session", "all"]),
  windowMs: Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 1_000, maximum: 86_400_000 }))),
  threshold: Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 1, maximum: 1_000_000 }))),
})
export type AlertRule = typeof AlertRule.Type
export const AlertRules = Schema.Array(AlertRule)

export const DEFAULT_ALERT_RULES: ReadonlyArray<AlertRule> = [
  {
    id: "denied-egress-burst",
    severity: "high",
    summary: "More than 3 attempts to send data off the device were denied within a minute in one session.",
    match: { type: "decision.made", effect: "deny", tools: ["net.fetch", "model.remote"] },
    per: "session",
    windowMs: 60_000,
    threshold: 3,
  },
  {
    id: "file-read-spike",
    severity: "medium",
    summary: "A session read more than 100 files within a minute.",
    match: { type: "action.started", tools: ["fs.read", "fs.search", "sheet.summarize"] },
    per: "session",
    windowMs: 60_000,
    threshold: 100,
  },
]

/** Rules from a JSON file (schema-checked; a bad file is an error, never silently ignored). */
export const loadAlertRules = (path: string): ReadonlyArray<AlertRule> =>
  Schema.decodeUnknownSync(AlertRules)(JSON.parse(readFileSync(path, "utf8")))

export interface Firing {
  readonly rule: AlertRule
  readonly key: string
  readonly count: number
  /** Ids of the events in the window, oldest first (at most 64). */
  readonly evidence: ReadonlyArray<string>
}

interface Window {
  readonly times: number[]
  readonly ids: string[]
  armed: boolean
}

export class AlertEngine {
  readonly #rules: ReadonlyArray<AlertRule>
  readonly #windows = new Map<string, Window>()
  /** intent id → tool, so decisions and actions can be matched by the tool of their intent. */
  readonly #intentTools = new Map<string, string>()

  constructor(rules: ReadonlyArray<AlertRule>) {
    this.#rules = rules
  }

  /** Feed one event (in log order); returns the rules that fire on it. */
  observe(event: Event): ReadonlyArray<Firing> {
    if (event.type === "intent.proposed") {
      this.#intentTools.set(event.id, event.data.tool)
      if (this.#intentTools.size > 100_000) this.#intentTools.delete(this.#intentTools.keys().next().value as string)
    }
    const at = Date.parse(event.time)
    const out: Firing[] = []
    for (const rule of this.#rules) {
      if (!this.#matches(rule, event)) continue
      const key = `${rule.id}\u0000${rule.per === "session" ? event.session : "*"}`
      let w = this.#windows.get(key)
      if (w === undefined) {
        w = { times: [], ids: [], armed: true }
        this.#windows.set(key, w)
      }
      while (w.times.length > 0 && (w.times[0] as number) <= at - rule.windowMs) {
        w.times.shift()
        w.ids.shift()
      }
      if (w.times.length === 0) w.armed = true
      w.times.push(at)
      w.ids.push(event.id)
      if (w.armed && w.times.length > rule.threshold) {
        w.armed = false
        out.push({
          rule,
          key: rule.per === "session" ? event.session : "*",
          count: w.times.length,
          evidence: w.ids.slice(-64),
        })
      }
    }
    return out
  }

  #matches(rule: AlertRule, event: Event): boolean {
    if (rule.match.type !== event.type) return false
    if (
      rule.match.effect !== undefined &&
      (event.type !== "decision.made" || event.data.effect !== rule.match.effect)
    ) {
      return false
    }
    if (rule.match.tools !== undefined) {
      const tool = this.#toolOf(event)
      if (tool === undefined || !(rule.match.tools as ReadonlyArray<string>).includes(tool)) return false
    }
    return true
  }

  #toolOf(event: Event): string | undefined {
    switch (event.type) {
      case "intent.proposed":
      case "action.started":
        return event.data.tool
      case "decision.made":
        return this.#intentTools.get(event.data.intent)
      default:
        return undefined
    }
  }
}
