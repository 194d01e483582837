import { jetstream } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { logOrigin, noteVerifiers } from "@vigil/auditlog"
import { jetStreamOptions } from "@vigil/bus"
import {
  blobRefOf,
  type Draft,
  type Event,
  type EventType,
  encodeEvent,
  eventHash,
  eventSubject,
  PROOF_SUBJECTS,
  type Principal,
  SIEM_DURABLE,
  STREAM_AUDIT,
  signEvent,
  verifyEvent,
} from "@vigil/events"
import { leafHash, verifyInclusion } from "@vigil/merkle"
import { openCheckpoint } from "@vigil/note"
import { validateOcsf } from "@vigil/ocsf"
import { eventually, prepareHome, startNats, startService } from "@vigil/test"
import { afterAll, describe, expect, it } from "vitest"

/**
 * A SIEM's view of the audit feed: connected as the read-only `siem` NATS user, it pulls OCSF records from its
 * durable on VIGIL_AUDIT for a realistic session that touches every OCSF class Vigil emits, checks each record, then
 * asks the auditor for an inclusion proof of one record's event and verifies it against a signed checkpoint.
 */

const SECRET = "CANARY-5e1d-siem-must-never-see-this"
const SESSION = "sess_siem-01"
const CORRELATION = "task_q3-siem"
const utf8 = new TextEncoder()
const blob = (text: string) => blobRefOf(utf8.encode(text), "text/plain; charset=utf-8")

interface OcsfRecord {
  readonly class_uid: number
  readonly activity_id: number
  readonly metadata: { readonly uid: string; readonly sequence: number }
  readonly unmapped: {
    readonly vigil: { readonly event_id: string; readonly leaf_index: number; readonly sig: string }
  }
}

describe("SIEM reader of the audit feed", () => {
  const cleanup: Array<() => Promise<unknown> | unknown> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it("receives a valid, content-free OCSF record per event of every class and verifies an inclusion proof", async () => {
    const server = await startNats({ secure: true })
    cleanup.push(() => server.stop())
    const th = await prepareHome(server)
    cleanup.push(() => th.remove())
    const auditor = await startService("auditor", th, { env: { VIGIL_CHECKPOINT_MS: "200" } })
    cleanup.push(() => auditor.stop())

    // Each event is signed by its catalog producer and published as that producer's NATS user.
    const conns = new Map<Principal, NatsConnection>()
    const connFor = async (p: Principal) => {
      let nc = conns.get(p)
      if (nc === undefined) {
        nc = await server.connect(p as "gateway")
        conns.set(p, nc)
        cleanup.push(() => nc?.close())
      }
      return nc
    }
    const published: Array<{ event: Event; expect: number }> = []
    const emit = async <T extends EventType>(
      principal: Principal,
      expectClass: number,
      draft: Omit<Draft<T>, "session" | "correlation" | "trace">,
    ): Promise<Event<T>> => {
      const event = signEvent(th.keys[principal], {
        ...draft,
        session: SESSION,
        correlation: CORRELATION,
        trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      } as Draft<T>)
      const js = jetstream(await connFor(principal), { checkAPI: false })
      await js.publish(eventSubject(SESSION, event.type), encodeEvent(event), { msgID: event.id })
      published.push({ event, expect: expectClass })
      return event
    }

    // A session: the user's task, DLP screening, three tool calls (file, process, network) through policy and the
    // sandbox, DLP on the output, and the released answer. Secrets appear only in blobs and free text.
    const prompt = `Total the Q3 sheet and send it to the partner; my IBAN is ${SECRET}`
    const task = await emit("gateway", 6003, {
      type: "task.submitted",
      data: { channel: "ui", workspace: "/home/ana/Documents", promptChars: prompt.length },
      blobs: { prompt: blob(prompt) },
    })
    await emit("dlp", 2004, {
      type: "prompt.screened",
      causation: task.id,
      data: {
        task: task.id,
        verdict: "masked",
        findings: [{ detector: "iban", kind: "financial", count: 1, score: 0.97, field: "prompt" }],
      },
      blobs: { masked: blob(prompt.replace(SECRET, "[IBAN]")) },
    })
    const calls = [
      { tool: "fs.read", args: { path: "/home/ana/Documents/q3.xlsx" }, cls: 1001 },
      { tool: "shell.exec", args: { cmd: `grep -r ${SECRET} .`, cwd: "/home/ana/Documents" }, cls: 1007 },
      { tool: "net.fetch", args: { url: `https://partner.example/upload?token=${SECRET}`, method: "POST" }, cls: 4001 },
    ] as const
    let step = 0
    const actions: Event[] = []
    for (const call of calls) {
      step += 1
      const intent = await emit("inference", 6003, {
        type: "intent.proposed",
        causation: task.id,
        data: { tool: call.tool, args: call.args, reason: `The user asked about ${SECRET}`, step },
      })
      await emit("dlp", 6003, {
        type: "intent.screened",
        causation: intent.id,
        data: { intent: intent.id, verdict: "clean", findings: [] },
      })
      const decision = await emit("policy", 6003, {
        type: "decision.made",
        causation: intent.id,
        data: {
          intent: intent.id,
          intentHash: eventHash(intent),
          effect: "allow",
          rules: ["workspace-read", "egress-allowlist"],
          explanation: `Allowed because ${SECRET} is in the workspace`,
          obligations: [{ kind: "max-bytes", bytes: 1_000_000 }],
          bundle: "a".repeat(64),
          dataClass: "internal",
        },
      })
      const started = await emit("sandbox", call.cls, {
        type: "action.started",
        causation: decision.id,
        data: { decision: decision.id, intent: intent.id, tool: call.tool, tier: "os" },
      })
      actions.push(started)
      await emit("sandbox", call.cls, {
        type: "action.completed",
        causation: started.id,
        data: { action: started.id, exitCode: 0, durationMs: 42 },
        blobs: { output: blob(`output mentioning ${SECRET}`) },
      })
      await emit("dlp", 2004, {
        type: "result.screened",
        causation: started.id,
        data: {
          action: started.id,
          verdict: "masked",
          findings: [{ detector: "aws-key", kind: "secret", count: 1, score: 0.91 }],
        },
        blobs: { masked: blob("masked output [SECRET]") },
      })
    }
    const answerText = `Sent. The total is 4,200; account ${SECRET}`
    const answer = await emit("inference", 6003, {
      type: "answer.proposed",
      causation: task.id,
      data: { task: task.id, step: step + 1 },
      blobs: { answer: blob(answerText) },
    })
    await emit("dlp", 6003, {
      type: "answer.released",
      causation: answer.id,
      data: { answer: answer.id, verdict: "clean", findings: [] },
      blobs: { answer: blob(answerText) },
    })

    // The SIEM: read-only user, its pre-created durable, pull and ack.
    const siem = await server.connect("siem")
    cleanup.push(() => siem.close())
    const consumer = await jetstream(siem, jetStreamOptions("siem")).consumers.get(STREAM_AUDIT, SIEM_DURABLE)
    const byId = new Map<string, { record: OcsfRecord; subject: string; text: string; leafHeader: string }>()
    const wanted = new Set(published.map((p) => p.event.id))
    const deadline = Date.now() + 30_000
    while ([...wanted].some((id) => !byId.has(id)) && Date.now() < deadline) {
      const batch = await consumer.fetch({ max_messages: 64, expires: 1_000 })
      for await (const m of batch) {
        if (m.subject.startsWith("vigil.audit.ocsf.")) {
          const text = m.string()
          const record = JSON.parse(text) as OcsfRecord
          byId.set(record.metadata.uid, {
            record,
            subject: m.subject,
            text,
            leafHeader: m.headers?.get("Vigil-Leaf-Index") ?? "",
          })
        }
        m.ack()
      }
    }
    expect(
      [...wanted].filter((id) => !byId.has(id)),
      "events without an OCSF record",
    ).toEqual([])

    const classes = new Set<number>()
    for (const { event, expect: cls } of published) {
      const got = byId.get(event.id)
      if (got === undefined) throw new Error(`no record for ${event.id}`)
      const { record, text } = got
      const label = `${event.type} ${event.id}`
      expect(validateOcsf(record), label).toEqual([])
      expect(record.class_uid, label).toBe(cls)
      expect(record.metadata.uid, label).toBe(event.id)
      expect(record.unmapped.vigil.event_id, label).toBe(event.id)
      expect(record.unmapped.vigil.sig, label).toBe(event.sig)
      expect(Number.isInteger(record.unmapped.vigil.leaf_index), label).toBe(true)
      expect(record.metadata.sequence, label).toBe(record.unmapped.vigil.leaf_index)
      expect(got.leafHeader, label).toBe(String(record.unmapped.vigil.leaf_index))
      expect(text.includes(SECRET), `${label} carries raw content`).toBe(false)
      expect(text.includes("Total the Q3 sheet"), `${label} carries the prompt`).toBe(false)
      classes.add(record.class_uid)
    }
    expect([...classes].sort()).toEqual([1001, 1007, 2004, 4001, 6003])
    // Leaf indexes follow publication order (one session, published one after another).
    const leaves = published.map((p) => byId.get(p.event.id)?.record.unmapped.vigil.leaf_index ?? -1)
    expect(leaves).toEqual([...leaves].sort((a, b) => a - b))
    expect(new Set(leaves).size).toBe(leaves.length)

    // An inclusion proof for the network action, asked as siem, against a checkpoint signed by the auditor.
    const target = actions[2] as Event
    const targetRecord = byId.get(target.id)?.record as OcsfRecord
    const origin = logOrigin(th.chain)
    const verifiers = noteVerifiers(origin, th.chain)
    const proof = await eventually(
      "an inclusion proof for the network action",
      async () => {
        const r = (
          await siem.request(PROOF_SUBJECTS.inclusion, JSON.stringify({ id: target.id }), { timeout: 2_000 })
        ).json<{ ok: boolean; index: number; size: number; leaf: string; proof: string[]; checkpoint?: string }>()
        return r.ok && r.checkpoint !== undefined ? r : undefined
      },
      20_000,
      100,
    )
    const { checkpoint, verified } = openCheckpoint(proof.checkpoint as string, verifiers, { origin })
    expect(verified.length).toBeGreaterThan(0)
    expect(Number(checkpoint.size)).toBe(proof.size)
    expect(proof.index).toBe(targetRecord.unmapped.vigil.leaf_index)
    const leaf = new Uint8Array(Buffer.from(proof.leaf, "base64"))
    expect(Buffer.from(leaf).equals(Buffer.from(encodeEvent(target)))).toBe(true)
    const leafEvent = verifyEvent(leaf, { keys: th.chain, maxBytes: 1 << 20 })
    expect(leafEvent.ok && leafEvent.event.sig === targetRecord.unmapped.vigil.sig).toBe(true)
    const path = proof.proof.map((p) => new Uint8Array(Buffer.from(p, "base64")))
    expect(verifyInclusion(proof.index, proof.size, leafHash(leaf), path, checkpoint.rootHash)).toEqual({ ok: true })
    // A tampered leaf does not verify against the same checkpoint.
    const forged = encodeEvent({ ...target, session: "sess_other" })
    expect(verifyInclusion(proof.index, proof.size, leafHash(forged), path, checkpoint.rootHash).ok).toBe(false)
  }, 60_000)
})
