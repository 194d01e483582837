import type { NatsConnection } from "@nats-io/transport-node"
import { type AckedPublisher, ackedPublisher, NotStored, PublishError, Publisher } from "@vigil/bus"
import { encodeEvent, eventSubject, inboxPrefix, STREAM_EVENTS, signEvent } from "@vigil/events"
import { countStored, startNats, startVigilBus, taskDraft, type VigilBus } from "@vigil/test"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * libs/bus `ackedPublisher`, the transport of the Publisher and of the auditor's OCSF records: plain publishes with
 * a reply token under one inbox instead of a request per message, against a real, secured nats-server.
 */

const failure = async (p: Promise<unknown>): Promise<NotStored> => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(NotStored)
  return e as NotStored
}

describe("ackedPublisher", () => {
  let t: VigilBus
  let gateway: NatsConnection
  let p: AckedPublisher
  beforeAll(async () => {
    t = await startVigilBus()
    gateway = await t.server.connect("gateway")
    p = ackedPublisher(gateway, inboxPrefix("gateway"), 5_000)
  })
  afterAll(async () => {
    p?.close()
    await gateway?.close()
    await t?.stop()
  })

  it("resolves with the stream's ack; the same Nats-Msg-Id again is a duplicate of the same sequence", async () => {
    const event = signEvent(t.dep.keys.gateway, taskDraft("acked-1"))
    const subject = eventSubject("acked-1", "task.submitted")
    const a = await p.publish(subject, encodeEvent(event), { msgId: event.id })
    const b = await p.publish(subject, encodeEvent(event), { msgId: event.id })
    expect(a).toEqual({ stream: STREAM_EVENTS, seq: a.seq, duplicate: false })
    expect(b).toEqual({ stream: STREAM_EVENTS, seq: a.seq, duplicate: true })
    expect(await countStored(t.admin, STREAM_EVENTS, subject)).toBe(1)
  })

  it("answers many publishes in flight, each with its own sequence", async () => {
    const events = Array.from({ length: 500 }, (_, i) => signEvent(t.dep.keys.gateway, taskDraft(`acked-many${i % 5}`)))
    const acks = await Promise.all(
      events.map((e) => p.publish(eventSubject(e.session, e.type), encodeEvent(e), { msgId: e.id })),
    )
    expect(new Set(acks.map((a) => a.seq)).size).toBe(500)
    expect(acks.every((a) => !a.duplicate)).toBe(true)
  })

  it("fails at once as refused when the user may not publish the subject; publishes beside it still succeed", async () => {
    const allowed = signEvent(t.dep.keys.gateway, taskDraft("acked-2"))
    const t0 = performance.now()
    const [refused, ok] = await Promise.all([
      failure(p.publish(eventSubject("acked-2", "decision.made"), new TextEncoder().encode("{}"), { msgId: "x-1" })),
      p.publish(eventSubject("acked-2", "task.submitted"), encodeEvent(allowed), { msgId: allowed.id }),
    ])
    expect(refused.refused).toBe(true)
    expect(refused.message).toMatch(/permissions violation/i)
    expect(performance.now() - t0).toBeLessThan(2_000)
    expect(ok.duplicate).toBe(false)
    expect(await countStored(t.admin, STREAM_EVENTS, eventSubject("acked-2", "decision.made"))).toBe(0)
  })

  it("Publisher: a refused publish is a PublishError marked refused, not retried", async () => {
    const bus = await t.bus("gateway")
    const t0 = performance.now()
    const exit = await bus.run(
      Effect.gen(function* () {
        const publisher = yield* Publisher
        // The gateway may not emit containment orders (ops only).
        return yield* publisher.publish({
          type: "containment.ordered",
          session: "acked-3",
          data: { target: "acked-3", reason: "r" },
        })
      }).pipe(Effect.flip),
    )
    expect(exit).toBeInstanceOf(PublishError)
    expect((exit as PublishError).refused).toBe(true)
    // Six attempts with backoff would take over three seconds.
    expect(performance.now() - t0).toBeLessThan(2_000)
  })
})

describe("Publisher: the event size cap", () => {
  it("refuses an event over 65,535 canonical bytes (one tlog-tiles entry) before sending it, naming the fix", async () => {
    const t = await startVigilBus()
    try {
      const bus = await t.bus("dlp")
      const exit = await bus.run(
        Effect.gen(function* () {
          const publisher = yield* Publisher
          return yield* publisher.publish({
            type: "alert.raised",
            session: "oversized",
            data: { rule: "r", severity: "low", summary: "s", evidence: [], details: { text: "x".repeat(70_000) } },
          })
        }).pipe(Effect.flip),
      )
      expect(exit).toBeInstanceOf(PublishError)
      expect((exit as PublishError).refused).toBe(true)
      expect(String((exit as PublishError).cause)).toMatch(/at most 65535 bytes: put content in a blob/)
      expect(await countStored(t.admin, STREAM_EVENTS, eventSubject("oversized", "alert.raised"))).toBe(0)
    } finally {
      await t.stop()
    }
  })
})

describe("ackedPublisher without a stream or a server to answer", () => {
  it("fails, not as refused, when no stream stores the subject", async () => {
    const server = await startNats({})
    const nc = await server.connect()
    const p = ackedPublisher(nc, "_INBOX_nostream", 5_000)
    try {
      const e = await failure(p.publish("nostream.here", new Uint8Array([1]), { msgId: "x-2" }))
      expect(e.refused).toBe(false)
      expect(e.message).toMatch(/no stream/)
    } finally {
      p.close()
      await nc.close()
      await server.stop()
    }
  })

  it("fails after its timeout, and close fails whatever still waits", async () => {
    const server = await startNats({})
    const nc = await server.connect(undefined, { maxReconnectAttempts: -1, reconnectTimeWait: 50 })
    const p = ackedPublisher(nc, "_INBOX_lonely", 300)
    try {
      await server.stop()
      const t0 = performance.now()
      const timedOut = await failure(p.publish("any.subject", new Uint8Array([1]), { msgId: "y-1" }))
      expect(timedOut.message).toMatch(/no ack from the stream in 300 ms/)
      expect(timedOut.refused).toBe(false)
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290)
      const waiting = p.publish("any.subject", new Uint8Array([2]), { msgId: "y-2" })
      p.close()
      expect((await failure(waiting)).message).toMatch(/closed/)
    } finally {
      p.close()
      await nc.close().catch(() => undefined)
    }
  })
})
