import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { jetstream } from "@nats-io/jetstream"
import { connect, nkeyAuthenticator } from "@nats-io/transport-node"
import { auditLogDir } from "@vigil/auditlog"
import { jetStreamOptions } from "@vigil/bus"
import { encodeEvent, eventSubject, inboxPrefix, STREAM_EVENTS, signEvent } from "@vigil/events"
import { homeSigningKeys } from "@vigil/keys"
import { homeAt, isAlive, restartPolicyFromEnv, spawnChild, supervise } from "@vigil/runtime"
import { freePort, readStream } from "@vigil/test"
import { Effect } from "effect"
import { afterAll, afterEach, describe, expect, it } from "vitest"

// `vigil up` as a user runs it, with its processes killed from outside: restarts, crash loops, failed starts, and
// stopping with a dead bus. Each test gets its own home and ports.

const REPO = resolve(import.meta.dirname, "..")
const CLI = join(REPO, "cli", "src", "main.ts")

type Line = Record<string, unknown> & { event?: string; service?: string; pid?: number }

const homes: string[] = []
const procs: ChildProcess[] = []
const servers: Server[] = []
const pidsSeen = new Set<number>()
/** Each vigil up this file started; whatever a failed test left running is killed before the next test. */
const runs: Array<{ readonly child: ChildProcess; readonly pids: Set<number> }> = []
afterEach(() => {
  for (const r of runs.splice(0)) {
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL")
    for (const pid of r.pids) if (isAlive(pid)) process.kill(pid, "SIGKILL")
  }
})
afterAll(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL")
  for (const pid of pidsSeen) if (isAlive(pid)) process.kill(pid, "SIGKILL")
  for (const s of servers) s.close()
  for (const h of homes) rmSync(h, { recursive: true, force: true })
})

const RECOVER_MS = 10_000

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const vigilUp = async (
  env: Record<string, string> = {},
  auditPort?: number,
  opts: { readonly home?: string; readonly prepare?: (home: string) => void } = {},
) => {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), "vigil-sup-"))
  if (opts.home === undefined) homes.push(home)
  opts.prepare?.(home)
  const port = await freePort()
  const audit = auditPort ?? (await freePort())
  const args = ["up", "--json", "--home", home, "--port", String(port), "--audit-port", String(audit)]
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  })
  procs.push(child)
  /** Every pid this run's output named (services, nats-server, restarts). */
  const pids = new Set<number>()
  runs.push({ child, pids })
  let out = ""
  let pending = ""
  const lines: Line[] = []
  const waiters: Array<{ match: (l: Line) => boolean; resolve: (l: Line) => void }> = []
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString()
    pending += chunk.toString()
    let nl = pending.indexOf("\n")
    while (nl >= 0) {
      const text = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      nl = pending.indexOf("\n")
      if (!text.startsWith("{")) continue
      const l = JSON.parse(text) as Line
      lines.push(l)
      if (typeof l.pid === "number") {
        pidsSeen.add(l.pid)
        pids.add(l.pid)
      }
      for (const w of [...waiters]) {
        if (w.match(l)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(l)
        }
      }
    }
  })
  child.stderr.on("data", (chunk: Buffer) => {
    out += chunk.toString()
  })
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
  /** The first output line (already printed or to come) that matches, or a rejection after `ms`. */
  const next = (match: (l: Line) => boolean, ms: number, what: string) => {
    const seen = lines.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise<Line>((resolveLine, reject) => {
      const w = { match, resolve: resolveLine }
      waiters.push(w)
      const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; output:\n${out}`)), ms)
      w.resolve = (l) => {
        clearTimeout(t)
        resolveLine(l)
      }
      exited.then(() => {
        clearTimeout(t)
        reject(new Error(`vigil up exited before ${what}; output:\n${out}`))
      })
    })
  }
  const ready = next((l) => l.event === "ready", 90_000, "ready line") as Promise<
    Line & { natsPid: number; nats: string; services: Array<{ name: string; pid: number }> }
  >
  ready.then(
    (r) => {
      for (const pid of [r.natsPid, ...r.services.map((s) => s.pid)]) {
        pidsSeen.add(pid)
        pids.add(pid)
      }
    },
    () => undefined,
  )
  return { home, port, auditPort: audit, child, ready, exited, next, lines, pids, output: () => out }
}

/** Wait until `pid` is gone (reaped), at most `ms`. */
const gone = async (pid: number, ms: number) => {
  const deadline = Date.now() + ms
  while (isAlive(pid) && Date.now() < deadline) await sleep(50)
  return !isAlive(pid)
}

/** Processes (other than this one) whose command line or environment names `home`. */
const processesOf = (home: string): ReadonlyArray<string> => {
  const found: Array<string> = []
  for (const pid of readdirSync("/proc").filter((d) => /^[0-9]+$/.test(d))) {
    if (Number(pid) === process.pid) continue
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8")
      const env = readFileSync(`/proc/${pid}/environ`, "utf8")
      if (cmd.includes(home) || env.includes(home)) found.push(`${pid} ${cmd.replaceAll("\0", " ").slice(0, 100)}`)
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

const occupy = (port: number) =>
  new Promise<Server>((resolveServer, reject) => {
    const srv = createServer()
    srv.once("error", reject)
    srv.listen(port, "127.0.0.1", () => resolveServer(srv))
    servers.push(srv)
  })

describe("restart policy", () => {
  it("reads VIGIL_RESTART_MAX and VIGIL_RESTART_WINDOW_MS, with defaults, and refuses what is not a whole number", () => {
    expect(restartPolicyFromEnv({})).toEqual({
      maxRestarts: 5,
      windowMs: 60_000,
      initialBackoffMs: 250,
      maxBackoffMs: 5_000,
    })
    expect(restartPolicyFromEnv({ VIGIL_RESTART_MAX: "0", VIGIL_RESTART_WINDOW_MS: "1000" })).toMatchObject({
      maxRestarts: 0,
      windowMs: 1_000,
    })
    expect(() => restartPolicyFromEnv({ VIGIL_RESTART_MAX: "five" })).toThrow(
      /VIGIL_RESTART_MAX must be a whole number/,
    )
    expect(() => restartPolicyFromEnv({ VIGIL_RESTART_WINDOW_MS: "0" })).toThrow(/VIGIL_RESTART_WINDOW_MS/)
  })

  it("restarts a process that keeps exiting with doubling backoff, then gives up past the limit", async () => {
    const events: Array<string> = []
    const gaveUp = new Promise<string>((resolveGiveUp) => {
      const sup = supervise(
        "flaky",
        () =>
          spawnChild({
            name: "flaky",
            command: process.execPath,
            args: ["-e", "setTimeout(() => process.exit(3), 100)"],
          }),
        { maxRestarts: 3, windowMs: 60_000, initialBackoffMs: 50, maxBackoffMs: 150 },
        {
          onStartupExit: () => events.push("startup-exit"),
          onRestarting: ({ exit, delayMs, crashes }) =>
            events.push(`restarting ${crashes} in ${delayMs} (${exit.code})`),
          onRestarted: (child, previousPid) => events.push(`restarted ${child.pid !== previousPid}`),
          onGiveUp: ({ reason }) => resolveGiveUp(reason),
        },
      )
      sup.arm()
    })
    expect(await gaveUp).toBe("flaky exited 4 times within 60000 ms (at most 3 restarts allowed)")
    expect(events).toEqual([
      "restarting 1 in 50 (3)",
      "restarted true",
      "restarting 2 in 100 (3)",
      "restarted true",
      "restarting 3 in 150 (3)",
      "restarted true",
    ])
  })

  it("reports an exit before it is armed as a start-up failure, without restarting it; stop() ends a pending restart", async () => {
    const startup = await new Promise<number | null>((resolveExit) => {
      supervise(
        "early",
        () => spawnChild({ name: "early", command: process.execPath, args: ["-e", "process.exit(7)"] }),
        { maxRestarts: 5, windowMs: 60_000, initialBackoffMs: 50, maxBackoffMs: 50 },
        {
          onStartupExit: (exit) => resolveExit(exit.code),
          onRestarting: () => resolveExit(-1),
          onRestarted: () => resolveExit(-1),
          onGiveUp: () => resolveExit(-1),
        },
      )
    })
    expect(startup).toBe(7)

    let restarted = 0
    const exited = new Promise<void>((resolveExit) => {
      const sup = supervise(
        "stopped",
        () => spawnChild({ name: "stopped", command: process.execPath, args: ["-e", "process.exit(1)"] }),
        { maxRestarts: 5, windowMs: 60_000, initialBackoffMs: 300, maxBackoffMs: 300 },
        {
          onStartupExit: () => undefined,
          onRestarting: () => {
            void sup.stop(1_000).then(() => resolveExit())
          },
          onRestarted: () => {
            restarted++
          },
          onGiveUp: () => undefined,
        },
      )
      sup.arm()
    })
    await exited
    await sleep(500)
    expect(restarted).toBe(0)
  })
})

describe("vigil up supervision", () => {
  it("restarts a SIGKILLed service (healthy again in seconds, alert raised) and a SIGKILLed nats-server", async () => {
    const run = await vigilUp()
    const ready = await run.ready
    // A second vigil up on the same home is refused at once, naming the running one.
    const second = await vigilUp({}, undefined, { home: run.home })
    expect(await second.exited).toBe(1)
    expect(second.output()).toContain(`Vigil is already running on ${run.home} (pid ${run.child.pid})`)
    const pidOf = (name: string) => ready.services.find((s) => s.name === name)?.pid as number

    const recoveries: Array<string> = []
    for (const name of ["dlp", "auditor"]) {
      const old = pidOf(name)
      const killedAt = Date.now()
      process.kill(old, "SIGKILL")
      const restarted = await run.next((l) => l.event === "restarted" && l.service === name, 5_000, `${name} restart`)
      expect(restarted.previousPid).toBe(old)
      // Back within 5 s on a quiet machine (1-2 s measured); the bound leaves room for the suite's second test file
      // running beside this one on two cores.
      const recovered = await run.next(
        (l) => l.event === "recovered" && l.service === name,
        RECOVER_MS,
        `${name} healthy`,
      )
      expect(recovered.pid).toBe(restarted.pid)
      recoveries.push(`${name} ${Date.now() - killedAt} ms`)
      expect(Date.now() - killedAt).toBeLessThan(RECOVER_MS)
      expect(isAlive(restarted.pid as number)).toBe(true)
    }
    console.log(`back after SIGKILL: ${recoveries.join(", ")}`)
    const restarting = run.lines.find((l) => l.event === "restarting" && l.service === "dlp")
    expect(restarting).toMatchObject({ exit: { code: null, signal: "SIGKILL" }, delayMs: 250, crashes: 1 })
    expect(run.child.exitCode).toBeNull()

    // Each restart is on the record as an ops-signed alert.raised (rule service-restarted, severity medium).
    const admin = await connect({
      servers: ready.nats,
      inboxPrefix: inboxPrefix("admin"),
      authenticator: nkeyAuthenticator(
        new TextEncoder().encode(readFileSync(join(run.home, "nats", "admin.nk"), "utf8").trim()),
      ),
    })
    try {
      const deadline = Date.now() + 10_000
      let alerts: Array<Record<string, unknown>> = []
      while (Date.now() < deadline) {
        alerts = (await readStream(admin, STREAM_EVENTS, eventSubject("ops", "alert.raised"))).map(
          (m) => JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>,
        )
        if (alerts.length >= 2) break
        await sleep(200)
      }
      const data = alerts.map((a) => a.data as Record<string, unknown>)
      expect(data).toEqual(
        expect.arrayContaining(
          ["dlp", "auditor"].map((service) =>
            expect.objectContaining({
              rule: "service-restarted",
              severity: "medium",
              details: expect.objectContaining({ service }),
            }),
          ),
        ),
      )
      expect(alerts.every((a) => a.source === "ops")).toBe(true)
    } finally {
      await admin.close()
    }

    // The bus dies: it is said, restarted on the same port and store, and every service reports healthy again.
    process.kill(ready.natsPid, "SIGKILL")
    await run.next((l) => l.event === "restarting" && l.service === "nats-server", 5_000, "nats-server exit")
    const natsBack = await run.next(
      (l) => l.event === "restarted" && l.service === "nats-server",
      5_000,
      "nats-server restart",
    )
    expect(natsBack.previousPid).toBe(ready.natsPid)
    expect(readFileSync(join(run.home, "run", "nats.pid"), "utf8").trim()).toBe(String(natsBack.pid))
    await run.next((l) => l.event === "recovered" && l.service === "nats-server", 20_000, "services healthy again")
    expect(run.child.exitCode).toBeNull()

    run.child.kill("SIGTERM")
    expect(await run.exited).toBe(0)
    for (const pid of run.pids) expect(await gone(pid, 2_000), `pid ${pid} left running`).toBe(true)
  }, 150_000)

  it("SIGKILL of each service in turn during a stream of events: each comes back, the log holds every event once", async () => {
    const run = await vigilUp()
    const ready = await run.ready
    const { keys } = await Effect.runPromise(homeSigningKeys(homeAt(run.home).keys))
    const gw = await connect({
      servers: ready.nats,
      inboxPrefix: inboxPrefix("gateway"),
      authenticator: nkeyAuthenticator(
        new TextEncoder().encode(readFileSync(join(run.home, "nats", "gateway.nk"), "utf8").trim()),
      ),
      maxReconnectAttempts: -1,
    })
    const ids = new Set<string>()
    let stop = false
    // A steady stream, published with acks and retried until stored (the gateway itself is killed too).
    const stream = (async () => {
      const js = jetstream(gw, jetStreamOptions("gateway"))
      for (let i = 0; !stop || i < 50; i++) {
        const e = signEvent(keys.gateway, {
          type: "task.submitted",
          session: `stream${i % 5}`,
          data: { channel: "cli", workspace: "/home/ana", promptChars: i + 1 },
          blobs: { prompt: { sha256: "a".repeat(64), size: i + 1, mediaType: "text/plain" } },
        })
        for (;;) {
          try {
            await js.publish(eventSubject(e.session, e.type), encodeEvent(e), { msgID: e.id })
            break
          } catch {
            await sleep(100)
          }
        }
        ids.add(e.id)
        await sleep(20)
      }
    })()
    try {
      for (const s of ready.services) {
        await sleep(300)
        process.kill(s.pid, "SIGKILL")
        await run.next((l) => l.event === "recovered" && l.service === s.name, RECOVER_MS, `${s.name} healthy`)
      }
      stop = true
      await stream
      // Every event in the audit log exactly once, read leaf by leaf from the auditor's proof HTTP (it may still be
      // catching up on what came while it was down).
      // On a loaded machine the last leaves may take a while to be signed; an answer that fails is asked again.
      const until = Date.now() + 60_000
      let seen = new Map<string, number>()
      while (Date.now() < until) {
        const cp = await fetch(`${ready.audit}/proof/entry?index=0`).catch(() => undefined)
        if (cp?.ok !== true) {
          await sleep(500)
          continue
        }
        seen = new Map<string, number>()
        const size = Number((await (await fetch(`${ready.audit}/checkpoint`)).text()).split("\n")[1])
        for (let i = 0; i < size; i++) {
          const a = (await (await fetch(`${ready.audit}/proof/entry?index=${i}`)).json()) as { leaf: string }
          const id = (JSON.parse(Buffer.from(a.leaf, "base64").toString("utf8")) as { id: string }).id
          seen.set(id, (seen.get(id) ?? 0) + 1)
        }
        if ([...ids].every((id) => seen.has(id))) break
        await sleep(500)
      }
      console.log(`stream under kills: ${ids.size} events published, ${seen.size} leaves read`)
      expect(
        [...ids].filter((id) => !seen.has(id)),
        "events missing from the log",
      ).toEqual([])
      expect(
        [...seen].filter(([, n]) => n > 1),
        "leaves appended twice",
      ).toEqual([])
      expect(run.child.exitCode).toBeNull()
    } finally {
      stop = true
      await gw.close()
    }
  }, 180_000)

  it("Ctrl-C with the nats-server dead stops everything within 5 s", async () => {
    const run = await vigilUp()
    const ready = await run.ready
    process.kill(ready.natsPid, "SIGKILL")
    await run.next((l) => l.event === "restarting" && l.service === "nats-server", 5_000, "nats-server exit")
    const at = Date.now()
    run.child.kill("SIGINT")
    expect(await run.exited).toBe(0)
    expect(Date.now() - at).toBeLessThan(5_000)
    for (const pid of run.pids) {
      expect(isAlive(pid), `pid ${pid} left running`).toBe(false)
    }
  }, 150_000)

  it.each([1_000, 2_000, 3_000])(
    "Ctrl-C %i ms into a start on a fresh home exits within 5 s, leaving nothing running",
    async (delay) => {
      const run = await vigilUp()
      await sleep(delay)
      const at = Date.now()
      run.child.kill("SIGINT")
      await run.exited
      expect(Date.now() - at).toBeLessThan(5_000)
      // Whatever it had started by then: nats-server's config and every service's environment name the home.
      const deadline = Date.now() + 2_000
      while (processesOf(run.home).length > 0 && Date.now() < deadline) await sleep(100)
      expect(processesOf(run.home)).toEqual([])
    },
    60_000,
  )

  it("a service that exits during start-up stops vigil up at once, with its last log lines", async () => {
    const started = Date.now()
    // Files where the auditor's log belongs: it refuses to start there (AuditStoreUnusable, NOT_A_LOG).
    const run = await vigilUp({}, undefined, {
      prepare: (home) => {
        mkdirSync(auditLogDir(home), { recursive: true })
        writeFileSync(join(auditLogDir(home), "notes.txt"), "not an audit log\n")
      },
    })
    await expect(run.ready).rejects.toThrow(/auditor exited during start-up/)
    const code = await run.exited
    const exitedAt = Date.now()
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    // Far less than the 60 s health wait: within ~5 s of the auditor's failure (its last log line).
    expect(exitedAt - started).toBeLessThan(60_000)
    const auditorLog = readFileSync(join(run.home, "logs", "auditor.log"), "utf8")
      .trim()
      .split("\n")
    const failedAt = Date.parse((JSON.parse(auditorLog[auditorLog.length - 1] as string) as { time: string }).time)
    expect(exitedAt - failedAt).toBeLessThan(6_000)
    expect(run.output()).toContain(join(run.home, "logs", "auditor.log"))
    expect(run.output()).toMatch(/AuditStoreUnusable/)
    expect(run.output()).toMatch(/holds files but no audit log/)
    for (const pid of run.pids) expect(await gone(pid, 2_000), `pid ${pid} left running`).toBe(true)
  }, 150_000)

  it("refuses a taken audit port before anything starts", async () => {
    const auditPort = await freePort()
    await occupy(auditPort)
    const started = Date.now()
    const run = await vigilUp({}, auditPort)
    expect(await run.exited).toBe(1)
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(run.output()).toContain(`port ${auditPort} (the auditor's HTTP on 127.0.0.1) is taken`)
    expect(run.lines.some((l) => typeof l.pid === "number")).toBe(false)
  }, 60_000)

  it("a service crashing at every restart stops the stack (fail closed) with the reason, after VIGIL_RESTART_MAX", async () => {
    const run = await vigilUp({ VIGIL_RESTART_MAX: "2", VIGIL_RESTART_WINDOW_MS: "60000" })
    const ready = await run.ready
    const auditor = ready.services.find((s) => s.name === "auditor")?.pid as number
    process.kill(auditor, "SIGKILL")
    await run.next((l) => l.event === "restarting" && l.service === "auditor", 5_000, "auditor exit")
    // Its HTTP port taken while it waits for its restart: every start from now on fails.
    await occupy(run.auditPort)
    const code = await run.exited
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    const out = run.output()
    expect(out).toMatch(/auditor exited 3 times within 60000 ms \(at most 2 restarts allowed\)/)
    expect(out).toMatch(/fail closed/)
    expect(out).toMatch(/EADDRINUSE/)
    expect(run.lines.filter((l) => l.event === "restarting" && l.service === "auditor")).toHaveLength(2)
    for (const pid of run.pids) expect(await gone(pid, 2_000), `pid ${pid} left running`).toBe(true)
  }, 150_000)
})
