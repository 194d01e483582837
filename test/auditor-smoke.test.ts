import { jetstream } from "@nats-io/jetstream"
import { logOrigin, noteVerifiers } from "@vigil/auditlog"
import { encodeEvent, eventSubject, PROOF_SUBJECTS, signEvent } from "@vigil/events"
import { leafHash, verifyInclusion } from "@vigil/merkle"
import { openCheckpoint } from "@vigil/note"
import { eventually, prepareHome, startNats, startService } from "@vigil/test"
import { afterAll, describe, expect, it } from "vitest"

describe("auditor process", () => {
  const cleanup: Array<() => unknown> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it("appends published events, signs a checkpoint, and proves inclusion to ops", async () => {
    const server = await startNats({ secure: true })
    cleanup.push(() => server.stop())
    const th = await prepareHome(server)
    cleanup.push(() => th.remove())
    const auditor = await startService("auditor", th, { env: { VIGIL_CHECKPOINT_MS: "200" } })
    cleanup.push(() => auditor.stop())
    const gw = await server.connect("gateway")
    cleanup.push(() => gw.close())
    const js = jetstream(gw, { checkAPI: false })
    const events = []
    for (let i = 0; i < 50; i++) {
      const ev = signEvent(th.keys.gateway, {
        type: "task.submitted",
        session: "smoke",
        data: { channel: "cli", workspace: "/w", promptChars: i },
        blobs: { prompt: { sha256: "a".repeat(64), size: i, mediaType: "text/plain" } },
      })
      events.push(ev)
      await js.publish(eventSubject("smoke", "task.submitted"), encodeEvent(ev), { msgID: ev.id })
    }
    const ops = await server.connect("ops")
    cleanup.push(() => ops.close())
    const origin = logOrigin(th.chain)
    const verifiers = noteVerifiers(origin, th.chain)
    const cp = await eventually(
      "a checkpoint covering 50 events",
      async () => {
        const r = (await ops.request(PROOF_SUBJECTS.checkpoint, "{}", { timeout: 2_000 })).json<{
          ok: boolean
          size: number
          note: string
        }>()
        return r.ok && r.size >= 50 ? r : undefined
      },
      20_000,
    )
    const { checkpoint } = openCheckpoint(cp.note, verifiers, { origin })
    const target = events[17]!
    const proof = (
      await ops.request(PROOF_SUBJECTS.inclusion, JSON.stringify({ id: target.id }), { timeout: 2_000 })
    ).json<{
      ok: boolean
      index: number
      size: number
      leaf: string
      proof: string[]
    }>()
    expect(proof.ok).toBe(true)
    expect(Buffer.from(proof.leaf, "base64").equals(Buffer.from(encodeEvent(target)))).toBe(true)
    const r = verifyInclusion(
      proof.index,
      Number(checkpoint.size),
      leafHash(encodeEvent(target)),
      proof.proof.map((p) => new Uint8Array(Buffer.from(p, "base64"))),
      checkpoint.rootHash,
    )
    expect(r).toEqual({ ok: true })
  }, 60_000)
})
