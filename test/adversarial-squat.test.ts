import { createHash } from "node:crypto"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { DeadLetters, deadLetterRecord, jetStreamOptions, Publisher } from "@vigil/bus"
import {
  derivedEventId,
  dlqSubject,
  type Event,
  eventIdFromDigest,
  eventIdKey,
  eventSubject,
  newEventId,
  type Principal,
  type Service,
  STREAM_DLQ,
  STREAM_EVENTS,
  signEvent,
} from "@vigil/events"
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
  startVigilBus,
  type TestHome,
  type VigilBus,
} from "@vigil/test"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * Event-id squatting (NATS-NOTES trap 10): JetStream de-duplicates `Nats-Msg-Id` across the whole stream, so an id
 * another principal can compute can be stored first and the real event dropped as a duplicate. Derived ids are now
 * keyed by the producer's signing seed, and a duplicate ack is checked against what the stream holds: the real
 * event is stored (under a fresh id, with an alert, if its id was taken), never silently dropped.
 */

/** The derivation before keyed ids: anyone who saw the cause could compute it. */
const unkeyedId = (causeId: string, producer: string): string =>
  eventIdFromDigest(causeId, createHash("sha256").update(`${producer}\n${causeId}\n0`).digest())

/** Junk stored under `msgId` by a user with NATS credentials only (on the one subject it may publish). */
const squat = async (nc: NatsConnection, msgId: string) => {
  const ack = await jetstream(nc, jetStreamOptions("gateway")).publish(
    eventSubject("squat", "task.submitted"),
    `{"junk":true}`,
    { msgID: msgId },
  )
  expect(ack.duplicate).toBe(false)
  return ack.seq
}

/** Every purpose a service derives ids for today, with its producer. */
const KINDS: ReadonlyArray<{ readonly producer: Service; readonly purpose: string }> = [
  { producer: "policy", purpose: "policy" },
  { producer: "auditor", purpose: "auditor/alert/denials-burst" },
  { producer: "auditor", purpose: "auditor/checkpoint/1000" },
  { producer: "auditor", purpose: "auditor/duplicate/42" },
  { producer: "dlp", purpose: "dlp" },
]

describe("derived event ids on a real bus", () => {
  let t: VigilBus
  let attacker: NatsConnection

  beforeAll(async () => {
    t = await startVigilBus()
    attacker = await t.server.connect("gateway")
  }, 30_000)
  afterAll(async () => {
    await attacker?.close()
    await t?.stop()
  })

  const stored = async (seq: number) =>
    (await (await jetstreamManager(t.admin)).direct.getMessage(STREAM_EVENTS, { seq }))?.json<Event>()

  it.each(KINDS)(
    "$producer/$purpose: the old computable id taken first costs nothing",
    async ({ producer, purpose }) => {
      const bus = await t.bus(producer)
      const cause = newEventId()
      await squat(attacker, unkeyedId(cause, purpose))
      const published = await bus.run(
        Effect.gen(function* () {
          const p = yield* Publisher
          const id = p.derivedId(cause, purpose)
          expect(id).toBe(derivedEventId(eventIdKey(t.dep.keys[producer].seed), cause, purpose))
          expect(id).not.toBe(unkeyedId(cause, purpose))
          return yield* p.publish({ id, type: "alert.raised", session: "squat", data: alertData(purpose) })
        }),
      )
      expect(published.duplicate).toBe(false)
      expect((await stored(published.seq))?.id).toBe(published.event.id)
    },
  )

  it.each(KINDS)(
    "$producer/$purpose: a leaked id taken first is re-published under a fresh id, with an alert",
    async ({ producer, purpose }) => {
      const bus = await t.bus(producer)
      const cause = newEventId()
      const id = derivedEventId(eventIdKey(t.dep.keys[producer].seed), cause, purpose)
      const squatSeq = await squat(attacker, id)
      const published = await bus.run(
        Effect.gen(function* () {
          const p = yield* Publisher
          return yield* p.publish({
            id: p.derivedId(cause, purpose),
            type: "alert.raised",
            session: "squat",
            data: alertData(purpose),
          })
        }),
      )
      expect(published.duplicate).toBe(false)
      expect(published.event.id).not.toBe(id)
      const real = await stored(published.seq)
      expect(real?.id).toBe(published.event.id)
      expect(real?.source).toBe(producer)
      // The junk is still where the attacker put it; the alert says what happened, signed by the producer.
      expect((await stored(squatSeq))?.id).toBeUndefined()
      const alerts = (await readStream(t.admin, STREAM_EVENTS, eventSubject("squat", "alert.raised")))
        .map((m) => m.json<Event<"alert.raised">>())
        .filter((a) => a.data.rule === "event-id-squatted" && a.data.details?.squattedId === id)
      expect(alerts).toHaveLength(1)
      expect(alerts[0]?.source).toBe(producer)
      expect(alerts[0]?.data.details).toMatchObject({ streamSeq: squatSeq, republishedAs: published.event.id })
    },
  )

  it("a dead letter: the former computable message id, taken first on another service's DLQ subject, costs nothing", async () => {
    const bus = await t.bus("dlp")
    const streamSeq = 4242
    // The stream de-duplicates across every DLQ subject: the gateway posts on its own under dlp's former id.
    const ack = await jetstream(attacker, jetStreamOptions("gateway")).publish(dlqSubject("gateway"), "{}", {
      msgID: `dlq:${STREAM_EVENTS}:dlp__task_submitted:${streamSeq}`,
    })
    expect(ack.duplicate).toBe(false)
    const record = deadLetterRecord(
      {
        service: "dlp",
        reason: "bad_signature",
        detail: "squat test",
        subject: eventSubject("squat", "task.submitted"),
        stream: STREAM_EVENTS,
        durable: "dlp__task_submitted",
        streamSeq,
        deliveryCount: 1,
        storedAt: new Date().toISOString(),
      },
      new TextEncoder().encode("refused bytes"),
    )
    await bus.run(
      Effect.gen(function* () {
        const dlq = yield* DeadLetters
        return yield* dlq.send(record)
      }),
    )
    const stored = await readStream(t.admin, STREAM_DLQ, dlqSubject("dlp"))
    expect(stored.map((m) => m.json<{ streamSeq: number }>().streamSeq)).toContain(streamSeq)
  })

  it("a re-handled input (same derived id, signed again) is this producer's own duplicate: no alert, no second copy", async () => {
    const bus = await t.bus("dlp")
    const cause = newEventId()
    const [first, second] = await bus.run(
      Effect.gen(function* () {
        const p = yield* Publisher
        const draft = {
          id: p.derivedId(cause, "dlp"),
          type: "alert.raised" as const,
          session: "rehandle",
          data: alertData("dlp"),
        }
        const a = yield* p.publish(draft)
        yield* Effect.sleep("5 millis")
        const b = yield* p.publish(draft)
        return [a, b] as const
      }),
    )
    expect(first.duplicate).toBe(false)
    expect(second.duplicate).toBe(true)
    expect(second.seq).toBe(first.seq)
    expect(second.event).toEqual(first.event)
    const all = await readStream(t.admin, STREAM_EVENTS, eventSubject("rehandle", "alert.raised"))
    expect(all).toHaveLength(1)
  })

  it("junk that claims the producer's id, type, key and source, but not its signature, is not taken as its own", async () => {
    const bus = await t.bus("dlp")
    const cause = newEventId()
    const id = derivedEventId(eventIdKey(t.dep.keys.dlp.seed), cause, "dlp")
    const forged = {
      ...signEvent(t.dep.keys.gateway, { id, type: "alert.raised", session: "forged", data: alertData("dlp") }),
      source: "dlp",
      kid: t.dep.keys.dlp.kid,
      summary: "\ud800 lone surrogate: not canonicalisable",
    }
    const ack = await jetstream(attacker, jetStreamOptions("gateway")).publish(
      eventSubject("squat", "task.submitted"),
      JSON.stringify(forged),
      { msgID: id },
    )
    const published = await bus.run(
      Effect.gen(function* () {
        const p = yield* Publisher
        return yield* p.publish({
          id: p.derivedId(cause, "dlp"),
          type: "alert.raised",
          session: "forged",
          data: alertData("dlp"),
        })
      }),
    )
    expect(published.event.id).not.toBe(id)
    expect(published.seq).not.toBe(ack.seq)
  })

  it("an already-signed event whose id was taken fails loudly instead of counting as stored", async () => {
    const bus = await t.bus("policy")
    const event = signEvent(t.dep.keys.policy, { type: "alert.raised", session: "signed", data: alertData("x") })
    await squat(attacker, event.id)
    const outcome = await bus.run(
      Effect.gen(function* () {
        const p = yield* Publisher
        return yield* p.publishSigned(event).pipe(Effect.flip)
      }),
    )
    expect(outcome.squatted?.why).toMatch(/not this producer's alert.raised/)
  })
})

const alertData = (purpose: string) => ({
  rule: "test",
  severity: "low" as const,
  summary: `a ${purpose} output`,
  evidence: [],
})

describe("the policy service's decisions (the measured attack)", () => {
  let server: NatsServer
  let th: TestHome
  let policy: ServiceProcess
  let admin: NatsConnection
  let squatter: NatsConnection
  let producer: Producers

  beforeAll(async () => {
    server = await startNats({ secure: true })
    th = await prepareHome(server)
    admin = await server.connect("admin")
    // A user with NATS credentials and no signing key.
    squatter = await server.connect("gateway")
    producer = producers(server, th)
    await publishBundle(admin, await Effect.runPromise(signedBundleFrom(th.home, null)))
    policy = await startService("policy", th, { env: { VIGIL_GRANTED_FOLDERS: "/home/ana/Documents" } })
  }, 60_000)
  afterAll(async () => {
    await policy?.stop()
    await producer?.close()
    await squatter?.close()
    await admin?.close()
    await server?.stop()
    th?.remove()
  })

  const intent = (as: Principal, session: string) =>
    signEvent(th.keys[as], {
      type: "intent.proposed",
      session,
      data: { tool: "fs.read", args: { path: "/home/ana/Finance/salaries.xlsx" }, reason: "the user asked", step: 0 },
    })
  const decisions = (intentId: string) =>
    eventually(`the decision for ${intentId}`, async () => {
      const all = (await readStream(admin, STREAM_EVENTS, "vigil.ev.*.decision.made")).map((m) =>
        m.json<Event<"decision.made">>(),
      )
      const mine = all.filter((d) => d.data.intent === intentId)
      return mine.length > 0 ? mine : undefined
    })

  it("stores the decision although the id policy used to derive was taken before the intent arrived", async () => {
    const i = intent("inference", "squat-old")
    await squat(squatter, unkeyedId(i.id, "policy"))
    await producer.publishSigned("inference", i)
    const [d] = await decisions(i.id)
    expect(d?.id).toBe(derivedEventId(eventIdKey(th.keys.policy.seed), i.id, "policy"))
    expect(d?.data.effect).toBe("deny")
  })

  it("with its real id leaked and taken, stores the decision under a fresh id and raises event-id-squatted", async () => {
    const i = intent("inference", "squat-leak")
    const leaked = derivedEventId(eventIdKey(th.keys.policy.seed), i.id, "policy")
    await squat(squatter, leaked)
    await producer.publishSigned("inference", i)
    const [d] = await decisions(i.id)
    expect(d?.id).not.toBe(leaked)
    expect(d?.causation).toBe(i.id)
    const alert = await eventually("the squatting alert", async () =>
      (await readStream(admin, STREAM_EVENTS, eventSubject("squat-leak", "alert.raised")))
        .map((m) => m.json<Event<"alert.raised">>())
        .find((a) => a.data.rule === "event-id-squatted"),
    )
    expect(alert.source).toBe("policy")
    expect(alert.data.details).toMatchObject({ squattedId: leaked, republishedAs: d?.id })
  })
})
