import { type ChildProcess, execFile, spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { type JetStreamClient, jetstream } from "@nats-io/jetstream"
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node"
import { randomSeed } from "@vigil/crypto"
import { type Event, encodeEvent, eventSubject, newEventId, PROOF_SUBJECTS, type Principal } from "@vigil/events"
import { signingKeyOf } from "@vigil/keys"
import { openCheckpoint, parseVerifierKey } from "@vigil/note"
import {
  eventually,
  jsonLines,
  type NatsServer,
  prepareHome,
  sampleEvents,
  sampleSession,
  startNats,
  startService,
  type TestHome,
} from "@vigil/test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * `vigil audit proof` and `vigil audit tail` against a live auditor on a secured nats-server, run as the CLI would
 * be (`node cli/src/main.ts audit …`), connecting as the `ops` user of the home.
 */

const MAIN = resolve(import.meta.dirname, "..", "cli", "src", "main.ts")
const run = promisify(execFile)

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const vigil = async (...args: string[]): Promise<Ran> => {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, "audit", ...args], { timeout: 20_000 })
    return { code: 0, stdout, stderr }
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof err.code === "number" ? err.code : -1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" }
  }
}

let server: NatsServer
let th: TestHome
let events: Event[]
const publishers = new Map<Principal, { nc: NatsConnection; js: JetStreamClient }>()
const cleanup: Array<() => Promise<unknown> | unknown> = []

const publish = async (ev: Event) => {
  let p = publishers.get(ev.source)
  if (p === undefined) {
    const nc = await server.connect(ev.source as "gateway")
    p = { nc, js: jetstream(nc, { checkAPI: false }) }
    publishers.set(ev.source, p)
  }
  await p.js.publish(eventSubject(ev.session, ev.type), encodeEvent(ev), { msgID: ev.id })
}

beforeAll(async () => {
  server = await startNats({ secure: true })
  cleanup.push(() => server.stop())
  th = await prepareHome(server)
  cleanup.push(() => th.remove())
  const auditor = await startService("auditor", th, { env: { VIGIL_CHECKPOINT_MS: "200" } })
  cleanup.push(() => auditor.stop())
  cleanup.push(async () => {
    for (const p of publishers.values()) await p.nc.close()
  })
  events = sampleEvents(th.keys, 45)
  for (const ev of events) await publish(ev)
  const ops = await server.connect("ops")
  try {
    await eventually(
      "a checkpoint covering the published events",
      async () => {
        const r = (await ops.request(PROOF_SUBJECTS.checkpoint, "{}", { timeout: 2_000 })).json<{
          ok: boolean
          size: number
        }>()
        return r.ok && r.size >= events.length ? r : undefined
      },
      20_000,
    )
  } finally {
    await ops.close()
  }
}, 60_000)

afterAll(async () => {
  for (const c of cleanup.reverse()) await c()
})

describe("vigil audit proof", () => {
  it("proves and verifies a published event's inclusion under the signed checkpoint", async () => {
    const target = events[17]!
    const human = await vigil("proof", target.id, "--home", th.home.root, "--nats", server.url)
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toContain(`event     ${target.id} (${target.type}`)
    expect(human.stdout).toMatch(/^leaf {6}\d+ of \d+$/m)
    expect(human.stdout).toMatch(/^root {6}\S{44} \(checkpoint signed by vigil\//m)
    expect(human.stdout).toMatch(/^verified: /m)

    const answer =
      jsonLines((await vigil("proof", target.id, "--home", th.home.root, "--nats", server.url, "--json")).stdout)[0] ??
      {}
    expect(answer).toMatchObject({ ok: true, verified: true, id: target.id, type: target.type, source: target.source })
    expect(answer.index as number).toBeLessThan(answer.size as number)
    expect((answer.proof as string[]).length).toBeGreaterThan(0)
  })

  it("takes the bus URL from <home>/run/up.json when --nats is not given", async () => {
    writeFileSync(join(th.home.run, "up.json"), `${JSON.stringify({ pid: process.pid, nats: server.url })}\n`)
    const r = await vigil("proof", events[3]!.id, "--home", th.home.root)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^verified: /m)
  })

  it("exits non-zero with a clear message for an id the log does not hold", async () => {
    const unknown = newEventId()
    const r = await vigil("proof", unknown, "--home", th.home.root, "--nats", server.url)
    expect(r.code).toBe(1)
    expect(r.stdout).not.toContain("verified")
    expect(r.stderr).toContain(`the auditor's log has no event ${unknown}`)
    const [j] = jsonLines(
      (await vigil("proof", unknown, "--home", th.home.root, "--nats", server.url, "--json")).stdout,
    )
    expect(j).toMatchObject({ ok: false })
  })
})

describe("vigil audit key", () => {
  it("prints the verifier key that opens the checkpoint the running auditor serves", async () => {
    const r = await vigil("key", "--home", th.home.root)
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.trimEnd().split("\n")
    expect(lines).toHaveLength(1)
    // Only the printed text, as an outside signed-note verifier would take it.
    const vkey = parseVerifierKey(lines[0]!)
    const ops = await server.connect("ops")
    try {
      const cp = (await ops.request(PROOF_SUBJECTS.checkpoint, "{}", { timeout: 2_000 })).json<{
        ok: boolean
        note: string
      }>()
      expect(cp.ok).toBe(true)
      const { checkpoint } = openCheckpoint(cp.note, [vkey], { origin: vkey.name })
      expect(Number(checkpoint.size)).toBeGreaterThanOrEqual(events.length)
    } finally {
      await ops.close()
    }
  })
})

describe("vigil audit tail", () => {
  it("says so when there is nothing to show (on stderr; stdout stays the items alone)", async () => {
    const empty = await startNats({ secure: true })
    const eh = await prepareHome(empty)
    try {
      for (const args of [["--json"], [], ["--ocsf"]]) {
        const r = await vigil("tail", ...args, "--home", eh.home.root, "--nats", empty.url)
        expect(r.code, r.stderr).toBe(0)
        expect(r.stdout).toBe("")
        expect(r.stderr).toMatch(
          args[0] === "--ocsf" ? /no OCSF records in VIGIL_AUDIT yet/ : /no events in VIGIL_EVENTS yet/,
        )
      }
    } finally {
      eh.remove()
      await empty.stop()
    }
  })

  it("prints the last 5 events of VIGIL_EVENTS as JSON lines", async () => {
    const r = await vigil("tail", "--json", "--n", "5", "--home", th.home.root, "--nats", server.url)
    expect(r.code, r.stderr).toBe(0)
    const lines = jsonLines(r.stdout)
    expect(lines).toHaveLength(5)
    const seqs = lines.map((l) => l.seq as number)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    for (const l of lines) {
      expect(l.subject).toBe(`vigil.ev.${l.session}.${l.type}`)
      expect(l.verified).toBe(true)
      expect((l.event as { id: string }).id).toBe(l.id)
    }
    // Our own events are in the stream (the auditor's checkpoint.signed events may come after them).
    const ids = new Set(events.map((e) => e.id))
    const all = jsonLines(
      (await vigil("tail", "--json", "--n", "200", "--home", th.home.root, "--nats", server.url)).stdout,
    )
    expect(all.filter((l) => ids.has(l.id as string))).toHaveLength(events.length)
  })

  it("prints OCSF records with their leaf indexes (--ocsf), as JSON and as lines", async () => {
    const r = await vigil("tail", "--ocsf", "--json", "--n", "5", "--home", th.home.root, "--nats", server.url)
    expect(r.code, r.stderr).toBe(0)
    const lines = jsonLines(r.stdout)
    expect(lines).toHaveLength(5)
    for (const l of lines) {
      expect(l.subject as string).toMatch(/^vigil\.audit\.ocsf\./)
      expect(l.verified).toBe(true)
      expect(Number.isSafeInteger(l.leafIndex)).toBe(true)
      expect((l.record as { metadata: { uid: string } }).metadata.uid).toBe(l.id)
    }
    const human = await vigil("tail", "--ocsf", "--n", "3", "--home", th.home.root, "--nats", server.url)
    expect(human.code, human.stderr).toBe(0)
    const rows = human.stdout.trim().split("\n")
    expect(rows).toHaveLength(3)
    for (const row of rows) expect(row).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}\S.*\/\S.*\s[0-9A-Z]{26} {2}leaf \d+$/)
  })

  it("--follow prints new events as they are stored, until interrupted", async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [MAIN, "audit", "tail", "--follow", "--json", "--n", "0", "--home", th.home.root, "--nats", server.url],
      { stdio: ["ignore", "pipe", "pipe"] },
    )
    cleanup.push(() => child.exitCode === null && child.kill("SIGKILL"))
    let out = ""
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString()
    })
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
    // The follower reads on from the stream's last sequence when it starts: publish until it prints one of ours.
    const ours = new Set<string>()
    let queue: Event[] = []
    await eventually(
      "the follower to print a newly published event",
      async () => {
        if (queue.length === 0) queue = sampleSession(th.keys, `follow${ours.size}`)
        const ev = queue.shift()!
        ours.add(ev.id)
        await publish(ev)
        const complete = out.slice(0, out.lastIndexOf("\n") + 1)
        return jsonLines(complete).some((l) => ours.has(l.id as string)) ? true : undefined
      },
      20_000,
      300,
    )
    child.kill("SIGINT")
    expect(await exited).toBe(0)
  })
  it("verifies what it shows: forged events on a service's own subject and a forged OCSF record are marked REFUSED", async () => {
    // As the gateway NATS user, on gateway's own subjects: one signed by a key no manifest grants, one whose data
    // was changed after signing, and a valid one.
    const [unknownKey] = sampleSession({ ...th.keys, gateway: signingKeyOf("gateway", randomSeed()) }, "tailforged")
    const [orig] = sampleSession(th.keys, "tailtampered")
    const [valid] = sampleSession(th.keys, "tailvalid")
    const tampered = { ...orig!, data: { ...(orig as Event<"task.submitted">).data, promptChars: 4096 } } as Event
    for (const ev of [unknownKey!, tampered, valid!]) await publish(ev)

    const r = await vigil("tail", "--json", "--n", "60", "--home", th.home.root, "--nats", server.url)
    expect(r.code, r.stderr).toBe(0)
    const lines = jsonLines(r.stdout)
    const claiming = (id: string) => lines.filter((l) => (l.claimed as { id?: string } | undefined)?.id === id)
    expect(lines.filter((l) => l.id === valid!.id)).toEqual([
      expect.objectContaining({
        verified: true,
        type: "task.submitted",
        event: expect.objectContaining({ id: valid!.id }),
      }),
    ])
    for (const [ev, reason] of [
      [unknownKey!, "unknown_key"],
      [tampered, "bad_signature"],
    ] as const) {
      expect(lines.some((l) => l.id === ev.id)).toBe(false)
      const [line, ...more] = claiming(ev.id)
      expect(more).toHaveLength(0)
      expect(line).toMatchObject({ verified: false, status: "refused", reason, claimed: { type: "task.submitted" } })
      expect(line).not.toHaveProperty("event")
      expect(line).not.toHaveProperty("id")
    }

    // Text: entries start with their time; a forgery starts with REFUSED and its reason, and stderr says so.
    const text = await vigil("tail", "--n", "60", "--home", th.home.root, "--nats", server.url)
    expect(text.code, text.stderr).toBe(0)
    const rows = text.stdout.trim().split("\n")
    const rowOf = (id: string) => rows.filter((row) => row.includes(id))
    expect(rowOf(valid!.id)).toEqual([expect.stringMatching(/^\d{4}-\d\d-\d\dT\S+Z {2}task\.submitted /)])
    expect(rowOf(unknownKey!.id)).toEqual([
      expect.stringMatching(/^REFUSED unknown_key: seq \d+ vigil\.ev\.tailforged\./),
    ])
    expect(rowOf(tampered.id)).toEqual([expect.stringMatching(/^REFUSED bad_signature: /)])
    expect(text.stderr).toMatch(/did not verify/)

    // An OCSF record is checked against the auditor's log: a record (published with the auditor's rights, here
    // admin's) that points at another event's leaf is refused; the real records verify.
    const [real] = jsonLines(
      (await vigil("tail", "--ocsf", "--json", "--n", "1", "--home", th.home.root, "--nats", server.url)).stdout,
    )
    expect(real).toMatchObject({ verified: true })
    const record = structuredClone(real!.record) as { unmapped: { vigil: { leaf_index: number } } }
    const elsewhere = (real!.leafIndex as number) - 1
    record.unmapped.vigil.leaf_index = elsewhere
    const admin = await server.connect("admin")
    try {
      const h = natsHeaders()
      h.set("Vigil-Event-Id", real!.id as string)
      h.set("Vigil-Leaf-Index", String(elsewhere))
      await jetstream(admin).publish(real!.subject as string, JSON.stringify(record), {
        msgID: newEventId(),
        headers: h,
      })
    } finally {
      await admin.close()
    }
    const ocsf = jsonLines(
      (await vigil("tail", "--ocsf", "--json", "--n", "40", "--home", th.home.root, "--nats", server.url)).stdout,
    )
    const forged = ocsf.filter((l) => l.verified === false)
    expect(forged).toEqual([expect.objectContaining({ status: "refused", reason: "record_mismatch" })])
    expect((forged[0]!.claimed as { leafIndex: number }).leafIndex).toBe(elsewhere)
  })
})
