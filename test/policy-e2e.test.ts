import type { NatsConnection } from "@nats-io/transport-node"
import { type Draft, type Event, type EventType, eventHash, type Principal, STREAM_EVENTS } from "@vigil/events"
import { publishBundle, signedBundleFrom } from "@vigil/policy"
import {
  eventually,
  type NatsServer,
  type Producers,
  prepareHome,
  producers,
  readStream,
  type ServiceProcess,
  startNats,
  startService,
  type TestHome,
} from "@vigil/test"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const GRANTED = "/home/ana/Documents"

describe("policy service on a real bus", () => {
  let server: NatsServer
  let th: TestHome
  let policy: ServiceProcess
  let admin: NatsConnection
  let producer: Producers
  const publish = <T extends EventType>(as: Principal, draft: Draft<T>): Promise<Event<T>> =>
    producer.publish(as, draft)
  const intent = (session: string, tool: "fs.read" | "fs.delete", path: string) =>
    publish("inference", {
      type: "intent.proposed",
      session,
      data: { tool, args: { path }, reason: "the user asked", step: 0 },
    })
  const decisionsFor = async (intentId: string, n = 1) =>
    eventually(`${n} decision(s) for ${intentId}`, async () => {
      const all = (await readStream(admin, STREAM_EVENTS, "vigil.ev.*.decision.made")).map((m) =>
        m.json<Event<"decision.made">>(),
      )
      const mine = all.filter((d) => d.data.intent === intentId)
      return mine.length >= n ? mine : undefined
    })

  beforeAll(async () => {
    server = await startNats({ secure: true })
    th = await prepareHome(server)
    admin = await server.connect("admin")
    producer = producers(server, th)
    await publishBundle(admin, await Effect.runPromise(signedBundleFrom(th.home, null)))
    policy = await startService("policy", th, { env: { VIGIL_GRANTED_FOLDERS: GRANTED, VIGIL_DLP_TIMEOUT_MS: "1000" } })
  }, 60_000)
  afterAll(async () => {
    await policy?.stop()
    await producer?.close()
    await admin?.close()
    await server?.stop()
    th?.remove()
  })

  it("denies reading a confidential file outside the granted folders, with an explanation, bound to the intent", async () => {
    const i = await intent("e2e-deny", "fs.read", "/home/ana/Finance/salaries-2026.xlsx")
    const [d] = await decisionsFor(i.id)
    expect(d?.source).toBe("policy")
    expect(d?.data.effect).toBe("deny")
    expect(d?.data.explanation.length).toBeGreaterThan(10)
    expect(d?.data.intentHash).toBe(eventHash(i))
    expect(d?.data.bundle).toMatch(/^[0-9a-f]{64}$/)
    expect(d?.causation).toBe(i.id)
  })

  it("asks before a delete, and allows it only after the user's signed consent", async () => {
    const i = await intent("e2e-ask", "fs.delete", `${GRANTED}/old-draft.txt`)
    const [ask] = await decisionsFor(i.id)
    expect(ask?.data.effect).toBe("ask")
    expect(ask?.data.obligations.some((o) => o.kind === "ask")).toBe(true)
    const req = await publish("gateway", {
      type: "consent.requested",
      session: i.session,
      causation: ask?.id ?? null,
      data: {
        decision: ask?.id as string,
        intent: i.id,
        question: "Delete old-draft.txt?",
        proposed: { kind: "once" },
      },
    })
    const grant = await publish("gateway", {
      type: "consent.granted",
      session: i.session,
      causation: req.id,
      data: { request: req.id, intent: i.id, scope: { kind: "once" } },
    })
    const [, allow] = await decisionsFor(i.id, 2)
    expect(allow?.data.effect).toBe("allow")
    expect(allow?.data.rules).toContain(`consent:${grant.id}`)
    expect(allow?.data.intentHash).toBe(eventHash(i))
    expect(allow?.causation).toBe(grant.id)
  })

  it("a durable grant answers later asks in its scope until it is revoked", async () => {
    const session = "e2e-grant"
    const first = await intent(session, "fs.delete", `${GRANTED}/tmp/a.txt`)
    const [ask] = await decisionsFor(first.id)
    const grant = await publish("gateway", {
      type: "consent.granted",
      session,
      data: {
        request: ask?.id as string,
        intent: first.id,
        scope: { kind: "durable", tool: "fs.delete", pathPrefix: `${GRANTED}/tmp` },
      },
    })
    await decisionsFor(first.id, 2)
    const second = await intent(session, "fs.delete", `${GRANTED}/tmp/b.txt`)
    const [d2] = await decisionsFor(second.id)
    expect(d2?.data.effect).toBe("allow")
    expect(d2?.data.rules).toContain(`grant:${grant.id}`)
    // Outside the grant's folder it still asks.
    const outside = await intent(session, "fs.delete", `${GRANTED}/keep/c.txt`)
    expect((await decisionsFor(outside.id))[0]?.data.effect).toBe("ask")
    await publish("gateway", { type: "consent.revoked", session, data: { grant: grant.id } })
    // The revocation is handled by its own durable: wait until a new intent is asked again.
    const again = await eventually("an ask after the revocation", async () => {
      const third = await intent(session, "fs.delete", `${GRANTED}/tmp/d.txt`)
      const [d3] = await decisionsFor(third.id)
      return d3?.data.effect === "ask" ? d3 : undefined
    })
    expect(again.data.rules.some((r) => r.startsWith("grant:"))).toBe(false)
  })

  it("refuses a bundle with a bad signature or a schema error, raises an alert, and keeps deciding with the old one", async () => {
    const good = await Effect.runPromise(signedBundleFrom(th.home, null))
    const before = await intent("e2e-bundle", "fs.read", `${GRANTED}/notes.txt`)
    const [d0] = await decisionsFor(before.id)
    const forged = {
      ...good,
      policies: { ...good.policies, "default/99-open.cedar": "permit(principal, action, resource);" },
    }
    const bundleAlerts = (n: number) =>
      eventually(
        `${n} bundle alert(s)`,
        async () => {
          const all = (await readStream(admin, STREAM_EVENTS, "vigil.ev.*.alert.raised")).map((m) =>
            m.json<Event<"alert.raised">>(),
          )
          const mine = all.filter((a) => a.data.rule === "policy-bundle-refused")
          return mine.length >= n ? mine : undefined
        },
        40_000,
      ).catch((e: Error) => {
        throw new Error(`${e.message}\npolicy service output:\n${policy.output().slice(-4000)}`)
      })
    // One bad bundle at a time: the bucket keeps only the latest value, so a watcher that falls behind would see
    // just the second of two quick puts.
    await publishBundle(admin, forged as typeof good)
    await bundleAlerts(1)
    // One character of R changed: always a different, well-formed signature. (Overwriting the last two characters
    // with "AA" left the signature unchanged whenever it already ended so, one run in 256.)
    const flipped = good.sig[10] === "A" ? "B" : "A"
    const broken = { ...good, sig: `${good.sig.slice(0, 10)}${flipped}${good.sig.slice(11)}` }
    await publishBundle(admin, broken)
    const alerts = await bundleAlerts(2)
    expect(alerts.every((a) => a.source === "policy" && a.data.severity === "high")).toBe(true)
    const after = await intent("e2e-bundle", "fs.read", "/home/ana/Finance/salaries-2026.xlsx")
    const [d1] = await decisionsFor(after.id)
    expect(d1?.data.effect).toBe("deny")
    expect(d1?.data.bundle).toBe(d0?.data.bundle)
    // Restore the good bundle for the rest of the suite.
    await publishBundle(admin, good)
  })

  it("a service refuses to start with a malformed VIGIL_VERIFY_WORKERS, naming it", async () => {
    await expect(startService("policy", th, { env: { VIGIL_VERIFY_WORKERS: "two" } })).rejects.toThrow(
      /VIGIL_VERIFY_WORKERS must be a whole number of threads \(0 = inline\), got \\*"two/,
    )
  })

  it("fails closed: an egress intent that DLP never screens is denied", async () => {
    const i = await publish("inference", {
      type: "intent.proposed",
      session: "e2e-dlp",
      data: { tool: "net.fetch", args: { url: "https://example.org/x" }, reason: "fetch", step: 0 },
    })
    const [d] = await decisionsFor(i.id)
    expect(d?.data.effect).toBe("deny")
    expect(d?.data.rules).toEqual(["dlp-timeout"])
  })
})
