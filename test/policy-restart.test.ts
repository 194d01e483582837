import type { NatsConnection } from "@nats-io/transport-node"
import { type Draft, durableName, type Event, type EventType, type Principal, STREAM_EVENTS } from "@vigil/events"
import { publishBundle, signedBundleFrom } from "@vigil/policy"
import {
  consumerInfo,
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

describe("policy state survives a restart of the policy service", () => {
  let server: NatsServer
  let th: TestHome
  let policy: ServiceProcess | undefined
  let admin: NatsConnection
  let producer: Producers
  const start = async () => {
    policy = await startService("policy", th, { env: { VIGIL_GRANTED_FOLDERS: GRANTED } })
  }
  const publish = <T extends EventType>(as: Principal, draft: Draft<T>): Promise<Event<T>> =>
    producer.publish(as, draft)
  const decide = async (session: string, tool: "fs.read" | "fs.delete", path: string) => {
    const i = await publish("inference", {
      type: "intent.proposed",
      session,
      data: { tool, args: { path }, reason: "the user asked", step: 0 },
    })
    return eventually(`a decision for ${i.id}`, async () =>
      (await readStream(admin, STREAM_EVENTS, `vigil.ev.${session}.decision.made`))
        .map((m) => m.json<Event<"decision.made">>())
        .find((d) => d.data.intent === i.id),
    )
  }
  const durableGrant = (session: string, ask: Event<"decision.made">, pathPrefix: string) =>
    publish("gateway", {
      type: "consent.granted",
      session,
      data: { request: ask.id, intent: ask.data.intent, scope: { kind: "durable", tool: "fs.delete", pathPrefix } },
    })
  /** Nothing left for the durables to deliver again: what the restarted service knows, it read back itself. */
  const allAcked = () =>
    eventually("the policy durables to have acked everything", async () => {
      for (const t of ["consent.granted", "consent.revoked", "containment.ordered"] as const) {
        const c = await consumerInfo(admin, STREAM_EVENTS, durableName("policy", t))
        if (c.num_pending > 0 || c.num_ack_pending > 0) return undefined
      }
      return true
    })

  beforeAll(async () => {
    server = await startNats({ secure: true })
    th = await prepareHome(server)
    admin = await server.connect("admin")
    producer = producers(server, th)
    await publishBundle(admin, await Effect.runPromise(signedBundleFrom(th.home, null)))
    await start()
  }, 60_000)
  afterAll(async () => {
    await policy?.stop()
    await producer?.close()
    await admin?.close()
    await server?.stop()
    th?.remove()
  })

  it("keeps durable grants and honours revocations made before the restart and while it was down", async () => {
    const session = "restart"
    // Grant A stays; grant B is revoked before the restart; grant C is revoked while the service is down.
    const askA = await decide(session, "fs.delete", `${GRANTED}/a/1.txt`)
    const askB = await decide(session, "fs.delete", `${GRANTED}/b/1.txt`)
    const askC = await decide(session, "fs.delete", `${GRANTED}/c/1.txt`)
    expect([askA.data.effect, askB.data.effect, askC.data.effect]).toEqual(["ask", "ask", "ask"])
    const grantA = await durableGrant(session, askA, `${GRANTED}/a`)
    const grantB = await durableGrant(session, askB, `${GRANTED}/b`)
    const grantC = await durableGrant(session, askC, `${GRANTED}/c`)
    for (const [dir, grant] of [
      ["a", grantA],
      ["b", grantB],
      ["c", grantC],
    ] as const) {
      const d = await eventually(`grant ${dir} in force`, async () => {
        const d = await decide(session, "fs.delete", `${GRANTED}/${dir}/2.txt`)
        return d.data.effect === "allow" ? d : undefined
      })
      expect(d.data.rules).toContain(`grant:${grant.id}`)
    }
    await publish("gateway", { type: "consent.revoked", session, data: { grant: grantB.id } })
    await eventually("grant b revoked", async () => {
      const d = await decide(session, "fs.delete", `${GRANTED}/b/3.txt`)
      return d.data.effect === "ask" ? d : undefined
    })
    await allAcked()

    await policy?.stop()
    policy = undefined
    await publish("gateway", { type: "consent.revoked", session, data: { grant: grantC.id } })
    await start()

    const a = await decide(session, "fs.delete", `${GRANTED}/a/4.txt`)
    expect(a.data.effect).toBe("allow")
    expect(a.data.rules).toContain(`grant:${grantA.id}`)
    const b = await decide(session, "fs.delete", `${GRANTED}/b/4.txt`)
    expect(b.data.effect).toBe("ask")
    expect(b.data.rules.some((r) => r.startsWith("grant:"))).toBe(false)
    const c = await decide(session, "fs.delete", `${GRANTED}/c/4.txt`)
    expect(c.data.effect).toBe("ask")
    // A grant is narrow after a restart too: another session and another folder still ask.
    expect((await decide("restart-other", "fs.delete", `${GRANTED}/a/5.txt`)).data.effect).toBe("ask")
    expect((await decide(session, "fs.delete", `${GRANTED}/d/1.txt`)).data.effect).toBe("ask")
  }, 120_000)

  it("answers a consent for an ask decided before the restart, once", async () => {
    const session = "restart-ask"
    const ask = await decide(session, "fs.delete", `${GRANTED}/e/1.txt`)
    expect(ask.data.effect).toBe("ask")
    // The intent is acked: the restarted service will not see it again from its durable, only from the stream.
    await eventually("the intent acked", async () => {
      const c = await consumerInfo(admin, STREAM_EVENTS, durableName("policy", "intent.proposed"))
      return c.num_pending === 0 && c.num_ack_pending === 0 ? true : undefined
    })
    await policy?.stop()
    await start()
    const decisionsFor = async (intent: string) =>
      (await readStream(admin, STREAM_EVENTS, `vigil.ev.${session}.decision.made`))
        .map((m) => m.json<Event<"decision.made">>())
        .filter((d) => d.data.intent === intent)
    const once = (await publish("gateway", {
      type: "consent.granted",
      session,
      data: { request: ask.id, intent: ask.data.intent, scope: { kind: "once" } },
    })) as Event<"consent.granted">
    const final = await eventually("the consented decision", async () =>
      (await decisionsFor(ask.data.intent)).find((d) => d.data.effect !== "ask"),
    )
    expect(final.data.effect).toBe("allow")
    expect(final.data.rules).toContain(`consent:${once.id}`)
    expect(final.data.intentHash).toBe(ask.data.intentHash)
    // A second consent for the same intent (a replayed UI click) finds it decided: no third decision.
    await publish("gateway", {
      type: "consent.granted",
      session,
      data: { request: ask.id, intent: ask.data.intent, scope: { kind: "once" } },
    })
    await eventually("the second consent handled", async () => {
      const c = await consumerInfo(admin, STREAM_EVENTS, durableName("policy", "consent.granted"))
      return c.num_pending === 0 && c.num_ack_pending === 0 ? true : undefined
    })
    expect((await decisionsFor(ask.data.intent)).map((d) => d.data.effect)).toEqual(["ask", "allow"])
  }, 120_000)

  it("keeps a session contained after a restart", async () => {
    const session = "restart-contained"
    expect((await decide(session, "fs.read", `${GRANTED}/notes.txt`)).data.effect).toBe("allow")
    await publish("ops", {
      type: "containment.ordered",
      session,
      data: { target: session, reason: "incident 42" },
    })
    await eventually("the session contained", async () => {
      const d = await decide(session, "fs.read", `${GRANTED}/notes.txt`)
      return d.data.effect === "deny" ? d : undefined
    })
    await allAcked()
    await policy?.stop()
    await start()
    const d = await decide(session, "fs.read", `${GRANTED}/notes.txt`)
    expect(d.data.effect).toBe("deny")
    expect(d.data.rules).toEqual(["containment"])
  }, 120_000)
})
