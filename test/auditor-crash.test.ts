import { appendFileSync, cpSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { jetstream } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { AuditCore, HELD_FILE, logOrigin, noteSigner, noteVerifiers } from "@vigil/auditlog"
import { provision } from "@vigil/bus"
import { keyIdOf, nodeEd25519, randomSeed } from "@vigil/crypto"
import {
  AUDIT_CHECKPOINT_SUBJECT,
  type Event,
  encodeEvent,
  eventSubject,
  PROOF_SUBJECTS,
  STREAM_AUDIT,
  STREAM_EVENTS,
  signEvent,
  verifyEvent,
} from "@vigil/events"
import { verifyConsistency } from "@vigil/merkle"
import { encodeVerifierKey, openCheckpoint, parseVerifierKey } from "@vigil/note"
import {
  consumerInfo,
  countStored,
  eventually,
  type NatsServer,
  prepareHome,
  readStream,
  runServiceToExit,
  type ServiceProcess,
  type StoredMsg,
  sleep,
  startNats,
  startService,
  type TestHome,
} from "@vigil/test"
import { TileLog } from "@vigil/tlog"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * The auditor under SIGKILL: 20,000 signed events published while the auditor process is killed at random moments
 * and restarted; afterwards the log holds every event exactly once, in VIGIL_EVENTS order, every checkpoint ever
 * published is consistent with the final tree, there is one OCSF record per leaf, and the durable is drained.
 */

const N = 20_000
const KILLS = 4
/** Short ack_wait so a killed instance's unacked deliveries come back within the test (production: 30 s). */
const ACK_WAIT_MS = 2_000
const AUDITOR_ENV = { VIGIL_CHECKPOINT_MS: "250", VIGIL_LOG_LEVEL: "info" }

/** Pino lines of a service process's output. */
const logLines = (p: ServiceProcess): Array<Record<string, unknown>> =>
  p
    .output()
    .split("\n")
    .flatMap((l) => {
      if (!l.startsWith("{")) return []
      try {
        return [JSON.parse(l) as Record<string, unknown>]
      } catch {
        return []
      }
    })

describe("auditor crash safety (kill -9 during a 20,000-event run)", () => {
  let server: NatsServer
  let th: TestHome
  let admin: NatsConnection
  const cleanup: Array<() => Promise<unknown> | unknown> = []

  beforeAll(async () => {
    server = await startNats({ secure: true })
    cleanup.push(() => server.stop())
    th = await prepareHome(server)
    cleanup.push(() => th.remove())
    admin = await server.connect("admin")
    cleanup.push(() => admin.close())
    await Effect.runPromise(provision(admin, { ackWaitMs: ACK_WAIT_MS }))
  })
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it("keeps every event exactly once, in stream order, with consistent checkpoints", async () => {
    const t0 = Date.now()
    const gw = await server.connect("gateway")
    cleanup.push(() => gw.close())
    const js = jetstream(gw, { checkAPI: false })
    const processes: ServiceProcess[] = []
    let auditor = await startService("auditor", th, { env: AUDITOR_ENV })
    processes.push(auditor)
    cleanup.push(() => auditor.stop())

    // Publisher: N signed events over a few sessions, paced so the kills land while it runs; the last events wait
    // for the last kill, so a slow machine (restarts taking seconds) cannot finish publishing before the kills.
    const published: string[] = []
    let publishing = true
    let killsDone = () => {}
    const allKilled = new Promise<void>((resolve) => {
      killsDone = resolve
    })
    const HELD_BACK = 1_000
    const publisher = (async () => {
      const window = 64
      const perSecond = 1_000
      const start = Date.now()
      let next = 0
      const worker = async () => {
        while (next < N) {
          const i = next++
          if (i >= N - HELD_BACK) await allKilled
          const due = start + (i / perSecond) * 1000
          const wait = due - Date.now()
          if (wait > 0) await sleep(wait)
          const session = `crash-${i % 16}`
          const ev: Event = signEvent(th.keys.gateway, {
            type: "task.submitted",
            session,
            data: { channel: "cli", workspace: "/home/ana/Documents", promptChars: i },
            blobs: { prompt: { sha256: i.toString(16).padStart(64, "0"), size: i, mediaType: "text/plain" } },
          })
          published.push(ev.id)
          await js.publish(eventSubject(session, "task.submitted"), encodeEvent(ev), { msgID: ev.id })
        }
      }
      await Promise.all(Array.from({ length: window }, worker))
      publishing = false
    })()

    // Killer: SIGKILL at random moments while publishing continues, restart at once.
    let kills = 0
    while (kills < KILLS) {
      await sleep(300 + Math.random() * 1_500)
      await auditor.kill()
      kills++
      expect(publishing, "kills land while events are still being published").toBe(true)
      auditor = await startService("auditor", th, { env: AUDITOR_ENV, readyTimeoutMs: 20_000 })
      processes.push(auditor)
    }
    killsDone()
    await publisher
    expect(published.length).toBe(N)
    const publishedAt = Date.now()

    // Drain: the durable has nothing pending, the stream stops growing (the auditor's own checkpoint events do not
    // call for further checkpoints) and the latest checkpoint no longer moves.
    const ops = await server.connect("ops")
    cleanup.push(() => ops.close())
    const origin = logOrigin(th.chain)
    const verifiers = noteVerifiers(origin, th.chain)
    let previous = ""
    const finalCp = await eventually(
      "the auditor to drain the stream and settle on a final checkpoint",
      async () => {
        const stored = await countStored(admin, STREAM_EVENTS)
        const ci = await consumerInfo(admin, STREAM_EVENTS, "auditor")
        // A busy auditor (catching up after its last restart, on a loaded machine) may miss one probe's deadline.
        const reply = await ops.request(PROOF_SUBJECTS.checkpoint, "{}", { timeout: 2_000 }).catch(() => undefined)
        if (reply === undefined) {
          previous = ""
          return undefined
        }
        const r = reply.json<{ ok: boolean; size: number; note: string }>()
        const drained = ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.delivered.stream_seq >= stored
        const state = `${stored}/${r.ok ? r.size : 0}`
        const settled = drained && r.ok && state === previous
        previous = drained ? state : ""
        return settled ? r : undefined
      },
      40_000,
      1_000,
    ).catch(async (e: Error) => {
      const ci = await consumerInfo(admin, STREAM_EVENTS, "auditor")
      throw new Error(
        `${e.message}\nconsumer: ${JSON.stringify({ pending: ci.num_pending, ackPending: ci.num_ack_pending, delivered: ci.delivered, ackFloor: ci.ack_floor, redelivered: ci.num_redelivered })}\nlast auditor:\n${auditor.output().slice(-3000)}`,
      )
    })
    const finalChecked = openCheckpoint(finalCp.note, verifiers, { origin }).checkpoint
    const finalSize = Number(finalChecked.size)
    expect(finalSize).toBe(finalCp.size)
    const drainedAt = Date.now()
    await auditor.stop()

    // The log on disk, read back leaf by leaf.
    const log = TileLog.open(join(th.home.data("auditor"), "log"))
    cleanup.push(() => log.close())
    const leaves: Array<Event> = log
      .entries(0, log.size)
      .map((b) => JSON.parse(Buffer.from(b).toString("utf8")) as Event)
    const leafIds = leaves.map((l) => l.id)
    expect(new Set(leafIds).size, "no event is a leaf twice").toBe(leafIds.length)

    // The whole of VIGIL_EVENTS (our events plus the auditor's own checkpoint.signed) is the log, in stream order.
    const stream = await readStream(admin, STREAM_EVENTS, undefined, 60_000)
    const streamSeqOf = new Map(stream.map((m) => [m.json<{ id: string }>().id, m.seq]))
    const leafSet = new Set(leafIds)
    const notLeaves = stream.filter((m) => !leafSet.has(m.json<{ id: string }>().id)).map((m) => m.seq)
    expect(notLeaves, "stream sequences whose event is not a leaf").toEqual([])
    const outOfOrder = leafIds.flatMap((id, i) => {
      const seq = streamSeqOf.get(id) ?? -1
      const before = i === 0 ? 0 : (streamSeqOf.get(leafIds[i - 1] as string) ?? -1)
      return seq > before ? [] : [{ index: i, seq, before }]
    })
    if (outOfOrder.length > 0 || process.env.VIGIL_TEST_DEBUG !== undefined) {
      for (const p of processes)
        console.log(
          logLines(p)
            .map((l) => JSON.stringify(l))
            .join("\n"),
        )
    }
    expect(outOfOrder, "leaves out of stream order").toEqual([])
    expect(leafIds.length).toBe(stream.length)
    const missing = published.filter((id) => !leafSet.has(id))
    expect(missing, "every published event is a leaf").toEqual([])
    const others = leaves.filter((l) => !published.includes(l.id) && l.type !== "checkpoint.signed")
    expect(others).toEqual([])
    // The final checkpoint covers every event; only the auditor's own last checkpoint events may follow it.
    expect(leaves.slice(finalSize).every((l) => l.type === "checkpoint.signed")).toBe(true)
    expect(Buffer.from(log.rootAt(finalSize)).equals(Buffer.from(finalChecked.rootHash))).toBe(true)

    // Every checkpoint ever published is signed by the auditor and consistent with the final tree.
    // Every checkpoint ever published (the notes on vigil.audit.checkpoint and those carried by the checkpoint.signed
    // events) is signed by the auditor and consistent with the final tree.
    const notes = await readStream(admin, STREAM_AUDIT, AUDIT_CHECKPOINT_SUBJECT)
    expect(notes.length).toBeGreaterThan(5)
    const announced = leaves.filter((l) => l.type === "checkpoint.signed") as unknown as Array<
      Event<"checkpoint.signed">
    >
    const allNotes = new Set([
      ...notes.map((m) => new TextDecoder().decode(m.data)),
      ...announced.map((e) => e.data.note),
    ])
    for (const note of allNotes) {
      const { checkpoint } = openCheckpoint(note, verifiers, { origin })
      const size = Number(checkpoint.size)
      const proof = log.consistencyProof(size, finalSize)
      expect(verifyConsistency(size, finalSize, proof, checkpoint.rootHash, finalChecked.rootHash)).toEqual({
        ok: true,
      })
    }

    // One OCSF record per leaf (the msg-id de-duplicates re-sent records), and the durable is drained.
    expect(await countStored(admin, STREAM_AUDIT, "vigil.audit.ocsf.>")).toBe(log.size)
    const ci = await consumerInfo(admin, STREAM_EVENTS, "auditor")
    expect(ci.num_pending).toBe(0)
    expect(ci.num_ack_pending).toBe(0)

    const lines = processes.flatMap(logLines)
    const redelivered = lines
      .filter((l) => l.msg === "redelivered events already in the log")
      .reduce((n, l) => n + Number(l.count ?? 0), 0)
    const late = lines.filter((l) => String(l.msg).startsWith("events delivered after later ones were committed"))
    expect(late, "late deliveries appended out of order").toEqual([])
    const holds = lines.filter((l) => String(l.msg).startsWith("holding events received past a gap"))
    console.log(
      `auditor crash run: ${kills} SIGKILLs, ${N} events published in ${((publishedAt - t0) / 1000).toFixed(1)} s, ` +
        `drained ${((drainedAt - publishedAt) / 1000).toFixed(1)} s later; ${log.size} leaves ` +
        `(${log.size - N} checkpoint.signed), ${notes.length} checkpoint notes published ` +
        `(${allNotes.size} distinct checkpoints verified); ` +
        `${redelivered} redelivered events recognised (already leaves: OCSF re-sent, not appended); ` +
        `${holds.length} times events past a gap were held until a killed instance's unacked deliveries came back`,
    )
  }, 90_000)
})

describe("auditor on a rolled-back store", () => {
  const cleanup: Array<() => Promise<unknown> | unknown> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it("refuses to run, names the first missing index, and raises audit-store-rolled-back", async () => {
    const server = await startNats({ secure: true })
    cleanup.push(() => server.stop())
    const th = await prepareHome(server)
    cleanup.push(() => th.remove())
    const admin = await server.connect("admin")
    cleanup.push(() => admin.close())
    const gw = await server.connect("gateway")
    cleanup.push(() => gw.close())
    const ops = await server.connect("ops")
    cleanup.push(() => ops.close())
    const js = jetstream(gw, { checkAPI: false })
    const dir = join(th.home.data("auditor"), "log")
    const backup = mkdtempSync(join(tmpdir(), "vigil-auditor-backup-"))
    cleanup.push(() => rmSync(backup, { recursive: true, force: true }))
    const env = { VIGIL_CHECKPOINT_MS: "100" }

    const publish = async (count: number, from: number) => {
      for (let i = from; i < from + count; i++) {
        const ev = signEvent(th.keys.gateway, {
          type: "task.submitted",
          session: "rollback",
          data: { channel: "cli", workspace: "/w", promptChars: i },
          blobs: { prompt: { sha256: "b".repeat(64), size: i, mediaType: "text/plain" } },
        })
        await js.publish(eventSubject("rollback", "task.submitted"), encodeEvent(ev), { msgID: ev.id })
      }
    }
    const checkpointAtLeast = (size: number) =>
      eventually(
        `a published checkpoint of at least ${size} leaves`,
        async () => {
          const r = (await ops.request(PROOF_SUBJECTS.checkpoint, "{}", { timeout: 2_000 })).json<{
            ok: boolean
            size: number
          }>()
          return r.ok && r.size >= size ? r.size : undefined
        },
        20_000,
        100,
      )

    // Two lives of the auditor; a copy of its store is taken between them, while it is stopped.
    let auditor = await startService("auditor", th, { env })
    await publish(60, 0)
    await checkpointAtLeast(60)
    expect(await auditor.stop()).toBe(0)
    cpSync(dir, backup, { recursive: true })
    const old = TileLog.open(backup)
    const oldSize = old.size
    old.close()

    auditor = await startService("auditor", th, { env })
    await publish(60, 60)
    const published = await checkpointAtLeast(oldSize + 60)
    expect(await auditor.stop()).toBe(0)

    // Roll the store back to the copy and start again: the auditor must refuse.
    rmSync(dir, { recursive: true, force: true })
    cpSync(backup, dir, { recursive: true })
    const { code, output } = await runServiceToExit("auditor", th, { env: env })
    expect(code, output).not.toBe(0)
    expect(code, output).not.toBeNull()
    expect(output).toContain(`leaves ${oldSize}..`)

    // The critical alert, signed by the auditor, names the first index the store lacks.
    const alerts = await eventually("the audit-store-rolled-back alert", async () => {
      const msgs = await readStream(admin, STREAM_EVENTS, eventSubject("audit", "alert.raised"))
      return msgs.length > 0 ? msgs : undefined
    })
    expect(alerts).toHaveLength(1)
    const verified = verifyEvent((alerts[0] as StoredMsg).data, { keys: th.chain, maxBytes: 1 << 20 })
    if (!verified.ok) throw new Error(`alert does not verify: ${verified.reason} ${verified.detail}`)
    const alert = verified.event as Event<"alert.raised">
    expect(alert.source).toBe("auditor")
    expect(alert.data.rule).toBe("audit-store-rolled-back")
    expect(alert.data.severity).toBe("critical")
    expect(alert.data.details).toMatchObject({ firstBadIndex: oldSize, storeSize: oldSize })
    expect(Number((alert.data.details as { checkpointSize: number }).checkpointSize)).toBeGreaterThanOrEqual(published)
  }, 60_000)
})

describe("AuditCore: stream order when deliveries come back out of order", () => {
  const dirs: string[] = []
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })
  const seed = randomSeed()
  const publicKey = nodeEd25519.publicKey(seed)
  const key = { principal: "gateway" as const, kid: keyIdOf(publicKey), seed, publicKey }
  const origin = "vigil/test/core"
  const notes = { signer: noteSigner(origin, key), verifier: parseVerifierKey(encodeVerifierKey(origin, publicKey)) }
  const open = (dir: string) => AuditCore.open({ dir, origin, ...notes })
  const events = Array.from({ length: 12 }, (_, i) =>
    signEvent(key, {
      type: "task.submitted",
      session: "core",
      data: { channel: "cli", workspace: "/w", promptChars: i },
      blobs: { prompt: { sha256: "c".repeat(64), size: i, mediaType: "text/plain" } },
    }),
  )
  /** Stream sequence n (1-based) carries events[n - 1]. */
  const at = (...seqs: number[]) => seqs.map((streamSeq) => ({ event: events[streamSeq - 1] as Event, streamSeq }))
  const leafIds = (core: AuditCore) =>
    core.log.entries(0, core.size).map((b) => (JSON.parse(Buffer.from(b).toString("utf8")) as Event).id)
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), "vigil-core-"))
    dirs.push(dir)
    return dir
  }

  it("holds events past a gap (durably, across a restart) and appends them once the gap is filled", () => {
    const dir = fresh()
    let core = open(dir)
    expect(core.append(at(1, 2)).appended).toHaveLength(2)
    // 3 and 4 were delivered to a killed instance; 5 and 6 arrive first.
    expect(core.hasGap(at(5, 6))).toBe(true)
    const held = core.append(at(5, 6), 2)
    expect(held.appended).toHaveLength(0)
    expect(held.held).toBe(2)
    expect(core.size).toBe(2)
    core.log.close()
    core = open(dir) // a crash here: 5 and 6 were acked, only the held file has them
    expect(core.heldCount).toBe(2)
    const filled = core.append(at(4, 3), 2)
    expect(filled.appended.map((a) => a.streamSeq)).toEqual([3, 4, 5, 6])
    expect(filled.late).toEqual([])
    expect(core.unpublished().map((u) => u.streamSeq)).toEqual([5, 6])
    core.log.close()
    core = open(dir) // a crash before their records were out: still owed after the restart
    expect(core.unpublished().map((u) => [u.streamSeq, u.index])).toEqual([
      [5, 4],
      [6, 5],
    ])
    core.settle()
    expect(core.unpublished()).toEqual([])
    expect(leafIds(core)).toEqual(events.slice(0, 6).map((e) => e.id))
    // Redeliveries of what is in the log are recognised, not appended.
    expect(core.append(at(3, 5)).redelivered.map((r) => r.index)).toEqual([2, 4])
    core.log.close()
    core = open(dir)
    expect(core.heldCount).toBe(0)
    expect(core.unpublished()).toEqual([])
    core.log.close()
  })

  it("skips a gap the ack floor shows was acked (dead-lettered), and ignores a torn held line", () => {
    const dir = fresh()
    let core = open(dir)
    core.append(at(1))
    expect(core.append(at(3), 1).held).toBe(1)
    // Sequence 2 was dead-lettered: the ack floor passes it, and 3 goes in.
    const out = core.append(at(4), 2)
    expect(out.appended.map((a) => a.streamSeq)).toEqual([3, 4])
    expect(core.lastStreamSeq).toBe(4)
    expect(core.append(at(7), 4).held).toBe(1)
    core.log.close()
    appendFileSync(join(dir, HELD_FILE), '{"seq":8,"event":{"id":"torn')
    core = open(dir)
    expect(core.heldCount).toBe(1)
    expect(core.append(at(6, 5), 4).appended.map((a) => a.streamSeq)).toEqual([5, 6, 7])
    core.log.close()
  })

  it("signs no checkpoint for the auditor's own checkpoint events", () => {
    const dir = fresh()
    const core = open(dir)
    core.append(at(1, 2))
    const first = core.signCheckpoint()
    expect(first?.size).toBe(2)
    const announce = signEvent(key, {
      type: "checkpoint.signed",
      session: "audit",
      data: { origin, size: 2, root: Buffer.from(core.log.rootAt(2)).toString("base64"), note: first?.note ?? "" },
    })
    core.append([{ event: announce, streamSeq: 3 }])
    expect(core.signCheckpoint()).toBeUndefined()
    core.append(at(4))
    expect(core.signCheckpoint()?.size).toBe(4)
    core.log.close()
  })
})
