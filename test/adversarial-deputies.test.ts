import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import { Objm } from "@nats-io/obj"
import type { NatsConnection } from "@nats-io/transport-node"
import { respond } from "@vigil/bus"
import {
  AUDIT_CHECKPOINT_SUBJECT,
  dlqSubject,
  eventSubject,
  KV_KEYS,
  KV_POLICY,
  OBJ_BLOBS,
  POLICY_BUNDLE_KEY,
  PROOF_SUBJECTS,
  proofRequestSubject,
  ROLE_JS_API,
  STREAM_AUDIT,
  STREAM_DLQ,
  STREAM_EVENTS,
} from "@vigil/events"
import { grantsOf, permissionsFor, ROLES, type Role } from "@vigil/natsconf"
import { type NatsServer, prepareHome, startNats, type TestHome } from "@vigil/test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * A responder is a deputy (NATS-NOTES trap 9), and so is JetStream itself: a publish ack, a direct get, a pulled
 * message all go to the reply subject the asker named, sent by the server past every user permission. Every NATS
 * user (its generated permissions, a real nats-server) sends every request it may send with reply subjects aimed
 * at the JetStream API, KV buckets, the object store, the event, audit and DLQ subjects and other users' inboxes.
 * Nothing may change: no stream, consumer, bucket or object, no stored message but the probes' own, and no other
 * user's inbox hears anything.
 */

/** Each user's probe body: a copy of one user's probe on another's subject is told from that user's own write. */
const marker = (role: Role): string => `adversarial-probe:${role}`
const SEED = {
  event: eventSubject("advseed", "task.submitted"),
  dlq: dlqSubject("dlp"),
  audit: "vigil.audit.ocsf.api_activity",
  kvKey: "manifest.1",
  object: "adv-object",
}

/** What an attacker can aim a reply at. */
const targets = (durable: string): ReadonlyArray<string> => [
  ...[STREAM_EVENTS, STREAM_AUDIT, STREAM_DLQ, `KV_${KV_KEYS}`, `KV_${KV_POLICY}`, `OBJ_${OBJ_BLOBS}`].flatMap((s) => [
    `$JS.API.STREAM.PURGE.${s}`,
    `$JS.API.STREAM.DELETE.${s}`,
    `$JS.API.STREAM.UPDATE.${s}`,
    `$JS.API.STREAM.MSG.DELETE.${s}`,
  ]),
  `$JS.API.CONSUMER.DELETE.${STREAM_EVENTS}.${durable}`,
  `$JS.API.CONSUMER.CREATE.${STREAM_EVENTS}`,
  `$KV.${KV_KEYS}.manifest.2`,
  `$KV.${KV_POLICY}.${POLICY_BUNDLE_KEY}`,
  `$O.${OBJ_BLOBS}.M.YWR2`,
  `$O.${OBJ_BLOBS}.C.adv`,
  eventSubject("advtarget", "decision.made"),
  eventSubject("advtarget", "alert.raised"),
  AUDIT_CHECKPOINT_SUBJECT,
  "vigil.audit.ocsf.advtarget",
  dlqSubject("auditor"),
  "vigil.keys.manifest",
  "vigil.policy.bundle",
]

/** Each subject a role may publish, made concrete, with a body a server would act on. */
const requestsOf = (role: Role): ReadonlyArray<{ readonly subject: string; readonly body: string }> => {
  const seedOf = (stream: string): string =>
    stream === STREAM_EVENTS
      ? SEED.event
      : stream === STREAM_AUDIT
        ? SEED.audit
        : stream === `KV_${KV_KEYS}`
          ? `$KV.${KV_KEYS}.${SEED.kvKey}`
          : `$KV.${KV_POLICY}.${POLICY_BUNDLE_KEY}`
  return permissionsFor(role).publish.allow.map((allowed) => {
    if (allowed.startsWith(`${ROLE_JS_API}.`)) {
      const api = allowed.slice(ROLE_JS_API.length + 1)
      const directBySubject = /^DIRECT\.GET\.([^.]+)\.>$/.exec(api)
      if (directBySubject !== null)
        return {
          subject: `${ROLE_JS_API}.DIRECT.GET.${directBySubject[1]}.${seedOf(directBySubject[1] as string)}`,
          body: "",
        }
      if (api.startsWith("DIRECT.GET.") || api.startsWith("STREAM.MSG.GET."))
        return { subject: allowed, body: '{"seq":1}' }
      if (api.startsWith("CONSUMER.MSG.NEXT.")) return { subject: allowed, body: '{"batch":1,"no_wait":true}' }
      return { subject: allowed, body: "" }
    }
    if (allowed.startsWith("$JS.ACK.")) {
      return { subject: allowed.replace(/>$/, `1.1.1.${Date.now()}000000.0`), body: "" }
    }
    // Stream subjects, heartbeats, proof requests, import replies: wildcards become probe tokens.
    return { subject: allowed.replace(/\*/g, "advreq").replace(/>$/, "adv.x"), body: marker(role) }
  })
}

/** NATS subject matching: `*` one token, a trailing `>` one or more. */
const subjectMatches = (pattern: string, subject: string): boolean => {
  const p = pattern.split(".")
  const t = subject.split(".")
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return t.length > i
    if (i >= t.length || (p[i] !== "*" && p[i] !== t[i])) return false
  }
  return p.length === t.length
}

/**
 * A stored message by the stream's own record (message get, not direct get: a direct get's answer takes its subject
 * from headers, and a stored answer of a direct get carries such headers too).
 */
const storedAt = async (admin: NatsConnection, stream: string, seq: number) => {
  const raw = await admin.request(`$JS.API.STREAM.MSG.GET.${stream}`, JSON.stringify({ seq }))
  const r = raw.json<{
    message: { subject: string; data?: string }
  }>()
  return { subject: r.message.subject, data: Buffer.from(r.message.data ?? "", "base64").toString("utf8") }
}

interface Snapshot {
  readonly streams: ReadonlyMap<
    string,
    { readonly config: string; readonly firstSeq: number; readonly lastSeq: number; readonly deleted: number }
  >
  readonly consumers: ReadonlyArray<string>
  readonly kv: ReadonlyArray<string>
  readonly objects: ReadonlyArray<string>
}

const snapshot = async (admin: NatsConnection, jsm: JetStreamManager): Promise<Snapshot> => {
  const streams = new Map<
    string,
    { readonly config: string; readonly firstSeq: number; readonly lastSeq: number; readonly deleted: number }
  >()
  const consumers: Array<string> = []
  for await (const s of jsm.streams.list()) {
    streams.set(s.config.name, {
      config: JSON.stringify(s.config),
      firstSeq: s.state.first_seq,
      lastSeq: s.state.last_seq,
      deleted: s.state.num_deleted ?? 0,
    })
    for await (const c of jsm.consumers.list(s.config.name)) {
      // The snapshot's own ordered consumers (KV keys, object list) are the provisioner's, not a probe's.
      if (c.name.startsWith("oc_") && c.config.deliver_subject?.startsWith("_INBOX_admin.") === true) continue
      consumers.push(`${s.config.name}/${c.name} ${JSON.stringify(c.config)}`)
    }
  }
  const kv: Array<string> = []
  for (const bucket of [KV_KEYS, KV_POLICY]) {
    const b = await new Kvm(admin).open(bucket)
    for await (const k of await b.keys()) {
      const e = await b.get(k)
      kv.push(`${bucket}/${k}@${e?.revision} ${e?.string()}`)
    }
  }
  const objects = (await (await new Objm(admin).open(OBJ_BLOBS)).list()).map(
    (o) => `${o.name} ${o.digest} ${o.deleted}`,
  )
  return { streams, consumers: consumers.sort(), kv: kv.sort(), objects: objects.sort() }
}

describe("reply subjects as a weapon: every user, every request it may send", () => {
  let server: NatsServer
  let th: TestHome
  let admin: NatsConnection
  let jsm: JetStreamManager
  const conns = new Map<Role, NatsConnection>()

  beforeAll(async () => {
    server = await startNats({ secure: true })
    th = await prepareHome(server)
    admin = await server.connect("admin")
    jsm = await jetstreamManager(admin)
    const js = jsm.jetstream()
    await js.publish(SEED.event, "seed", { msgID: "seed-event" })
    await js.publish(SEED.dlq, "seed", { msgID: "seed-dlq" })
    await js.publish(SEED.audit, "seed", { msgID: "seed-audit" })
    await (await new Kvm(admin).open(KV_KEYS)).put(SEED.kvKey, "seed manifest")
    await (await new Kvm(admin).open(KV_POLICY)).put(POLICY_BUNDLE_KEY, "seed bundle")
    await (await new Objm(admin).open(OBJ_BLOBS)).putBlob({ name: SEED.object }, new TextEncoder().encode("seed"))
    for (const role of ROLES) if (role !== "admin") conns.set(role, await server.connect(role))
  }, 60_000)

  afterAll(async () => {
    for (const c of conns.values()) await c.close()
    await admin?.close()
    await server?.stop()
    th?.remove()
  })

  it("changes nothing in any stream, consumer, bucket or object, and reaches no other user's inbox", async () => {
    // The auditor's query user answers proof requests through the shared helper, as the auditor does.
    const prover = respond(conns.get("prover") as NatsConnection, {
      subject: proofRequestSubject("*", "*"),
      askerOf: (s) => s.split(".")[2],
      answer: () => JSON.stringify({ ok: true, note: "proof" }),
    })
    // Each user listens on its own inbox for anything another user's probe could send there.
    const heard: Array<string> = []
    for (const [role, nc] of conns) {
      nc.subscribe(`_INBOX_${role}.adv.>`, {
        callback: (_e, m) => {
          heard.push(`${role} <- ${m.subject}`)
        },
      })
      await nc.flush()
    }
    const errors: Array<string> = []
    let eventsStored = 0
    const answersStored: Array<string> = []
    // Every (subject, body) stored so far: the seeds, then each probe's (checked before it is added).
    const known = new Set([SEED.event, SEED.dlq, SEED.audit].map((subject) => `${subject} seed`))
    for (const [role, nc] of conns) {
      const before = await snapshot(admin, jsm)
      const statuses = nc.status()
      void (async () => {
        for await (const s of statuses) if (s.type === "error") errors.push(`${role}: ${s.error.message}`)
      })()
      const aims = [
        ...targets("auditor"),
        ...[...conns.keys()].filter((r) => r !== role).map((r) => `_INBOX_${r}.adv.${role}`),
      ]
      for (const req of requestsOf(role)) for (const reply of aims) nc.publish(req.subject, req.body, { reply })
      await nc.flush()
      // The server's answers (acks, direct gets, pulls, proofs) travel asynchronously.
      await new Promise((r) => setTimeout(r, 500))
      const after = await snapshot(admin, jsm)

      expect(after.consumers, role).toEqual(before.consumers)
      expect(after.kv, role).toEqual(before.kv)
      expect(after.objects, role).toEqual(before.objects)
      expect([...after.streams.keys()].sort(), role).toEqual([...before.streams.keys()].sort())
      // Whatever was stored since lies on a subject this user may store to itself: a deputy's answer landing on
      // the user's own subjects (an ack sent back into its own account) gives it nothing it did not have.
      const own = grantsOf(role).flatMap((g) => (g.kind === "store" ? [g.subject] : []))
      for (const [name, b] of before.streams) {
        const a = after.streams.get(name)
        expect(a?.config, `${role}: ${name} config`).toBe(b.config)
        expect(a?.firstSeq, `${role}: ${name} first sequence`).toBe(b.firstSeq)
        expect(a?.deleted, `${role}: ${name} deleted messages`).toBe(b.deleted)
        for (let seq = b.lastSeq + 1; seq <= (a?.lastSeq ?? 0); seq++) {
          const m = await storedAt(admin, name, seq)
          const subject = m.subject
          // nats-server 2.9 keeps a pulled message's own subject when the pull's answer comes back through an import
          // onto one of the user's store subjects: it can store again, under its original subject, a message it was
          // delivered. Those bytes are someone's signed event, which consumers refuse as replayed (and the auditor
          // as a duplicate); new content it can store only where it may publish itself.
          const copy = known.has(`${subject} ${m.data}`)
          expect(
            own.some((pattern) => subjectMatches(pattern, subject)) || copy,
            `${role} made ${name} #${seq} be stored on ${subject}: ${m.data}`,
          ).toBe(true)
          known.add(`${subject} ${m.data}`)
          if (name === STREAM_EVENTS) eventsStored++
          if (m.data !== marker(role)) answersStored.push(`${role}: ${subject}`)
        }
      }
    }
    expect(errors, "every probe is a request the user may send").toEqual([])
    expect(heard).toEqual([])
    // The probes did reach their targets' owners: proofs were answered, events were stored, and the server's answers
    // that came back into a user's own account and landed on its own subjects were seen (so the check above can see
    // a deputy's write at all).
    expect(prover.stats().answered).toBeGreaterThan(0)
    expect(eventsStored).toBeGreaterThan(0)
    expect(answersStored.length).toBeGreaterThan(0)
    prover.stop()
  }, 120_000)

  it("the proof responder answers only through an import's reply subject, and counts what it drops", async () => {
    // Through the generated accounts an answer can only go back through an import; the helper refuses any other
    // reply itself, so a future permission slip cannot turn an answer into a write elsewhere. A server without
    // accounts shows the helper's own check.
    const open = await startNats()
    try {
      const nc = await open.connect()
      const dropped: Array<string> = []
      const r = respond(nc, {
        subject: proofRequestSubject("*", "*"),
        askerOf: (s) => (s.split(".")[2] === "siem" ? "siem" : undefined),
        answer: () => "answer",
        onDropped: (why, _subject, reply) => {
          dropped.push(`${why} ${reply}`)
        },
      })
      const heard: Array<string> = []
      nc.subscribe("$JS.API.>", {
        callback: (_e, m) => {
          heard.push(m.subject)
        },
      })
      await nc.flush()
      nc.publish(proofRequestSubject("siem", "checkpoint"), "{}")
      nc.publish(proofRequestSubject("siem", "checkpoint"), "{}", { reply: `$JS.API.STREAM.PURGE.${STREAM_AUDIT}` })
      nc.publish(proofRequestSubject("siem", "checkpoint"), "{}", { reply: "_INBOX_ops.stolen" })
      await nc.flush()
      await new Promise((res) => setTimeout(res, 200))
      // (A plain server never delivers a request whose reply starts with _R_.: it keeps that prefix for imports.)
      expect(dropped).toEqual([
        "no-reply ",
        `reply-not-imported $JS.API.STREAM.PURGE.${STREAM_AUDIT}`,
        "reply-not-imported _INBOX_ops.stolen",
      ])
      expect(heard).toEqual([])
      expect(r.stats()).toEqual({ answered: 0, dropped: 3 })
      r.stop()
      await nc.close()
    } finally {
      await open.stop()
    }
    // Through the generated accounts, ops's request comes in with the import's reply and is answered.
    const r = respond(conns.get("prover") as NatsConnection, {
      subject: proofRequestSubject("*", "*"),
      askerOf: (s) => s.split(".")[2],
      answer: (_m, asker) => `for ${asker}`,
    })
    await conns.get("prover")?.flush()
    const reply = await (conns.get("ops") as NatsConnection).request(PROOF_SUBJECTS.checkpoint, "{}", {
      timeout: 2_000,
    })
    expect(reply.string()).toBe("for ops")
    r.stop()
  })
})
