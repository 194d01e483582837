import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { keyIdOf, nodeEd25519, randomSeed } from "@vigil/crypto"
import { type Event, signEvent } from "@vigil/events"
import { describe, expect, it } from "vitest"
import { AlertEngine, DEFAULT_ALERT_RULES, loadAlertRules } from "./alerts.ts"

const key = (principal: "inference" | "policy") => {
  const seed = randomSeed()
  const publicKey = nodeEd25519.publicKey(seed)
  return { principal, seed, publicKey, kid: keyIdOf(publicKey) }
}
const inference = key("inference")
const policy = key("policy")
const t0 = Date.parse("2026-11-29T10:00:00.000Z")
const at = (ms: number) => new Date(t0 + ms).toISOString()

const intent = (session: string, tool: "net.fetch" | "fs.read", ms: number): Event =>
  signEvent(inference, {
    type: "intent.proposed",
    session,
    time: at(ms),
    data: { tool, args: {}, reason: "r", step: 0 },
  }) as Event
const deny = (i: Event, ms: number): Event =>
  signEvent(policy, {
    type: "decision.made",
    session: i.session,
    time: at(ms),
    data: {
      intent: i.id,
      intentHash: "0".repeat(64),
      effect: "deny",
      rules: [],
      explanation: "no",
      obligations: [],
      bundle: "0".repeat(64),
    },
  }) as Event

describe("AlertEngine", () => {
  it("fires once when denied sends in one session exceed 3 per minute, and re-arms after the window", () => {
    const engine = new AlertEngine(DEFAULT_ALERT_RULES)
    const fired: string[] = []
    for (let n = 0; n < 6; n++) {
      const i = intent("s1", "net.fetch", n * 1_000)
      engine.observe(i)
      for (const f of engine.observe(deny(i, n * 1_000 + 10))) fired.push(`${f.rule.id}:${f.key}:${f.count}`)
    }
    expect(fired).toEqual(["denied-egress-burst:s1:4"])
    // Two minutes later the window has emptied; a new burst is a new alert.
    for (let n = 0; n < 4; n++) {
      const i = intent("s1", "net.fetch", 180_000 + n)
      engine.observe(i)
      for (const f of engine.observe(deny(i, 180_000 + n))) fired.push(`${f.rule.id}:${f.key}:${f.count}`)
    }
    expect(fired).toEqual(["denied-egress-burst:s1:4", "denied-egress-burst:s1:4"])
  })

  it("counts per session, ignores other tools and events spread over more than the window", () => {
    const engine = new AlertEngine(DEFAULT_ALERT_RULES)
    const out = []
    for (let n = 0; n < 4; n++) {
      for (const s of ["a", "b"]) {
        const i = intent(s, n % 2 === 0 ? "net.fetch" : "fs.read", n * 1_000)
        engine.observe(i)
        out.push(...engine.observe(deny(i, n * 1_000)))
      }
    }
    for (let n = 0; n < 8; n++) {
      const i = intent("slow", "net.fetch", n * 30_000)
      engine.observe(i)
      out.push(...engine.observe(deny(i, n * 30_000)))
    }
    expect(out).toEqual([])
  })

  it("names the evidence: the ids of the events in the window", () => {
    const engine = new AlertEngine([{ ...(DEFAULT_ALERT_RULES[0] as (typeof DEFAULT_ALERT_RULES)[0]), threshold: 1 }])
    const i1 = intent("s", "net.fetch", 0)
    const i2 = intent("s", "net.fetch", 1)
    engine.observe(i1)
    engine.observe(i2)
    const d1 = deny(i1, 2)
    const d2 = deny(i2, 3)
    expect(engine.observe(d1)).toEqual([])
    expect(engine.observe(d2)[0]?.evidence).toEqual([d1.id, d2.id])
  })

  it("refuses a malformed rules file with a clear error", () => {
    const dir = mkdtempSync(join(tmpdir(), "vigil-alerts-"))
    const good = join(dir, "good.json")
    writeFileSync(good, JSON.stringify(DEFAULT_ALERT_RULES))
    expect(loadAlertRules(good)).toEqual(DEFAULT_ALERT_RULES)
    const bad = join(dir, "bad.json")
    writeFileSync(bad, JSON.stringify([{ ...DEFAULT_ALERT_RULES[0], threshold: 0 }]))
    expect(() => loadAlertRules(bad)).toThrow(/threshold/)
  })
})
