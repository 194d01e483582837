import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { connect, nkeyAuthenticator } from "@nats-io/transport-node"
import { HEALTH_ALL, inboxPrefix, SERVICES } from "@vigil/events"
import { isAlive } from "@vigil/runtime"
import { freePort, startNats } from "@vigil/test"
import { afterAll, describe, expect, it } from "vitest"

const REPO = resolve(import.meta.dirname, "..")
const CLI = join(REPO, "cli", "src", "main.ts")

interface Ready {
  event: "ready"
  nats: string
  natsPid: number | null
  services: Array<{ name: string; pid: number }>
  manifestVersion: number
}

const homes: string[] = []
const procs: ChildProcess[] = []
afterAll(() => {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL")
  for (const h of homes) rmSync(h, { recursive: true, force: true })
})

/** `vigil up --json` as a user runs it; resolves with the ready line, or rejects with the output on early exit. */
const vigilUp = (home: string, port: number, auditPort = port + 1) => {
  const args = ["up", "--json", "--home", home, "--port", String(port), "--audit-port", String(auditPort)]
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  })
  procs.push(child)
  let out = ""
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
  const ready = new Promise<Ready>((resolveReady, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      for (const line of out.split("\n")) {
        if (line.startsWith("{") && line.includes('"event":"ready"')) resolveReady(JSON.parse(line) as Ready)
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    exited.then((code) => reject(new Error(`vigil up exited with ${code} before ready:\n${out}`)))
  })
  return { child, ready, exited, output: () => out }
}

/** One fresh heartbeat from each service, read as the ops user. */
const healthAll = async (url: string, home: string) => {
  const nc = await connect({
    servers: url,
    inboxPrefix: inboxPrefix("ops"),
    authenticator: nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(join(home, "nats", "ops.nk"), "utf8").trim()),
    ),
  })
  try {
    const seen = new Map<string, Record<string, unknown>>()
    const sub = nc.subscribe(HEALTH_ALL)
    const deadline = setTimeout(() => sub.unsubscribe(), 10_000)
    for await (const m of sub) {
      const h = m.json<Record<string, unknown>>()
      seen.set(h.service as string, h)
      if (seen.size === SERVICES.length) break
    }
    clearTimeout(deadline)
    return SERVICES.map((s) => seen.get(s))
  } finally {
    await nc.close()
  }
}

describe("vigil up", () => {
  it("brings up the embedded nats-server and six healthy services, and SIGTERM leaves no process behind", async () => {
    const home = mkdtempSync(join(tmpdir(), "vigil-up-"))
    homes.push(home)
    const port = await freePort()
    const auditPort = await freePort()
    const run = vigilUp(home, port, auditPort)
    const ready = await run.ready
    expect(ready.nats).toBe(`nats://127.0.0.1:${port}`)
    expect(ready.natsPid).toBeGreaterThan(0)
    expect(ready.services.map((s) => s.name).sort()).toEqual([...SERVICES].sort())
    const pids = [ready.natsPid as number, ...ready.services.map((s) => s.pid)]
    for (const pid of pids) expect(isAlive(pid)).toBe(true)

    // A heartbeat from each service over the secured bus, readable by the ops user.
    const health = await healthAll(ready.nats, home)
    for (const [i, h] of health.entries()) {
      expect(h).toMatchObject({ service: SERVICES[i], ok: true, manifestVersion: 1 })
    }

    // The auditor's read-only HTTP answers on loopback (no events yet, so no checkpoint).
    const cp = await fetch(`http://127.0.0.1:${auditPort}/checkpoint`)
    expect(cp.status).toBe(404)
    expect(await cp.text()).toMatch(/no checkpoint/)

    run.child.kill("SIGTERM")
    expect(await run.exited).toBe(0)
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} still alive after SIGTERM`).toBe(false)

    // A second start on the same home keeps the keys: the manifest stays at version 1, and it stops cleanly again.
    const again = vigilUp(home, port, auditPort)
    const ready2 = await again.ready
    expect(ready2.manifestVersion).toBe(1)
    again.child.kill("SIGINT")
    expect(await again.exited).toBe(0)
    for (const pid of [ready2.natsPid as number, ...ready2.services.map((s) => s.pid)]) expect(isAlive(pid)).toBe(false)
  }, 120_000)

  it("services and the embedded nats-server stop by themselves when the supervisor is killed with SIGKILL", async () => {
    const home = mkdtempSync(join(tmpdir(), "vigil-up-"))
    homes.push(home)
    const run = vigilUp(home, await freePort(), await freePort())
    const ready = await run.ready
    run.child.kill("SIGKILL")
    await run.exited
    const pids = ready.services.map((s) => s.pid)
    expect(ready.natsPid).not.toBeNull()
    const all = [...pids, ready.natsPid as number]
    const deadline = Date.now() + 15_000
    while (all.some(isAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    for (const pid of pids) expect(isAlive(pid), `service pid ${pid} outlived its supervisor`).toBe(false)
    const natsLeft = isAlive(ready.natsPid as number)
    if (natsLeft) process.kill(ready.natsPid as number, "SIGTERM")
    expect(natsLeft, "the embedded nats-server outlived its supervisor").toBe(false)
  }, 60_000)

  it("refuses a port held by a server that is not Vigil's bus", async () => {
    const foreign = await startNats()
    const home = mkdtempSync(join(tmpdir(), "vigil-up-"))
    homes.push(home)
    try {
      const run = vigilUp(home, foreign.port)
      await expect(run.ready).rejects.toThrow(/not this Vigil's bus/)
      expect(await run.exited).not.toBe(0)
    } finally {
      await foreign.stop()
    }
  }, 60_000)
})
