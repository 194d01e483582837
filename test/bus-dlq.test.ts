import { createHash } from "node:crypto"
import { jetstream } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import type { ConsumerHandle, DeadLetter, DeadLetterReason } from "@vigil/bus"
import { deadLetterMsgId, HandlerError, Publisher, signDeadLetter, verifyDeadLetter } from "@vigil/bus"
import { randomSeed } from "@vigil/crypto"
import type { Event } from "@vigil/events"
import {
  dlqSubject,
  encodeEvent,
  eventIdKey,
  eventSubject,
  eventTypeFilter,
  HEADER_DLQ_REASON,
  STREAM_DLQ,
  STREAM_EVENTS,
  signEvent,
} from "@vigil/events"
import { signingKeyOf } from "@vigil/keys"
import type { StoredMsg, VigilBus } from "@vigil/test"
import {
  consumerInfo,
  consumeTasks,
  countStored,
  createDeployment,
  DLP_TASKS,
  eventually,
  readStream,
  screenHandler,
  sleep,
  startVigilBus,
  taskDraft,
} from "@vigil/test"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * Bad input never crashes a service (brief, non-negotiable 4): with the real bus and the dlp consumer running, each
 * kind of bad `task.submitted` injected by the gateway's NATS user lands once in VIGIL_DLQ on `vigil.dlq.dlp` with
 * its machine-readable reason, is acked (never redelivered), and the valid events around it are all handled.
 */

const ACK_WAIT_MS = 1_000
const MAX_EVENT_BYTES = 4_096
const SESSION = "dlq"
const TASKS = eventSubject(SESSION, "task.submitted")
const iso = (ms: number) => new Date(ms).toISOString()
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

interface Injected {
  readonly name: string
  readonly reason: DeadLetterReason
  readonly subject: string
  readonly bytes: Uint8Array
  /** Set when the bytes parse far enough for the consumer to name the event. */
  readonly eventId?: string
  seq?: number
}

/** Flip one bit of the workspace text ('/home' → '/iome'): still JSON, still schema-valid, no longer signed. */
const flipByte = (bytes: Uint8Array): Uint8Array => {
  const copy = new Uint8Array(bytes)
  const at = Buffer.from(copy).indexOf('"workspace":"/h') + '"workspace":"/'.length
  copy[at] = (copy[at] as number) ^ 0x01
  return copy
}

/** VIGIL_DLQ records for `vigil.dlq.<service>`, keyed by the refused message's stream sequence. */
const deadLetters = async (admin: NatsConnection, service: string) => {
  const msgs = await readStream(admin, STREAM_DLQ, dlqSubject(service))
  return new Map<number, { record: DeadLetter; msg: StoredMsg }>(
    msgs.map((msg) => {
      const record = msg.json<DeadLetter>()
      return [record.streamSeq, { record, msg }]
    }),
  )
}

describe("dead-lettering of bad input by the dlp consumer", () => {
  let t: VigilBus
  let handle: ConsumerHandle
  const handled: Array<string> = []
  const now = Date.now()
  // The gateway's first key is retired by a rotation half an hour ago; its successor is revoked 20 s ago by another
  // rotation, whose key signs the valid events.
  const dep = createDeployment({ issuedAt: iso(now - 2 * 3_600_000) })
  const retiredGateway = dep.keys.gateway
  const revokedGateway = dep.rotate("gateway", iso(now - 30 * 60_000))
  const revokedAt = now - 20_000
  const gatewayKey = dep.rotate("gateway", iso(revokedAt))

  beforeAll(async () => {
    t = await startVigilBus({ provision: { ackWaitMs: ACK_WAIT_MS }, deployment: dep })
    const dlp = await t.bus("dlp", { maxEventBytes: MAX_EVENT_BYTES })
    handle = await consumeTasks(
      dlp,
      screenHandler((e) => void handled.push(e.id)),
      { concurrency: 4 },
    )
  })
  afterAll(async () => {
    await t?.stop()
  })

  it("routes each kind of bad event to vigil.dlq.dlp with its reason, acks it once, and keeps handling", async () => {
    const valid = () => signEvent(gatewayKey, taskDraft(SESSION))
    const event = (e: Event, subject = TASKS) => ({ subject, bytes: encodeEvent(e), eventId: e.id })
    const stranger = signingKeyOf("gateway", randomSeed())
    const toFlip = valid()
    const bad: Array<Injected> = [
      {
        name: "flipped byte",
        reason: "bad_signature",
        subject: TASKS,
        bytes: flipByte(encodeEvent(toFlip)),
        eventId: toFlip.id,
      },
      { name: "key not in the manifest", reason: "unknown_key", ...event(signEvent(stranger, taskDraft(SESSION))) },
      {
        name: "policy's key signing task.submitted",
        reason: "key_not_authorized",
        ...event(signEvent(dep.keys.policy, taskDraft(SESSION))),
      },
      {
        name: "retired gateway key after its rotation",
        reason: "key_expired",
        ...event(signEvent(retiredGateway, taskDraft(SESSION))),
      },
      {
        name: "schema violation in data",
        reason: "schema_data",
        ...event(
          signEvent(
            gatewayKey,
            taskDraft(SESSION, { data: { channel: "telepathy", workspace: "/", promptChars: -1 } as never }),
          ),
        ),
      },
      { name: "not JSON", reason: "invalid_json", subject: TASKS, bytes: new TextEncoder().encode('{"v":1,"id":') },
      {
        name: "10 KB over a 4 KB limit",
        reason: "oversized",
        subject: TASKS,
        bytes: encodeEvent(
          signEvent(
            gatewayKey,
            taskDraft(SESSION, { data: { channel: "cli", workspace: "w".repeat(10_000), promptChars: 1 } }),
          ),
        ),
      },
      {
        name: "valid event on another session's subject",
        reason: "subject_mismatch",
        ...event(valid(), eventSubject("elsewhere", "task.submitted")),
      },
      {
        name: "replay of an event signed ten minutes ago",
        reason: "replayed",
        ...event(signEvent(revokedGateway, taskDraft(SESSION, { time: iso(Date.now() - 10 * 60_000) }))),
      },
      {
        // Valid at its own time (20 s before the revocation, inside the freshness window of its store time), but the
        // stream stores it after the revocation: the key is judged at both instants.
        name: "revoked gateway key, event back-dated to before its revocation",
        reason: "key_invalid_when_stored",
        ...event(signEvent(revokedGateway, taskDraft(SESSION, { time: iso(revokedAt - 20_000) }))),
      },
    ]
    // Inject as the gateway's NATS user (it may publish task.submitted; the manifest is what refuses), a raw acked
    // publish with a msgID each, and three valid events before every bad one and after the last.
    const gateway = await t.bus("gateway")
    const raw = await t.server.connect("gateway")
    const js = jetstream(raw, { checkAPI: false })
    const validIds: Array<string> = []
    const publishValid = () =>
      gateway.run(
        Effect.gen(function* () {
          const publisher = yield* Publisher
          for (let i = 0; i < 3; i++) validIds.push((yield* publisher.publishSigned(valid())).event.id)
        }),
      )
    try {
      for (const [i, b] of bad.entries()) {
        await publishValid()
        const ack = await js.publish(b.subject, b.bytes, { msgID: `bad-${i}-${now}` })
        expect(ack.duplicate).toBe(false)
        b.seq = ack.seq
      }
      await publishValid()
    } finally {
      await raw.close()
    }

    await eventually("every valid event handled and every bad one dead-lettered", async () =>
      validIds.every((id) => handled.includes(id)) && (await countStored(t.admin, STREAM_DLQ)) >= bad.length
        ? true
        : undefined,
    )
    // Past an ack_wait: nothing refused comes back, nothing is dead-lettered twice.
    await sleep(ACK_WAIT_MS * 2)

    const dlq = await deadLetters(t.admin, "dlp")
    expect(await countStored(t.admin, STREAM_DLQ)).toBe(bad.length)
    expect(dlq.size).toBe(bad.length)
    for (const b of bad) {
      const entry = dlq.get(b.seq as number)
      expect(entry, `${b.name}: dead letter for stream seq ${b.seq}`).toBeDefined()
      const { record, msg } = entry as { record: DeadLetter; msg: StoredMsg }
      expect(record.reason, `${b.name}: ${record.detail}`).toBe(b.reason)
      expect(msg.subject).toBe(dlqSubject("dlp"))
      expect(msg.headers?.get(HEADER_DLQ_REASON)).toBe(b.reason)
      // The id only dlp can compute (another service cannot store its id first).
      expect(msg.headers?.get("Nats-Msg-Id")).toBe(
        deadLetterMsgId(eventIdKey(dep.keys.dlp.seed), {
          stream: STREAM_EVENTS,
          durable: DLP_TASKS,
          streamSeq: b.seq as number,
        }),
      )
      expect(verifyDeadLetter(record, dep.chain, { subject: msg.subject }), b.name).toMatchObject({
        ok: true,
        key: { kid: dep.keys.dlp.kid, principal: "dlp" },
      })
      expect(record).toMatchObject({
        v: 2,
        service: "dlp",
        kid: dep.keys.dlp.kid,
        subject: b.subject,
        stream: STREAM_EVENTS,
        durable: DLP_TASKS,
        streamSeq: b.seq,
        deliveryCount: 1,
        payloadBytes: b.bytes.length,
        payloadSha256: sha256(b.bytes),
        payloadTruncated: false,
      })
      expect(record.detail.length).toBeGreaterThan(0)
      expect(new Uint8Array(Buffer.from(record.payload, "base64"))).toEqual(b.bytes)
      if (b.eventId !== undefined) {
        expect(record.eventId).toBe(b.eventId)
        expect(record.type).toBe("task.submitted")
      }
    }

    // Every valid event handled once, each with its follow-up; the durable is idle and saw no redelivery.
    expect([...handled].sort()).toEqual([...validIds].sort())
    expect(await countStored(t.admin, STREAM_EVENTS, eventTypeFilter("prompt.screened"))).toBe(validIds.length)
    const info = await consumerInfo(t.admin, STREAM_EVENTS, DLP_TASKS)
    expect(info.num_pending).toBe(0)
    expect(info.num_ack_pending).toBe(0)
    expect(info.num_redelivered).toBe(0)
    expect(info.delivered.consumer_seq).toBe(validIds.length + bad.length)
    expect(handle.stats).toMatchObject({
      handled: validIds.length,
      rejected: bad.length,
      deadLettered: bad.length,
      failed: 0,
    })
  }, 30_000)

  it("signs each dead letter: a tampered record, another service's key and an unsigned post are told apart", async () => {
    const genuine = [...(await deadLetters(t.admin, "dlp")).values()].map((e) => e.record)
    expect(genuine.length).toBeGreaterThan(0)
    const record = genuine[0] as DeadLetter
    const refused = (r: unknown, subject?: string) =>
      verifyDeadLetter(r, dep.chain, subject === undefined ? {} : { subject })
    const otherHash = sha256(new Uint8Array([1]))

    // Any signed member changed after signing: the signature no longer holds.
    expect(refused({ ...record, reason: "handler_failed" })).toMatchObject({ ok: false, reason: "bad_signature" })
    expect(refused({ ...record, payloadSha256: otherHash })).toMatchObject({ ok: false, reason: "bad_signature" })
    expect(refused({ ...record, streamSeq: record.streamSeq + 1 })).toMatchObject({
      ok: false,
      reason: "bad_signature",
    })
    // Validly signed, but by policy's key on dlp's behalf; or naming policy, but read from dlp's DLQ subject.
    const { kid: _kid, sig: _sig, ...unsigned } = record
    expect(refused(signDeadLetter(dep.keys.policy, unsigned))).toMatchObject({ ok: false, reason: "wrong_principal" })
    expect(
      refused(signDeadLetter(dep.keys.policy, { ...unsigned, service: "policy" }), dlqSubject("dlp")),
    ).toMatchObject({ ok: false, reason: "subject_mismatch" })
    // A key no manifest version grants.
    expect(refused(signDeadLetter(signingKeyOf("dlp", randomSeed()), unsigned))).toMatchObject({
      ok: false,
      reason: "unknown_key",
    })
    // dlp's own key over a hash that is not the payload's: a record inconsistent with what it carries.
    expect(refused(signDeadLetter(dep.keys.dlp, { ...unsigned, payloadSha256: otherHash }))).toMatchObject({
      ok: false,
      reason: "payload_mismatch",
    })

    // What dlp's NATS user can post to vigil.dlq.dlp without dlp's signing key: an unsigned (version 1) record, a
    // genuine one with its reason rewritten, a bare object. Read back from the stream, only the real ones verify.
    const raw = await t.server.connect("dlp")
    const js = jetstream(raw, { checkAPI: false })
    const posted = [
      JSON.stringify({ ...unsigned, v: 1 }),
      JSON.stringify({ ...record, reason: "replayed", detail: "forged" }),
      "{}",
    ]
    try {
      for (const [i, body] of posted.entries()) {
        const ack = await js.publish(dlqSubject("dlp"), body, { msgID: `junk-${i}-${now}` })
        expect(ack.duplicate).toBe(false)
      }
    } finally {
      await raw.close()
    }
    const stored = await readStream(t.admin, STREAM_DLQ, dlqSubject("dlp"))
    expect(stored.length).toBe(genuine.length + posted.length)
    const verdicts = stored.map((m) => verifyDeadLetter(m.json(), dep.chain, { subject: m.subject }))
    expect(verdicts.slice(0, genuine.length).every((v) => v.ok)).toBe(true)
    expect(verdicts.slice(genuine.length).map((v) => (v.ok ? "ok" : v.reason))).toEqual([
      "unsigned",
      "bad_signature",
      "unsigned",
    ])
  }, 30_000)
})

describe("a handler that always fails", () => {
  const MAX_DELIVER = 3
  let t: VigilBus
  beforeAll(async () => {
    t = await startVigilBus({ provision: { maxDeliver: MAX_DELIVER, ackWaitMs: ACK_WAIT_MS } })
  })
  afterAll(async () => {
    await t?.stop()
  })

  it("is retried with backoff and dead-lettered as handler_failed on the last allowed delivery", async () => {
    const dlp = await t.bus("dlp")
    const attempts = new Map<string, Array<number>>()
    const handle = await consumeTasks(dlp, (event, delivery) =>
      Effect.sync(() => attempts.set(event.id, [...(attempts.get(event.id) ?? []), delivery.deliveryCount])).pipe(
        Effect.andThen(Effect.fail(new HandlerError({ message: `cannot screen ${event.id}` }))),
      ),
    )
    const gateway = await t.bus("gateway")
    const published = await gateway.run(
      Effect.gen(function* () {
        const publisher = yield* Publisher
        return [
          yield* publisher.publish(taskDraft("poison")),
          yield* publisher.publish(taskDraft("poison", { data: { channel: "ui", workspace: "/tmp", promptChars: 9 } })),
        ]
      }),
    )

    await eventually("two handler_failed dead letters", async () =>
      (await countStored(t.admin, STREAM_DLQ)) >= published.length ? true : undefined,
    )
    await sleep(ACK_WAIT_MS * 2)

    const dlq = await deadLetters(t.admin, "dlp")
    expect(dlq.size).toBe(published.length)
    expect(await countStored(t.admin, STREAM_DLQ)).toBe(published.length)
    for (const p of published) {
      expect(attempts.get(p.event.id)).toEqual([1, 2, 3])
      const entry = dlq.get(p.seq)
      expect(entry?.msg.headers?.get(HEADER_DLQ_REASON)).toBe("handler_failed")
      expect(verifyDeadLetter(entry?.record, t.dep.chain, { subject: dlqSubject("dlp") })).toMatchObject({ ok: true })
      expect(entry?.record).toMatchObject({
        reason: "handler_failed",
        eventId: p.event.id,
        type: "task.submitted",
        deliveryCount: MAX_DELIVER,
        streamSeq: p.seq,
        payloadSha256: sha256(encodeEvent(p.event)),
      })
      expect(entry?.record.detail).toContain(`cannot screen ${p.event.id}`)
    }
    const info = await consumerInfo(t.admin, STREAM_EVENTS, DLP_TASKS)
    expect(info.num_pending).toBe(0)
    expect(info.num_ack_pending).toBe(0)
    expect(handle.stats).toMatchObject({ handled: 0, failed: 2 * MAX_DELIVER, deadLettered: 2 })
  }, 30_000)
})
