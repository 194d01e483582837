import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection, nkeyAuthenticator } from "@nats-io/transport-node"
import {
  AUDITOR_DURABLE,
  type Event,
  encodeEvent,
  eventSubject,
  inboxPrefix,
  type Principal,
  STREAM_EVENTS,
} from "@vigil/events"
import { homeSigningKeys } from "@vigil/keys"
import { type Home, homeAt, isAlive, nodeProcessEnv } from "@vigil/runtime"
import { Effect } from "effect"
import { freePort, NATS_SERVER_BIN, sampleSession } from "../harness/index.ts"
import {
  type Benchmark,
  type BenchOptions,
  type BenchRow,
  machineBusySeconds,
  median,
  pct,
  procCpuSeconds,
} from "./lib.ts"

/**
 * The whole stack as a user starts it (`./vigil up --json` on a fresh home): time from spawn to the ready line; the
 * memory of every process (RSS, the acceptance measure, and PSS) idle 20 s after it, at the end of 20 s of steady
 * signed traffic, and at rest again after it; how long the supervisor takes to bring each service (and the embedded
 * nats-server) back to healthy after a SIGKILL (skipped with --quick). One fresh home and pair of ports per round.
 */

const REPO = join(import.meta.dirname, "..", "..")
const CLI = join(REPO, "cli", "src", "main.ts")
const DEFAULT_ROUNDS = 3
const READY_TIMEOUT_MS = 60_000
/** The supervisor waits 30 s for a restarted process to report healthy (RECOVERY_WAIT_MS of cli/src/up.ts). */
const RECOVERY_TIMEOUT_MS = 40_000
const IDLE_MS = 20_000
/** Steady traffic: this many events per second, for LOAD_MS, published as the services would publish them. */
const LOAD_RATE = 1_000
const LOAD_MS = 20_000
/** Publishes awaiting their JetStream ack beyond which a tick publishes nothing (the stack is not keeping up). */
const LOAD_WINDOW = 2_000
/** After the traffic: long enough for the services' memoryAtRest (a busy check, then a quiet one, 10 s apart). */
const REST_MS = 30_000
/** Pause between two kills, so that one recovery (and the alert it raises) is not timed inside the next. */
const SETTLE_MS = 2_000
const STOP_TIMEOUT_MS = 20_000
/** Issue 12: the whole stack idle (supervisor, nats-server, six services) in at most 600 MB of RSS. */
const MEMORY_TARGET_MB = 600
const RECOVERY_TARGET_S = 5

type Line = Record<string, unknown> & { event?: string; service?: string; pid?: number }
interface Ready {
  readonly natsPid: number
  readonly services: ReadonlyArray<{ readonly name: string; readonly pid: number }>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** Pss and Rss of a process in KiB (from /proc/<pid>/smaps_rollup), or undefined when it is gone. */
const memoryOf = (pid: number): { pss: number; rss: number } | undefined => {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8")
    const field = (name: string) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, "mu").exec(text)
      if (m?.[1] === undefined) throw new Error(`no ${name} in /proc/${pid}/smaps_rollup`)
      return Number(m[1])
    }
    return { pss: field("Pss"), rss: field("Rss") }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ESRCH") {
      return undefined
    }
    throw e
  }
}

/** Every process below `root` (children, grandchildren, …), from the parent pid in /proc/<pid>/stat. */
const descendants = (root: number): ReadonlyArray<{ pid: number; comm: string }> => {
  const parent = new Map<number, { ppid: number; comm: string }>()
  for (const d of readdirSync("/proc")) {
    if (!/^[0-9]+$/u.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8")
      const close = stat.lastIndexOf(")")
      const comm = stat.slice(stat.indexOf("(") + 1, close)
      const ppid = Number(stat.slice(close + 2).split(" ")[1])
      parent.set(Number(d), { ppid, comm })
    } catch {
      // gone meanwhile
    }
  }
  const out: Array<{ pid: number; comm: string }> = []
  const below = new Set([root])
  // Parents come before children in no particular order: repeat until nothing new is found.
  for (let grew = true; grew; ) {
    grew = false
    for (const [pid, { ppid, comm }] of parent) {
      if (!below.has(pid) && below.has(ppid)) {
        below.add(pid)
        out.push({ pid, comm })
        grew = true
      }
    }
  }
  return out
}

/** `vigil up --json` on a fresh home and free ports; its JSON lines, and the pids they named. */
const startStack = async () => {
  const home = mkdtempSync(join(tmpdir(), "vigil-bench-stack-"))
  const port = await freePort()
  let auditPort = await freePort()
  while (auditPort === port) auditPort = await freePort()
  const t0 = performance.now()
  // As `./vigil` starts it: with the environment it sets (libs/runtime `nodeProcessEnv`: the compile cache, two
  // malloc arenas).
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, "up", "--home", home, "--port", String(port), "--audit-port", String(auditPort), "--json"],
    {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...nodeProcessEnv(), VIGIL_NATS_SERVER: NATS_SERVER_BIN },
    },
  )
  const pids = new Set<number>()
  const lines: Array<{ line: Line; at: number }> = []
  const tail: string[] = []
  const keep = (text: string) => {
    tail.push(text)
    if (tail.length > 30) tail.shift()
  }
  const waiters = new Set<() => void>()
  let pending = ""
  child.stdout?.on("data", (chunk: Buffer) => {
    const at = performance.now()
    pending += chunk.toString("utf8")
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const text = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      keep(text)
      if (!text.startsWith("{")) continue
      try {
        const line = JSON.parse(text) as Line
        lines.push({ line, at })
        if (typeof line.pid === "number") pids.add(line.pid)
        if (line.event === "ready") {
          const r = line as unknown as Ready
          pids.add(r.natsPid)
          for (const s of r.services) pids.add(s.pid)
        }
      } catch {
        // not JSON after all: kept in the tail only
      }
    }
    for (const w of waiters) w()
  })
  let errPending = ""
  child.stderr?.on("data", (chunk: Buffer) => {
    errPending += chunk.toString("utf8")
    for (let nl = errPending.indexOf("\n"); nl >= 0; nl = errPending.indexOf("\n")) {
      keep(`stderr: ${errPending.slice(0, nl)}`)
      errPending = errPending.slice(nl + 1)
    }
  })
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const exited = new Promise<void>((r) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal }
      for (const w of waiters) w()
      r()
    }),
  )
  const lastLines = () => tail.slice(-15).join("\n")

  /** The first line at index ≥ `from` that matches, with the time it was read; rejects after `ms` or on exit. */
  const next = (from: number, match: (l: Line) => boolean, ms: number, what: string) =>
    new Promise<{ line: Line; at: number }>((resolve, reject) => {
      const check = () => {
        const found = lines.slice(from).find((l) => match(l.line))
        if (found !== undefined) return done(() => resolve(found))
        if (exit !== undefined) {
          return done(() =>
            reject(
              new Error(
                `vigil up exited (${exit?.signal ?? `code ${exit?.code}`}) before ${what}; last output:\n${lastLines()}`,
              ),
            ),
          )
        }
      }
      const timer = setTimeout(
        () =>
          done(() => reject(new Error(`no ${what} within ${ms / 1000} s; last output of vigil up:\n${lastLines()}`))),
        ms,
      )
      const done = (settle: () => void) => {
        clearTimeout(timer)
        waiters.delete(check)
        settle()
      }
      waiters.add(check)
      check()
    })

  /** SIGTERM, wait for the exit (SIGKILL after STOP_TIMEOUT_MS), then kill whatever it left behind, by pid. */
  const stop = async (): Promise<{ seconds: number; leftovers: ReadonlyArray<string> }> => {
    const t = performance.now()
    const below = child.pid === undefined ? [] : descendants(child.pid)
    for (const d of below) pids.add(d.pid)
    if (exit === undefined) {
      child.kill("SIGTERM")
      const killed = await Promise.race([exited.then(() => false), sleep(STOP_TIMEOUT_MS).then(() => true)])
      if (killed) {
        child.kill("SIGKILL")
        await exited
      }
    }
    const seconds = (performance.now() - t) / 1000
    const leftovers: string[] = []
    // Exited children of a dead parent are reaped by init quickly; give them a moment before calling them leftovers.
    const deadline = Date.now() + 2_000
    while ([...pids].some(isAlive) && Date.now() < deadline) await sleep(50)
    for (const pid of pids) {
      if (!isAlive(pid)) continue
      leftovers.push(String(pid))
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone meanwhile
      }
    }
    rmSync(home, { recursive: true, force: true })
    return { seconds, leftovers }
  }

  return { child, home, t0, lines, next, stop, lastLines }
}

interface ProcessMemory {
  readonly name: string
  /** KiB, from /proc/<pid>/smaps_rollup. */
  readonly pss: number
  readonly rss: number
}

/** Every process of the stack: the ones the ready line named, then any other process below the supervisor. */
const sampleMemory = (named: ReadonlyMap<number, string>, supervisorPid: number, when: string): ProcessMemory[] => {
  const memory: ProcessMemory[] = []
  for (const [pid, name] of named) {
    const m = memoryOf(pid)
    if (m === undefined) throw new Error(`${name} (pid ${pid}) is gone ${when}`)
    memory.push({ name, ...m })
  }
  // Anything else the stack runs (a helper a service spawned): counted too, under its command name.
  for (const d of descendants(supervisorPid)) {
    if (named.has(d.pid)) continue
    const m = memoryOf(d.pid)
    if (m !== undefined) memory.push({ name: `other: ${d.comm}`, ...m })
  }
  return memory
}

const sum = (ms: ReadonlyArray<ProcessMemory>, field: "rss" | "pss") => ms.reduce((a, m) => a + m[field], 0)

interface LoadStats {
  /** Events published and stored (acked by JetStream) per second over the window. */
  readonly rate: number
  readonly failed: number
  /** Events not published because LOAD_WINDOW publishes were still awaiting their ack. */
  readonly skipped: number
  /** The auditor's durable at the end of the window: delivered-unacked plus not yet delivered. */
  readonly auditorBacklog: number | undefined
  /** The largest whole-stack RSS seen (KiB), sampled every second of the window. */
  readonly peakRss: number
}

/**
 * Steady signed traffic into the running stack for LOAD_MS: agent tasks of nine events each (test/harness
 * `sampleSession`: gateway → dlp → inference → policy → sandbox → dlp → inference → dlp), each signed with its
 * producer's key from the home and published over that producer's own NATS user with a JetStream ack, LOAD_RATE
 * events per second in ticks of 100 ms. The services take them as they would their own: the auditor logs every one,
 * the policy service decides each intent, the others verify and ack what their durables receive. Calls `sample`
 * every second and at the end of the window (while the traffic still runs).
 */
const runLoad = async (
  home: Home,
  url: string,
  round: number,
  sample: () => ReadonlyArray<ProcessMemory>,
): Promise<{ stats: LoadStats; memory: ReadonlyArray<ProcessMemory> }> => {
  const { keys } = await Effect.runPromise(homeSigningKeys(home.keys))
  const conns = new Map<string, NatsConnection>()
  const connectAs = (role: string) =>
    connect({
      servers: url,
      name: `bench-stack-${role}`,
      inboxPrefix: inboxPrefix(role),
      authenticator: nkeyAuthenticator(
        new TextEncoder().encode(readFileSync(join(home.nats, `${role}.nk`), "utf8").trim()),
      ),
    })
  try {
    for (const role of ["gateway", "dlp", "inference", "policy", "sandbox", "admin"]) {
      conns.set(role, await connectAs(role))
    }
    const js = (as: Principal) => jetstream(conns.get(as) as NatsConnection, { checkAPI: false })
    let attempted = 0
    let acked = 0
    let failed = 0
    let skipped = 0
    let inFlight = 0
    let k = 0
    let peakRss = 0
    const t0 = performance.now()
    const tick = () => {
      const due = Math.floor((LOAD_RATE * (performance.now() - t0)) / 1000)
      while (attempted + skipped < due) {
        const events: ReadonlyArray<Event> = sampleSession(keys, `load-${round}-${k++}`)
        if (inFlight >= LOAD_WINDOW) {
          skipped += events.length
          continue
        }
        for (const event of events) {
          attempted++
          inFlight++
          js(event.source)
            .publish(eventSubject(event.session, event.type), encodeEvent(event), { msgID: event.id })
            .then(
              () => void acked++,
              () => void failed++,
            )
            .finally(() => void inFlight--)
        }
      }
    }
    const timer = setInterval(tick, 100)
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, sum(sample(), "rss"))
    }, 1_000)
    await sleep(LOAD_MS)
    const memory = sample()
    peakRss = Math.max(peakRss, sum(memory, "rss"))
    const seconds = (performance.now() - t0) / 1000
    const stored = acked
    clearInterval(timer)
    clearInterval(sampler)
    let auditorBacklog: number | undefined
    try {
      const ci = await (await jetstreamManager(conns.get("admin") as NatsConnection)).consumers.info(
        STREAM_EVENTS,
        AUDITOR_DURABLE,
      )
      auditorBacklog = ci.num_pending + ci.num_ack_pending
    } catch {
      auditorBacklog = undefined
    }
    // Let the publishes in flight settle before the connections close.
    const settle = performance.now()
    while (inFlight > 0 && performance.now() - settle < 10_000) await sleep(50)
    return { stats: { rate: stored / seconds, failed, skipped, auditorBacklog, peakRss }, memory }
  } finally {
    for (const nc of conns.values()) await nc.close().catch(() => undefined)
  }
}

interface Round {
  readonly readySeconds: number
  /** Every process 20 s after the ready line. */
  readonly idle: ReadonlyArray<ProcessMemory>
  /** …at the end of the load window, the traffic still running. */
  readonly load: ReadonlyArray<ProcessMemory>
  /** …REST_MS after the traffic stopped. */
  readonly rest: ReadonlyArray<ProcessMemory>
  readonly loadStats: LoadStats
  /** Per service (and nats-server): seconds from SIGKILL to the `restarted` and to the `recovered` line. */
  readonly recovery: ReadonlyMap<string, { restarted: number; recovered: number }>
  readonly stopSeconds: number
  /** CPU seconds per second over the idle window (1 = one core): the stack's processes, and everything else. */
  readonly idleCpu: number
  readonly othersCpu: number
}

const oneRound = async (round: number, quick: boolean, log: (s: string) => void): Promise<Round> => {
  const s = await startStack()
  let result: Omit<Round, "stopSeconds"> | undefined
  let failure: unknown
  try {
    const ready = await s.next(0, (l) => l.event === "ready", READY_TIMEOUT_MS, "ready line")
    const readySeconds = (ready.at - s.t0) / 1000
    const r = ready.line as unknown as Ready & { readonly nats: string }
    log(`  round ${round}: ready ${readySeconds.toFixed(1)} s after spawn; idle ${IDLE_MS / 1000} s…`)
    const supervisorPid = s.child.pid as number
    const named = new Map<number, string>([
      [supervisorPid, "supervisor (vigil up)"],
      [r.natsPid, "nats-server"],
      ...r.services.map((x) => [x.pid, x.name] as [number, string]),
    ])
    // CPU over the idle window: the stack's own, and the rest of the machine's (other users: a noise indicator).
    const stackCpu = () => [...named.keys()].reduce((a, pid) => a + procCpuSeconds(`/proc/${pid}/stat`), 0)
    const w0 = performance.now()
    const c0 = stackCpu()
    const b0 = machineBusySeconds()
    await sleep(IDLE_MS)
    const wall = (performance.now() - w0) / 1000
    const idleCpu = (stackCpu() - c0) / wall
    const othersCpu = Math.max(0, (machineBusySeconds() - b0) / wall - idleCpu)
    const idle = sampleMemory(named, supervisorPid, `after ${IDLE_MS / 1000} s idle`)
    log(
      `  round ${round}: idle RSS ${fmt(MB(sum(idle, "rss")))} MB, PSS ${fmt(MB(sum(idle, "pss")))} MB ` +
        `(${idle.length} processes); idle CPU of the stack ${pct(idleCpu)} of a core, other processes ${pct(othersCpu)}`,
    )

    log(`  round ${round}: ${fmt(LOAD_RATE)} signed events/s for ${LOAD_MS / 1000} s…`)
    const { stats: loadStats, memory: load } = await runLoad(homeAt(s.home), r.nats, round, () =>
      sampleMemory(named, supervisorPid, "under load"),
    )
    log(
      `  round ${round}: under load RSS ${fmt(MB(sum(load, "rss")))} MB (peak ${fmt(MB(loadStats.peakRss))} MB), ` +
        `PSS ${fmt(MB(sum(load, "pss")))} MB; ${fmt(loadStats.rate)} events/s stored, auditor backlog ` +
        `${loadStats.auditorBacklog ?? "?"}; at rest ${REST_MS / 1000} s…`,
    )
    await sleep(REST_MS)
    const rest = sampleMemory(named, supervisorPid, "after the load")
    log(`  round ${round}: at rest after the load RSS ${fmt(MB(sum(rest, "rss")))} MB`)

    const recovery = new Map<string, { restarted: number; recovered: number }>()
    const current = new Map<string, number>([
      ["nats-server", r.natsPid],
      ...r.services.map((x) => [x.name, x.pid] as [string, number]),
    ])
    for (const name of quick ? [] : [...r.services.map((x) => x.name), "nats-server"]) {
      const pid = current.get(name) as number
      const from = s.lines.length
      const killedAt = performance.now()
      process.kill(pid, "SIGKILL")
      const restarted = await s.next(
        from,
        (l) => l.event === "restarted" && l.service === name,
        RECOVERY_TIMEOUT_MS,
        `restart of ${name}`,
      )
      const recovered = await s.next(
        from,
        (l) =>
          (l.event === "recovered" || l.event === "warning") &&
          l.service === name &&
          (name === "nats-server" || l.pid === restarted.line.pid),
        RECOVERY_TIMEOUT_MS,
        `recovery of ${name}`,
      )
      if (recovered.line.event === "warning") {
        throw new Error(`${name} did not recover: ${JSON.stringify(recovered.line)}`)
      }
      current.set(name, restarted.line.pid as number)
      const figures = { restarted: (restarted.at - killedAt) / 1000, recovered: (recovered.at - killedAt) / 1000 }
      recovery.set(name, figures)
      log(
        `  round ${round}: SIGKILL ${name}: restarted ${figures.restarted.toFixed(2)} s, healthy ${figures.recovered.toFixed(2)} s`,
      )
      await sleep(SETTLE_MS)
    }
    result = { readySeconds, idle, load, rest, loadStats, recovery, idleCpu, othersCpu }
  } catch (e) {
    failure = e
  }
  const stopped = await s.stop()
  if (stopped.leftovers.length > 0) log(`  round ${round}: killed leftover pids ${stopped.leftovers.join(", ")}`)
  if (failure !== undefined) throw failure
  if (result === undefined) throw new Error("no result")
  log(`  round ${round}: stopped (SIGTERM → exit) in ${stopped.seconds.toFixed(1)} s`)
  return { ...result, stopSeconds: stopped.seconds }
}

/** KiB (as /proc reports them) to MB of 10^6 bytes, the unit of the target. */
const MB = (kib: number) => (kib * 1024) / 1e6

export const stackBench: Benchmark = {
  id: "stack",
  title: "Whole stack: start, memory idle and under load, recovery after SIGKILL",
  run: async (opts: BenchOptions) => {
    const rounds = opts.rounds ?? (opts.quick ? 1 : DEFAULT_ROUNDS)
    opts.log(
      `stack: ${rounds} round(s) of vigil up --json on a fresh home; memory ${IDLE_MS / 1000} s idle, under ` +
        `${fmt(LOAD_RATE)} events/s, ${REST_MS / 1000} s after${opts.quick ? "; no recovery (--quick)" : ""}`,
    )
    const results: Round[] = []
    for (let r = 1; r <= rounds; r++) results.push(await oneRound(r, opts.quick, opts.log))

    const rows: BenchRow[] = []
    const readies = results.map((r) => r.readySeconds)
    rows.push({
      name: "spawn → ready line",
      config: "node cli/src/main.ts up --json, fresh home",
      value: median(readies),
      unit: "s (median)",
      detail: `rounds ${readies.map((x) => x.toFixed(2)).join(" / ")} s; SIGTERM → exit ${results.map((r) => r.stopSeconds.toFixed(1)).join(" / ")} s`,
    })

    // Memory: one row per process (median RSS idle over the rounds; under load and at rest after it in the detail).
    const phases = ["idle", "load", "rest"] as const
    const names = [...new Set(results.flatMap((r) => r.idle.map((m) => m.name)))]
    const of = (ms: ReadonlyArray<ProcessMemory>, name: string, field: "rss" | "pss") =>
      ms.filter((m) => m.name === name).reduce((a, m) => a + m[field], 0)
    const med = (f: (r: Round) => number) => median(results.map(f))
    for (const name of names) {
      const rss = Object.fromEntries(phases.map((p) => [p, med((r) => of(r[p], name, "rss"))])) as Record<
        (typeof phases)[number],
        number
      >
      const pss = Object.fromEntries(phases.map((p) => [p, med((r) => of(r[p], name, "pss"))])) as Record<
        (typeof phases)[number],
        number
      >
      rows.push({
        name: `RSS: ${name}`,
        config: `idle, ${IDLE_MS / 1000} s after ready`,
        value: MB(rss.idle),
        unit: "MB",
        detail:
          `under load ${fmt(MB(rss.load))} MB, at rest after it ${fmt(MB(rss.rest))} MB; PSS ${fmt(MB(pss.idle))} / ` +
          `${fmt(MB(pss.load))} / ${fmt(MB(pss.rest))} MB` +
          (results.length > 1
            ? `; idle RSS per round ${results.map((r) => fmt(MB(of(r.idle, name, "rss")))).join(" / ")} MB`
            : ""),
      })
    }
    const total = (p: (typeof phases)[number], field: "rss" | "pss") => results.map((r) => sum(r[p], field))
    const idleRss = median(total("idle", "rss"))
    const met = MB(idleRss) <= MEMORY_TARGET_MB
    const perRound = (xs: ReadonlyArray<number>) =>
      xs.length > 1 ? `; per round ${xs.map((x) => fmt(MB(x))).join(" / ")} MB` : ""
    rows.push({
      name: "RSS: whole stack, idle",
      config: `${results[0]?.idle.length ?? 0} processes, ${IDLE_MS / 1000} s after ready`,
      value: MB(idleRss),
      unit: "MB",
      detail:
        `target ${MEMORY_TARGET_MB} MB: ${met ? "met" : `missed by ${fmt(MB(idleRss) - MEMORY_TARGET_MB)} MB`}; PSS ` +
        `${fmt(MB(median(total("idle", "pss"))))} MB (shared pages counted once)${perRound(total("idle", "rss"))}`,
    })
    const stat = (f: (s: LoadStats) => number) => median(results.map((r) => f(r.loadStats)))
    const backlogs = results.map((r) => r.loadStats.auditorBacklog)
    rows.push({
      name: "RSS: whole stack, under load",
      config: `end of ${LOAD_MS / 1000} s at ${fmt(LOAD_RATE)} signed events/s`,
      value: MB(median(total("load", "rss"))),
      unit: "MB",
      detail:
        `peak ${fmt(MB(stat((s) => s.peakRss)))} MB (sampled every second); PSS ${fmt(MB(median(total("load", "pss"))))} MB; ` +
        `${fmt(stat((s) => s.rate))} events/s stored, auditor backlog at the end ` +
        `${backlogs.map((b) => (b === undefined ? "?" : fmt(b))).join(" / ")}` +
        (stat((s) => s.skipped + s.failed) > 0
          ? `; ${fmt(stat((s) => s.skipped))} events skipped (window full), ${fmt(stat((s) => s.failed))} refused`
          : "") +
        perRound(total("load", "rss")),
    })
    rows.push({
      name: "RSS: whole stack, at rest after the load",
      config: `${REST_MS / 1000} s after the traffic stopped`,
      value: MB(median(total("rest", "rss"))),
      unit: "MB",
      detail: `PSS ${fmt(MB(median(total("rest", "pss"))))} MB${perRound(total("rest", "rss"))}`,
    })

    const others = results.map((r) => r.othersCpu)
    rows.push({
      name: "idle CPU: whole stack",
      config: `over the ${IDLE_MS / 1000} s idle window`,
      value: median(results.map((r) => r.idleCpu)) * 100,
      unit: "% of a core",
      detail:
        `rounds ${results.map((r) => pct(r.idleCpu)).join(" / ")}; other processes on the machine meanwhile ` +
        `${others.map(pct).join(" / ")} of a core (noise)`,
    })

    const killed = [...(results[0]?.recovery.keys() ?? [])]
    const slow: string[] = []
    for (const name of killed) {
      const rec = results.map((r) => r.recovery.get(name)?.recovered ?? Number.NaN)
      const res = results.map((r) => r.recovery.get(name)?.restarted ?? Number.NaN)
      const max = Math.max(...rec)
      if (max > RECOVERY_TARGET_S) slow.push(`${name} (max ${max.toFixed(1)} s)`)
      rows.push({
        name: `SIGKILL → healthy again: ${name}`,
        config:
          name === "nats-server"
            ? "until `recovered` (bus back, all six services healthy)"
            : "until `recovered` (heartbeat from the new pid)",
        value: median(rec),
        unit: "s (median)",
        detail:
          `max ${max.toFixed(2)} s; rounds ${rec.map((x) => x.toFixed(2)).join(" / ")} s; restarted (new pid) after ` +
          `${res.map((x) => x.toFixed(2)).join(" / ")} s; target ${RECOVERY_TARGET_S} s: ` +
          (max <= RECOVERY_TARGET_S ? "met" : "missed"),
      })
    }

    const heaviest = names
      .map((name) => ({ name, rss: median(results.map((r) => of(r.idle, name, "rss"))) }))
      .sort((a, b) => b.rss - a.rss)[0]
    const notes = [
      "Each round runs `node cli/src/main.ts up --home <fresh temp dir> --port <free> --audit-port <free> --json` " +
        "with the environment `./vigil` sets (NODE_COMPILE_CACHE, MALLOC_ARENA_MAX; the embedded nats-server, the six services; keys, NATS " +
        "users and the JetStream store created from nothing) and times the spawn to its " +
        '`{"event":"ready"}` line (every service has sent a healthy heartbeat). Memory is read from ' +
        "/proc/<pid>/smaps_rollup for every process: RSS (resident pages; shared ones — the node executable, " +
        "libraries — count in full in every process, so the sum overstates what the stack takes from the " +
        "machine) and PSS (each shared page divided among the processes that map it: the rows add up to the " +
        "machine's cost). The supervisor is the `vigil up` node process itself; any other process below it would " +
        `show as its own row. Three points per round: idle ${IDLE_MS / 1000} s after the ready line; at the end of ` +
        `${LOAD_MS / 1000} s of steady traffic, ${fmt(LOAD_RATE)} events/s of agent tasks (test/harness ` +
        "`sampleSession`: nine events of ten types, each signed with its producer's key from the home and published " +
        "over that producer's own NATS user with a JetStream ack; the auditor logs them, the policy service " +
        "decides each intent, the other services verify and ack their durables' share), sampled while it still " +
        `runs; and ${REST_MS / 1000} s after it stopped. Idle CPU is the /proc CPU time of the stack's processes over ` +
        'the idle window; "other processes" is the rest of the machine\'s busy time meanwhile (two cores shared ' +
        "with anything else running): start and recovery times stretch with it, memory hardly does.",
      `Idle memory: ${fmt(MB(idleRss))} MB RSS for the whole stack (median of the rounds) against the project's ` +
        `whole-stack idle target of ${MEMORY_TARGET_MB} MB: ${met ? "met" : `missed by ${fmt(MB(idleRss) - MEMORY_TARGET_MB)} MB`}. ` +
        (heaviest === undefined
          ? ""
          : `The largest single process is ${heaviest.name} (${fmt(MB(heaviest.rss))} MB RSS). `) +
        "Every Node process starts at some 50 MB of RSS that is the node executable's own code and data, shared by " +
        "all of them (PSS counts it once), and holds some 25 MB of V8 heap for the modules the template loads " +
        "(Effect's 255 modules alone keep 8 MB of source text); see libs/runtime/src/memory.ts for what each " +
        "process does to stay near that.",
    ]
    if (!opts.quick) {
      notes.push(
        "Recovery: each service in turn, then nats-server, is sent SIGKILL (by the pid the supervisor last printed " +
          "for it) and timed to the supervisor's `recovered` line for it: for a service, the first healthy heartbeat " +
          "from its new pid (heartbeats every second; the restart waits out a 250 ms backoff first); for " +
          "nats-server, the restarted server accepting connections and all six services healthy again after it. The " +
          `\`restarted\` figure is when the new process was spawned. ${SETTLE_MS / 1000} s pass between kills. ` +
          `Target: back within ${RECOVERY_TARGET_S} s` +
          (slow.length === 0 ? " — met by every process in every round." : `; missed by ${slow.join(", ")}.`) +
          " At the end of each round the stack is stopped with SIGTERM; any pid it named that is still alive " +
          "afterwards is killed and the home removed.",
      )
    }
    return {
      id: "stack",
      title: stackBench.title,
      rows,
      notes,
      params: {
        rounds: `${rounds}, median reported (max too for recovery); each round a fresh home and fresh ports`,
        "idle wait": `${IDLE_MS / 1000} s after the ready line`,
        load: `${fmt(LOAD_RATE)} signed events/s for ${LOAD_MS / 1000} s; memory ${REST_MS / 1000} s after it again`,
        ...(opts.quick ? { recovery: "skipped (--quick)" } : {}),
      },
    }
  },
}
