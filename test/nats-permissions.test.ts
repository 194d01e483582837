import { spawnSync } from "node:child_process"
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream"
import { AckPolicy, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream"
import type { KV } from "@nats-io/kv"
import { Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { jetStreamOptions } from "@vigil/bus"
import type { EventType, Principal, Service } from "@vigil/events"
import {
  AUDIT_ALL,
  DLQ_ALL,
  dlqSubject,
  durablesFor,
  EVENT_TYPES,
  EVENTS_ALL,
  eventSubject,
  HEALTH_ALL,
  healthSubject,
  KEYS_MANIFEST_SUBJECT,
  KV_KEYS,
  POLICY_BUNDLE_SUBJECT,
  PRINCIPALS,
  PROOF_ALL,
  PROOF_ASKERS,
  PROOF_SUBJECTS,
  proofRequestSubject,
  ROLE_JS_API,
  SERVICES,
  SIEM_DURABLE,
  STREAM_AUDIT,
  STREAM_DLQ,
  STREAM_EVENTS,
  typesProducedBy,
} from "@vigil/events"
import type { Role } from "@vigil/natsconf"
import {
  generateUserNkeys,
  INFRA_NATS_DIR,
  infraFiles,
  permissionsFor,
  publicKeys,
  ROLES,
  renderUsersConf,
} from "@vigil/natsconf"
import type { NatsServer } from "@vigil/test"
import { NATS_SERVER_BIN, startNats } from "@vigil/test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * What the generated NATS permissions allow and refuse, against a real nats-server (one for the suite) with every
 * role connected under its own nkey and inbox prefix. Facts behind the assertions: ../shared/design/NATS-NOTES.md.
 */

const repoRoot = join(import.meta.dirname, "..")

let server: NatsServer
let admin: NatsConnection
let jsm: JetStreamManager
let adminKv: KV
const conns = new Map<Role, NatsConnection>()

const nc = (role: Role): NatsConnection => {
  const c = conns.get(role)
  if (c === undefined) throw new Error(`no connection for ${role}`)
  return c
}
/** Each role's JetStream context: the store account's API as imported into its own account (ADR 0017). */
const js = (role: Role): JetStreamClient => jetstream(nc(role), jetStreamOptions(role))

let seq = 0
const msgId = (what: string): string => `${what}-${Date.now()}-${++seq}`

interface PermissionError {
  readonly name: string
  readonly operation: string
  readonly subject: string
}

/** The PermissionViolationError in an error's cause chain (RequestError wraps it: NATS-NOTES trap 4). */
const permissionError = (err: unknown): PermissionError | undefined => {
  let e: unknown = err
  for (let i = 0; i < 5 && e instanceof Error; i++) {
    if (e.name === "PermissionViolationError") return e as unknown as PermissionError
    e = e.cause
  }
  return undefined
}

const expectRefused = async (
  p: Promise<unknown>,
  operation: "publish" | "subscription",
  subject: string | RegExp,
): Promise<void> => {
  const outcome = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  )
  if (outcome.ok) throw new Error(`expected a permission violation for ${operation} to ${subject}, but it succeeded`)
  const pe = permissionError(outcome.e)
  if (pe === undefined) throw new Error(`expected a permission violation, got ${String(outcome.e)}`)
  expect(pe.operation).toBe(operation)
  if (typeof subject === "string") expect(pe.subject).toBe(subject)
  else expect(pe.subject).toMatch(subject)
}

/** An acked JetStream publish (with Nats-Msg-Id, trap 3) that the server must refuse. */
const expectPublishRefused = (role: Role, subject: string): Promise<void> =>
  expectRefused(js(role).publish(subject, "x", { msgID: msgId(role) }), "publish", subject)

/** A core subscription the server must refuse: the subscription closes with the permission error. */
const expectSubscribeRefused = async (role: Role, subject: string): Promise<void> => {
  const sub = nc(role).subscribe(subject)
  const closed = await Promise.race([sub.closed, new Promise<"open">((r) => setTimeout(() => r("open"), 2_000))])
  if (closed === "open") sub.unsubscribe()
  const pe = permissionError(closed)
  expect(pe, `subscribe to ${subject} as ${role} should be refused`).toBeDefined()
  expect(pe?.operation).toBe("subscription")
  expect(pe?.subject).toBe(subject)
}

/** A plain publish the server must refuse: only an async status error tells (trap 4), seen after a flush. */
const expectPlainPublishRefused = async (role: Role, subject: string): Promise<void> => {
  const conn = nc(role)
  const errors: Array<PermissionError> = []
  const status = conn.status()
  const watching = (async () => {
    for await (const s of status) {
      const pe = s.type === "error" ? permissionError(s.error) : undefined
      if (pe !== undefined) errors.push(pe)
      if (pe?.subject === subject) break
    }
  })()
  conn.publish(subject, "x")
  await conn.flush()
  await Promise.race([watching, new Promise((r) => setTimeout(r, 1_000))])
  expect(errors.map((e) => `${e.operation} ${e.subject}`)).toContain(`publish ${subject}`)
}

/** Subjects stored in a stream for one session (or any subject filter). */
const storedSubjects = async (stream: string, filter: string): Promise<ReadonlyArray<string>> => {
  const info = await jsm.streams.info(stream, { subjects_filter: filter })
  return Object.keys(info.state.subjects ?? {}).sort()
}

const others = (p: Principal): ReadonlyArray<EventType> => EVENT_TYPES.filter((t) => !typesProducedBy(p).includes(t))

beforeAll(async () => {
  server = await startNats({ secure: true })
  admin = await server.connect("admin")
  jsm = await jetstreamManager(admin)
  await jsm.streams.add({ name: STREAM_EVENTS, subjects: [EVENTS_ALL], storage: StorageType.File })
  await jsm.streams.add({ name: STREAM_DLQ, subjects: [DLQ_ALL], storage: StorageType.File })
  await jsm.streams.add({ name: STREAM_AUDIT, subjects: [AUDIT_ALL], storage: StorageType.File })
  // Pre-created durables, as the provisioner will create them (readers never get CONSUMER.CREATE: trap 7).
  for (const service of SERVICES) {
    for (const d of durablesFor(service)) {
      await jsm.consumers.add(d.stream, {
        durable_name: d.durable,
        filter_subject: d.filter,
        ack_policy: AckPolicy.Explicit,
      })
    }
  }
  await jsm.consumers.add(STREAM_AUDIT, { durable_name: SIEM_DURABLE, ack_policy: AckPolicy.Explicit })
  // Something for every durable to deliver.
  const ajs = jetstream(admin)
  for (const t of EVENT_TYPES) await ajs.publish(eventSubject("feed", t), "{}", { msgID: `feed-${t}` })
  await ajs.publish("vigil.audit.ocsf.api_activity", "{}", { msgID: "feed-ocsf" })
  adminKv = await new Kvm(admin).create(KV_KEYS, { history: 1 })
  await adminKv.put("manifest", "v1")
  for (const role of ROLES) conns.set(role, await server.connect(role))
}, 20_000)

afterAll(async () => {
  for (const c of conns.values()) await c.close()
  await admin?.close()
  await server?.stop()
})

describe("generated permissions", () => {
  it("never leave an allow list empty and give consumer-create rights to admin only", () => {
    for (const role of ROLES) {
      const p = permissionsFor(role)
      expect(p.publish.allow.length, role).toBeGreaterThan(0)
      expect(p.subscribe.allow.length, role).toBeGreaterThan(0)
      if (role === "admin") continue
      for (const s of p.publish.allow) {
        expect(s, role).not.toMatch(
          /^(\$JS|JS\.VIGIL)\.API\.(CONSUMER\.(CREATE|DURABLE)|STREAM\.(CREATE|UPDATE|DELETE|PURGE))/,
        )
        expect(s, role).not.toMatch(/^(\$JS|JS\.VIGIL)\.API\.>|^>$|^vigil\.>$|^\$KV|^\$O\./)
      }
      expect(p.subscribe.allow).not.toContain("_INBOX.>")
    }
  })

  it("checked-in infra/nats files are up to date and accepted by nats-server", () => {
    const dir = mkdtempSync(join(tmpdir(), "vigil-natsconf-"))
    try {
      cpSync(join(repoRoot, INFRA_NATS_DIR), dir, { recursive: true })
      writeFileSync(join(dir, "users.conf"), renderUsersConf(publicKeys(generateUserNkeys())))
      for (const f of infraFiles()) {
        expect(readFileSync(join(repoRoot, INFRA_NATS_DIR, f.path), "utf8"), `${f.path} drifted`).toBe(f.content)
        if (f.path === "permissions.conf") continue // included by the others
        const r = spawnSync(NATS_SERVER_BIN, ["-c", join(dir, f.path), "-t"], { encoding: "utf8" })
        expect(r.status, `${f.path}: ${r.stderr}`).toBe(0)
        expect(r.stderr).toContain("is valid")
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe.each(SERVICES)("service %s", (service: Service) => {
  const session = `perm-${service}`

  it("publishes each of its own event types (acked, with Nats-Msg-Id)", async () => {
    for (const t of typesProducedBy(service)) {
      const ack = await js(service).publish(eventSubject(session, t), "{}", { msgID: msgId(`${service}-${t}`) })
      expect(ack.stream).toBe(STREAM_EVENTS)
      expect(ack.duplicate).toBe(false)
    }
    expect(await storedSubjects(STREAM_EVENTS, `vigil.ev.${session}.>`)).toEqual(
      typesProducedBy(service)
        .map((t) => eventSubject(session, t))
        .sort(),
    )
  })

  it("is refused every other principal's event type, and the stream stores none of them", async () => {
    const denied = `deny-${service}`
    for (const t of others(service)) await expectPublishRefused(service, eventSubject(denied, t))
    expect(await storedSubjects(STREAM_EVENTS, `vigil.ev.${denied}.>`)).toEqual([])
  })

  it("publishes to its own DLQ subject only", async () => {
    const before = (await jsm.streams.info(STREAM_DLQ)).state.messages
    await js(service).publish(dlqSubject(service), "{}", { msgID: msgId(`${service}-dlq`) })
    for (const other of PRINCIPALS.filter((p) => p !== service)) {
      await expectPublishRefused(service, dlqSubject(other))
    }
    expect((await jsm.streams.info(STREAM_DLQ)).state.messages).toBe(before + 1)
    expect(await storedSubjects(STREAM_DLQ, DLQ_ALL)).toContain(dlqSubject(service))
  })

  it("publishes audit records only if it is the auditor; no other service's heartbeat, nothing into other inboxes", async () => {
    if (service === "auditor") {
      for (const subject of ["vigil.audit.checkpoint", "vigil.audit.ocsf.api_activity"]) {
        expect((await js(service).publish(subject, "{}", { msgID: msgId(subject) })).stream).toBe(STREAM_AUDIT)
      }
    } else {
      await expectPublishRefused(service, "vigil.audit.checkpoint")
      await expectPublishRefused(service, "vigil.audit.ocsf.api_activity")
    }
    await expectPlainPublishRefused(service, healthSubject(service === "policy" ? "dlp" : "policy"))
    await expectPlainPublishRefused(service, "_INBOX_admin.forged")
    await expectPlainPublishRefused(service, "_INBOX_ops.forged")
  })

  it("subscribes to its own inbox only", async () => {
    const own = nc(service).subscribe(`_INBOX_${service}.probe`)
    await nc(service).flush()
    expect(own.isClosed()).toBe(false)
    own.unsubscribe()
    await expectSubscribeRefused(service, "_INBOX.>")
    for (const other of ROLES.filter((r) => r !== service)) await expectSubscribeRefused(service, `_INBOX_${other}.>`)
    await expectSubscribeRefused(service, EVENTS_ALL)
    await expectSubscribeRefused(service, ">")
  })

  it("cannot create consumers (durable, filtered or push)", async () => {
    const m = await jetstreamManager(nc(service), jetStreamOptions(service))
    const rogue = `rogue_${service}`
    await expectRefused(
      m.consumers.add(STREAM_EVENTS, { durable_name: rogue, filter_subject: EVENTS_ALL, ack_policy: AckPolicy.None }),
      "publish",
      /^JS\.VIGIL\.API\.CONSUMER\./,
    )
    await expectRefused(
      m.consumers.add(STREAM_EVENTS, { deliver_subject: `_INBOX_${service}.push`, ack_policy: AckPolicy.None }),
      "publish",
      /^JS\.VIGIL\.API\.CONSUMER\./,
    )
    await expect(jsm.consumers.info(STREAM_EVENTS, rogue)).rejects.toThrow(/consumer not found/i)
  })

  it("pulls and acks from its own durables, and cannot read another service's", async () => {
    const client = js(service)
    for (const d of durablesFor(service)) {
      const c = await client.consumers.get(d.stream, d.durable)
      const m = await c.next({ expires: 2_000 })
      expect(m, d.durable).not.toBeNull()
      expect(await m?.ackAck(), `ack on ${d.durable}`).toBe(true)
    }
    const foreign = durablesFor(SERVICES[(SERVICES.indexOf(service) + 1) % SERVICES.length] as Service)[0]
    if (foreign === undefined) throw new Error("no foreign durable")
    await expectRefused(
      client.consumers.get(foreign.stream, foreign.durable),
      "publish",
      `${ROLE_JS_API}.CONSUMER.INFO.${foreign.stream}.${foreign.durable}`,
    )
  })

  it("reads the key manifest (msg get, direct get, live updates) but cannot write it", async () => {
    const kvm = new Kvm(js(service))
    const viaMsgGet = await kvm.open(KV_KEYS)
    expect((await viaMsgGet.get("manifest"))?.string()).toMatch(/^v/)
    const viaDirect = await kvm.open(KV_KEYS, { allow_direct: true })
    expect((await viaDirect.get("manifest"))?.string()).toMatch(/^v/)

    const value = `v-${service}`
    await adminKv.put("manifest", value)
    // Live updates come as plain announcements, never on $KV (whose messages carry the writer's ack inbox).
    await expectSubscribeRefused(service, `$KV.${KV_KEYS}.>`)
    const live = nc(service).subscribe(KEYS_MANIFEST_SUBJECT, { max: 1 })
    await nc(service).flush()
    nc("admin").publish(KEYS_MANIFEST_SUBJECT, value)
    for await (const m of live) {
      expect(m.string()).toBe(value)
      expect(m.reply ?? "").toBe("")
    }
    await expectRefused(js(service).publish(KEYS_MANIFEST_SUBJECT, "evil"), "publish", KEYS_MANIFEST_SUBJECT)

    // The KV client writes under the role's API prefix; the bucket's own subject is refused as well.
    await expectRefused(viaMsgGet.put("manifest", "evil"), "publish", `${ROLE_JS_API}.$KV.${KV_KEYS}.manifest`)
    await expectRefused(js(service).publish(`$KV.${KV_KEYS}.manifest`, "evil"), "publish", `$KV.${KV_KEYS}.manifest`)
    expect((await adminKv.get("manifest"))?.string()).toBe(value)
  })

  it("publishes its heartbeat, which ops can read; cannot answer requests (no allow_responses)", async () => {
    const sub = nc("ops").subscribe(healthSubject(service), { max: 1 })
    await nc("ops").flush()
    nc(service).publish(healthSubject(service), JSON.stringify({ service, ok: true }))
    for await (const m of sub) expect(m.json()).toEqual({ service, ok: true })
    // Proof requests go to the auditor's separate query user (prover), never to an event-consuming user.
    await expectSubscribeRefused(service, "vigil.proof.checkpoint")
  })
})

describe("prover", () => {
  it("answers proof requests from ops and siem, and can do nothing else", async () => {
    // Each asker's import names it: ops asks vigil.proof.checkpoint, the prover receives vigil.proof.ops.checkpoint.
    const seen: Array<string> = []
    const sub = nc("prover").subscribe("vigil.proof.*.*", {
      max: 2,
      callback: (_err, m) => {
        seen.push(`${m.subject} ${m.reply?.slice(0, 4)}`)
        m.respond(JSON.stringify({ ok: true }))
      },
    })
    await nc("prover").flush()
    for (const asker of ["ops", "siem"] as const) {
      const reply = await nc(asker).request("vigil.proof.checkpoint", "{}", { timeout: 2_000 })
      expect(reply.json()).toEqual({ ok: true })
    }
    await sub.closed
    expect(seen).toEqual(["vigil.proof.ops.checkpoint _R_.", "vigil.proof.siem.checkpoint _R_."])
    for (const t of EVENT_TYPES) await expectPublishRefused("prover", eventSubject("deny-prover", t))
    await expectPublishRefused("prover", "vigil.audit.checkpoint")
    await expectPlainPublishRefused("prover", "_INBOX_ops.forged")
    await expectSubscribeRefused("prover", EVENTS_ALL)
    expect(await storedSubjects(STREAM_EVENTS, "vigil.ev.deny-prover.>")).toEqual([])
  })
})

describe("ops", () => {
  it("publishes containment.ordered and nothing else", async () => {
    const ack = await js("ops").publish(eventSubject("perm-ops", "containment.ordered"), "{}", {
      msgID: msgId("ops-containment"),
    })
    expect(ack.stream).toBe(STREAM_EVENTS)
    for (const t of others("ops")) await expectPublishRefused("ops", eventSubject("deny-ops", t))
    for (const p of PRINCIPALS) await expectPublishRefused("ops", dlqSubject(p))
    await expectPublishRefused("ops", "vigil.audit.checkpoint")
    expect(await storedSubjects(STREAM_EVENTS, "vigil.ev.deny-ops.>")).toEqual([])
    expect(await storedSubjects(STREAM_EVENTS, "vigil.ev.perm-ops.>")).toEqual([
      eventSubject("perm-ops", "containment.ordered"),
    ])
  })

  it("cannot subscribe outside its inbox nor create consumers", async () => {
    await expectSubscribeRefused("ops", "_INBOX.>")
    await expectSubscribeRefused("ops", EVENTS_ALL)
    const m = await jetstreamManager(nc("ops"), jetStreamOptions("ops"))
    await expectRefused(
      m.consumers.add(STREAM_EVENTS, { durable_name: "rogue_ops", ack_policy: AckPolicy.None }),
      "publish",
      /^JS\.VIGIL\.API\.CONSUMER\./,
    )
  })
})

describe("siem", () => {
  it("cannot publish anything in vigil.>", async () => {
    const auditBefore = (await jsm.streams.info(STREAM_AUDIT)).state.messages
    for (const t of EVENT_TYPES) await expectPublishRefused("siem", eventSubject("deny-siem", t))
    await expectPublishRefused("siem", "vigil.audit.checkpoint")
    await expectPublishRefused("siem", "vigil.audit.ocsf.api_activity")
    await expectPublishRefused("siem", dlqSubject("siem"))
    await expectRefused(
      nc("siem").request(healthSubject("policy"), "", { timeout: 1_000 }),
      "publish",
      healthSubject("policy"),
    )
    expect(await storedSubjects(STREAM_EVENTS, "vigil.ev.deny-siem.>")).toEqual([])
    expect((await jsm.streams.info(STREAM_AUDIT)).state.messages).toBe(auditBefore)
  })

  it("reads through its pre-created durable only", async () => {
    const c = await js("siem").consumers.get(STREAM_AUDIT, SIEM_DURABLE)
    const m = await c.next({ expires: 2_000 })
    expect(m?.subject).toBe("vigil.audit.ocsf.api_activity")
    expect(await m?.ackAck()).toBe(true)
    await expectRefused(
      js("siem").consumers.get(STREAM_EVENTS, "auditor"),
      "publish",
      `${ROLE_JS_API}.CONSUMER.INFO.VIGIL_EVENTS.auditor`,
    )
    await expectSubscribeRefused("siem", AUDIT_ALL)
    await expectSubscribeRefused("siem", "_INBOX.>")
    const jm = await jetstreamManager(nc("siem"), jetStreamOptions("siem"))
    await expectRefused(
      jm.consumers.add(STREAM_AUDIT, { deliver_subject: "_INBOX_siem.push", ack_policy: AckPolicy.None }),
      "publish",
      /^JS\.VIGIL\.API\.CONSUMER\./,
    )
  })
})

/**
 * What the account-per-role bus (ADR 0017) added — proof requests through the prover's imports, the prover's `_R_.>`
 * answers, heartbeats exported to ops, direct get by sequence on VIGIL_EVENTS for every service, the bundle
 * announcement — tried by every user that must not reach it.
 */
describe("new reach, refused to everyone else", () => {
  const nonAdmin = ROLES.filter((r) => r !== "admin")
  const askers: ReadonlyArray<Role> = PROOF_ASKERS

  it.each(nonAdmin.filter((r) => !askers.includes(r)))("%s cannot ask the prover for proofs", async (role) => {
    await expectPlainPublishRefused(role, PROOF_SUBJECTS.checkpoint)
    await expectPlainPublishRefused(role, proofRequestSubject("ops", "checkpoint"))
    if (role !== "prover") await expectSubscribeRefused(role, PROOF_ALL)
  })

  it.each(nonAdmin.filter((r) => r !== "prover"))(
    "%s cannot publish import replies (_R_.>) nor listen for proofs",
    async (role) => {
      await expectPlainPublishRefused(role, "_R_.forged.reply")
      await expectSubscribeRefused(role, proofRequestSubject("*", "*"))
    },
  )

  it.each(nonAdmin.filter((r) => r !== "ops"))("%s cannot follow heartbeats", async (role) => {
    await expectSubscribeRefused(role, HEALTH_ALL)
  })

  it.each(nonAdmin)("%s cannot announce a policy bundle or a key manifest", async (role) => {
    await expectPlainPublishRefused(role, POLICY_BUNDLE_SUBJECT)
    await expectPlainPublishRefused(role, KEYS_MANIFEST_SUBJECT)
  })

  it.each(["prover", "siem"] as const)("%s cannot read VIGIL_EVENTS by direct get", async (role) => {
    for (const prefix of [ROLE_JS_API, "$JS.API"]) {
      await expectRefused(
        nc(role).request(`${prefix}.DIRECT.GET.${STREAM_EVENTS}`, JSON.stringify({ seq: 1 }), { timeout: 2_000 }),
        "publish",
        `${prefix}.DIRECT.GET.${STREAM_EVENTS}`,
      )
    }
  })
})
