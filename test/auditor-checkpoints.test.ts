import { randomBytes, randomUUID } from "node:crypto"
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { auditLogDir, logOrigin, noteVerifiers, readHomeTrust, verifyAuditLog } from "@vigil/auditlog"
import {
  AUDIT_CHECKPOINT_SUBJECT,
  type Event,
  encodeEvent,
  eventSubject,
  STREAM_AUDIT,
  STREAM_EVENTS,
  signEvent,
  verifyEvent,
} from "@vigil/events"
import { generateSignerKey, parseSignerKey, signCheckpoint, type VerifierKey } from "@vigil/note"
import {
  eventually,
  type NatsServer,
  prepareHome,
  readStream,
  runServiceToExit,
  type ServiceProcess,
  startNats,
  startService,
  type TestHome,
} from "@vigil/test"
import { TileLog } from "@vigil/tlog"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  findPublishedCheckpoint,
  type PublishedCheckpoint,
  PublishedCheckpointSearchExhausted,
  PublishedCheckpointUnreadable,
} from "../services/auditor/src/published-checkpoint.ts"

/**
 * What sits on `vigil.audit.checkpoint` when the auditor starts must neither stop it nor let it fail open: notes that
 * do not verify (malformed, signed by a key the manifest does not know) are skipped and alerted, the never-fork check
 * runs against the newest note that does verify, and a bus that cannot be read stops the start instead of passing
 * for an empty history. One secured nats-server and one home for the whole file; the cases run in order.
 */

const ENV = { VIGIL_CHECKPOINT_MS: "100" }

let server: NatsServer
let th: TestHome
let admin: NatsConnection
let gw: NatsConnection
let origin: string
let verifiers: ReadonlyArray<VerifierKey>
let sent = 0
const cleanup: Array<() => Promise<unknown> | unknown> = []

beforeAll(async () => {
  server = await startNats({ secure: true })
  cleanup.push(() => server.stop())
  th = await prepareHome(server)
  cleanup.push(() => th.remove())
  admin = await server.connect("admin")
  cleanup.push(() => admin.close())
  gw = await server.connect("gateway")
  cleanup.push(() => gw.close())
  origin = logOrigin(th.chain)
  verifiers = noteVerifiers(origin, th.chain)
}, 30_000)

afterAll(async () => {
  for (const c of cleanup.reverse()) await c()
})

const publishEvents = async (count: number) => {
  const js = jetstream(gw, { checkAPI: false })
  for (let i = 0; i < count; i++) {
    const n = sent++
    const ev = signEvent(th.keys.gateway, {
      type: "task.submitted",
      session: "cp",
      data: { channel: "cli", workspace: "/w", promptChars: n },
      blobs: { prompt: { sha256: "d".repeat(64), size: n, mediaType: "text/plain" } },
    })
    await js.publish(eventSubject("cp", "task.submitted"), encodeEvent(ev), { msgID: ev.id })
  }
}

/**
 * Waits until the newest note on the checkpoint subject verifies and covers at least `size` leaves; its size. (Read
 * from the bus as admin, so the test depends on no proof API.)
 */
const noteOnBusAtLeast = (size: number): Promise<number> =>
  eventually(
    `the auditor's note for ${size} leaves on ${AUDIT_CHECKPOINT_SUBJECT}`,
    async () => {
      const found = await find(admin)
      const at = Number(found.newest?.checkpoint.size ?? 0)
      return found.skipped.length === 0 && at >= size ? at : undefined
    },
    20_000,
    100,
  )

/** Publishes `text` on the checkpoint subject as admin; returns its stream sequence. */
const publishNote = async (text: string): Promise<number> =>
  (await jetstream(admin).publish(AUDIT_CHECKPOINT_SUBJECT, text, { msgID: `junk:${randomUUID()}` })).seq

/** `count` OCSF-like records (admin) on the audit stream: what lies between checkpoint notes in production. */
const publishFiller = async (count: number) => {
  const js = jetstream(admin)
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      js.publish("vigil.audit.ocsf.filler", JSON.stringify({ filler: i }), { msgID: `filler:${randomUUID()}` }),
    ),
  )
}

/** A well-formed checkpoint note for this origin, signed by a fresh Ed25519 key the manifest never granted. */
const wrongKeyNote = (size: number) =>
  signCheckpoint({ origin, size, rootHash: new Uint8Array(randomBytes(32)) }, [
    parseSignerKey(generateSignerKey(origin).signerKey),
  ])

const find = async (
  nc: NatsConnection,
  extra: Partial<Parameters<typeof findPublishedCheckpoint>[1]> = {},
): Promise<PublishedCheckpoint> => {
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  return Effect.runPromise(findPublishedCheckpoint(jsm.direct, { origin, verifiers, ...extra }))
}

const storeSize = (): number => {
  const log = TileLog.open(auditLogDir(th.home.root), { create: false })
  try {
    return log.size
  } finally {
    log.close()
  }
}

const alertsOf = async (rule: string): Promise<Array<Event<"alert.raised">>> => {
  const msgs = await readStream(admin, STREAM_EVENTS, eventSubject("audit", "alert.raised"))
  return msgs
    .map((m) => {
      const v = verifyEvent(m.data, { keys: th.chain, maxBytes: 1 << 20 })
      if (!v.ok) throw new Error(`alert does not verify: ${v.reason} ${v.detail}`)
      return v.event as Event<"alert.raised">
    })
    .filter((e) => e.data.rule === rule)
}

describe("auditor start with junk on vigil.audit.checkpoint", () => {
  let auditor: ServiceProcess | undefined
  afterAll(async () => {
    await auditor?.stop()
  })

  it("skips notes that do not verify, alerts one per note, keeps ingesting, and the log still verifies", async () => {
    auditor = await startService("auditor", th, { env: ENV })
    await publishEvents(30)
    await noteOnBusAtLeast(30)
    expect(await auditor.stop()).toBe(0)
    const first = Number((await find(admin)).newest?.checkpoint.size)

    const malformedSeq = await publishNote("this is not a signed note\n")
    const wrongKeySeq = await publishNote(wrongKeyNote(first + 5))
    const before = await find(admin)
    expect(before.newest?.streamSeq).toBeLessThan(malformedSeq)
    expect(Number(before.newest?.checkpoint.size)).toBeGreaterThanOrEqual(first)
    expect(before.skipped.map((s) => s.streamSeq)).toEqual([malformedSeq, wrongKeySeq])
    expect(before.skipped[0]?.reason).toMatch(/^MALFORMED/)
    expect(before.skipped[1]?.reason).toMatch(/^UNVERIFIED/)

    // Today's auditor exited 1 here on every start; now it starts (healthy) and says what it skipped.
    auditor = await startService("auditor", th, { env: ENV })
    const alerts = await alertsOf("checkpoint-note-invalid")
    expect(alerts).toHaveLength(2)
    expect(alerts.map((a) => a.source)).toEqual(["auditor", "auditor"])
    expect(alerts.map((a) => a.data.severity)).toEqual(["high", "high"])
    expect(alerts.map((a) => (a.data.details as { streamSeq: number }).streamSeq).sort((x, y) => x - y)).toEqual([
      malformedSeq,
      wrongKeySeq,
    ])
    for (const a of alerts) {
      const d = a.data.details as { streamSeq: number; reason: string }
      expect(a.data.summary).toContain(`stream sequence ${d.streamSeq}`)
      expect(d.reason).toMatch(d.streamSeq === malformedSeq ? /^MALFORMED/ : /^UNVERIFIED/)
    }
    expect(new Set(alerts.map((a) => a.id)).size).toBe(2)

    // It keeps ingesting, and its next note goes on top of the junk.
    await publishEvents(10)
    await noteOnBusAtLeast(first + 10)
    expect(await auditor.stop()).toBe(0)
    auditor = undefined
    const onBus = Number((await find(admin)).newest?.checkpoint.size)

    // `vigil audit verify` reads the store, not the bus: the junk notes are not in its history.
    const trust = readHomeTrust(th.home.root)
    const report = await verifyAuditLog({
      dir: auditLogDir(th.home.root),
      rootPublicKey: trust.rootPublicKey,
      manifests: trust.manifests,
    })
    expect(report.ok, JSON.stringify(report.first)).toBe(true)
    expect(report.checkpointSize).toBe(onBus)
  }, 60_000)

  it("still refuses a rolled-back store when a valid newer note sits behind junk", async () => {
    const dir = auditLogDir(th.home.root)
    const backup = mkdtempSync(join(tmpdir(), "vigil-auditor-backup-"))
    cleanup.push(() => rmSync(backup, { recursive: true, force: true }))
    cpSync(dir, backup, { recursive: true })
    const oldSize = storeSize()

    // A second life signs and publishes checkpoints past the copy.
    auditor = await startService("auditor", th, { env: ENV })
    await publishEvents(10)
    await noteOnBusAtLeast(oldSize + 10)
    expect(await auditor.stop()).toBe(0)
    auditor = undefined
    const newer = Number((await find(admin)).newest?.checkpoint.size)

    // OCSF-like records, then junk as the newest note: the valid note is several windows back.
    await publishFiller(300)
    const junkSeq = await publishNote(wrongKeyNote(oldSize))
    const found = await find(admin)
    expect(found.skipped.map((s) => s.streamSeq)).toEqual([junkSeq])
    expect(Number(found.newest?.checkpoint.size)).toBe(newer)
    // Windows of 64, 128, 256, 512 back from the junk: a handful of direct gets, not one per message.
    expect(found.requests).toBeLessThan(30)
    const alertsBefore = (await alertsOf("checkpoint-note-invalid")).length

    rmSync(dir, { recursive: true, force: true })
    cpSync(backup, dir, { recursive: true })
    const { code, output } = await runServiceToExit("auditor", th, { env: ENV })
    expect(code, output).toBe(1)
    expect(output).toContain(`leaves ${oldSize}..${newer - 1} are missing`)

    const rolledBack = await alertsOf("audit-store-rolled-back")
    expect(rolledBack).toHaveLength(1)
    expect(rolledBack[0]?.data.details).toMatchObject({ storeSize: oldSize, checkpointSize: newer })
    const noteAlerts = await alertsOf("checkpoint-note-invalid")
    expect(noteAlerts).toHaveLength(alertsBefore + 1)
    expect(noteAlerts.map((a) => (a.data.details as { streamSeq: number }).streamSeq)).toContain(junkSeq)
  }, 60_000)
})

describe("findPublishedCheckpoint", () => {
  /** The search's typed failure (its success, or a defect, rejects). */
  const failure = async (
    nc: NatsConnection,
    extra: Partial<Parameters<typeof findPublishedCheckpoint>[1]> = {},
    jsm?: Awaited<ReturnType<typeof jetstreamManager>>,
  ) => {
    const m = jsm ?? (await jetstreamManager(nc, { checkAPI: false }))
    return Effect.runPromise(Effect.flip(findPublishedCheckpoint(m.direct, { origin, verifiers, ...extra })))
  }

  it("takes only 'message not found' (404) for 'no note'", async () => {
    const none = await find(admin, { subject: "vigil.audit.ocsf.nothing-here" })
    expect(none).toEqual({ newest: undefined, skipped: [], requests: 1 })
  })

  it("fails closed, after its retries, without direct-get rights or on a closed connection", async () => {
    const t0 = Date.now()
    // The gateway user may not send $JS.API.DIRECT.GET.VIGIL_AUDIT.>: a permission violation, not "none".
    const refused = await failure(gw, { attempts: 3, retryBase: "10 millis" })
    expect(refused).toBeInstanceOf(PublishedCheckpointUnreadable)
    expect((refused as PublishedCheckpointUnreadable).attempts).toBe(3)
    expect((refused as PublishedCheckpointUnreadable).message).toContain(`DIRECT.GET.${STREAM_AUDIT}`)
    expect((refused as PublishedCheckpointUnreadable).message).toMatch(/permission/i)

    const nc = await server.connect("admin")
    const jsm = await jetstreamManager(nc, { checkAPI: false })
    await nc.close()
    const closed = await failure(nc, { attempts: 2, retryBase: "10 millis" }, jsm)
    expect(closed).toBeInstanceOf(PublishedCheckpointUnreadable)
    expect((closed as PublishedCheckpointUnreadable).request).toBe(`last_by_subj ${AUDIT_CHECKPOINT_SUBJECT}`)

    // A stream that does not answer (here: none of that name; the request times out) is not an empty history either.
    const quick = await jetstreamManager(admin, { checkAPI: false, timeout: 300 })
    const missing = await failure(admin, { stream: "NO_SUCH_STREAM", attempts: 2, retryBase: "10 millis" }, quick)
    expect(missing).toBeInstanceOf(PublishedCheckpointUnreadable)
    expect(Date.now() - t0).toBeLessThan(3_000)
  })

  it("gives up (fails) when more notes than its bound do not verify", async () => {
    const before = await find(admin)
    expect(before.newest).toBeDefined()
    for (let i = 0; i < 3; i++) await publishNote(`junk ${i}\n`)
    const err = await failure(admin, { maxNotes: 3 })
    expect(err).toBeInstanceOf(PublishedCheckpointSearchExhausted)
    // With room to search, the same genuine note is found behind the junk.
    const found = await find(admin)
    expect(found.skipped).toHaveLength(before.skipped.length + 3)
    expect(found.newest?.streamSeq).toBe(before.newest?.streamSeq)
  })
})

describe("a damaged store", () => {
  it("is reported as damaged, naming the file and what to do, not as rolled back", async () => {
    const dir = auditLogDir(th.home.root)
    // The first level-0 tile: full (tile/0/000) once 256 leaves are in, partial (tile/0/000.p/<n>) before.
    const tile = existsSync(join(dir, "tile/0/000"))
      ? "tile/0/000"
      : `tile/0/000.p/${readdirSync(join(dir, "tile/0/000.p")).sort((a, b) => Number(b) - Number(a))[0]}`
    const bytes = readFileSync(join(dir, tile))
    const flipped = Buffer.from(bytes)
    flipped[5] = (flipped[5] as number) ^ 0x01
    writeFileSync(join(dir, tile), flipped)
    try {
      const { code, output } = await runServiceToExit("auditor", th, { env: ENV })
      expect(code, output).toBe(1)
      expect(output).toContain("AuditStoreUnusable")
      expect(output).toContain(`cannot open the audit log in ${dir}`)
      expect(output).toContain("vigil audit verify")
      expect(output).not.toContain("AuditStoreRolledBack")
    } finally {
      writeFileSync(join(dir, tile), bytes)
    }
  })
})
