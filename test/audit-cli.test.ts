import { type ChildProcess, execFile, spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { type JetStreamClient, jetstream } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { type Event, encodeEvent, eventSubject, newEventId, PROOF_SUBJECTS, type Principal } from "@vigil/events"
import { eventually, type NatsServer, prepareHome, startNats, startService, type TestHome } from "@vigil/test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { sampleEvents, sampleSession } from "../cli/src/audit-sample.ts"

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

const jsonLines = (text: string): Array<Record<string, unknown>> =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>)

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

describe("vigil audit tail", () => {
  it("prints the last 5 events of VIGIL_EVENTS as JSON lines", async () => {
    const r = await vigil("tail", "--json", "--n", "5", "--home", th.home.root, "--nats", server.url)
    expect(r.code, r.stderr).toBe(0)
    const lines = jsonLines(r.stdout)
    expect(lines).toHaveLength(5)
    const seqs = lines.map((l) => l.seq as number)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    for (const l of lines) {
      expect(l.subject).toBe(`vigil.ev.${l.session}.${l.type}`)
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
})
