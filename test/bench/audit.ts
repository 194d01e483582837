import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { BusConfig, consumeBatches, DeadLetters, Nats, Trust, Verifier } from "@vigil/bus"
import {
  AUDITOR_DURABLE,
  blobRefOf,
  type Draft,
  EVENTS_ALL,
  type Event,
  type EventType,
  encodeEvent,
  eventHash,
  eventSubject,
  type Principal,
  STREAM_EVENTS,
  signEvent,
} from "@vigil/events"
import { leafHash, verifyInclusion } from "@vigil/merkle"
import { TileLog } from "@vigil/tlog"
import { Effect, Layer, Option, Redacted } from "effect"
import { countStored, type NatsServer, prepareHome, startNats, startService, type TestHome } from "../harness/index.ts"
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
 * The auditor's ingest rate as a ratio of a raw pull consumer on the same stream, inclusion-proof cost in a log of a
 * million leaves, and the rate of `vigil audit verify` over the log the auditor just wrote.
 *
 * Ingest: N signed events of a realistic session mix (intent → decision → action started/completed → DLP screening,
 * each signed by its catalog producer and published as that producer's NATS user) are stored first; then a plain
 * pull consumer (admin, explicit ack, same pull batch as the bus) acks all N, timed; then the auditor process starts
 * on the same server and is timed from its first delivery until its durable's ack floor reaches N (every event
 * verified, appended in a committed batch and its OCSF record stored). One fresh server per round.
 */

const DEFAULT_N = 20_000
const DEFAULT_ROUNDS = 3
/** `consume({ max_messages })` of libs/bus (what the auditor's consumer pulls). */
const PULL_BATCH = 256
const PUBLISH_WINDOW = 256
const PROOF_LEAVES = 1_000_000
const PROOF_SAMPLES = 5_000
const INGEST_TARGET = 10_000
const REPO = join(import.meta.dirname, "..", "..")

const quantile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const utf8 = new TextEncoder()

const TOOLS_USED = ["fs.read", "fs.search", "shell.exec", "net.fetch"] as const

/** N signed events of agent sessions: five per tool call, each by its catalog producer. */
const sessionEvents = (th: TestHome, n: number): Array<{ principal: Principal; event: Event }> => {
  const out: Array<{ principal: Principal; event: Event }> = []
  const add = <T extends EventType>(principal: Principal, draft: Draft<T>): Event<T> => {
    const event = signEvent(th.keys[principal], draft)
    out.push({ principal, event })
    return event
  }
  for (let step = 0; out.length < n; step++) {
    const session = `bench-${step % 32}`
    const correlation = `task_bench-${step % 32}`
    const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    const base = { session, correlation, trace }
    const tool = TOOLS_USED[step % TOOLS_USED.length] as (typeof TOOLS_USED)[number]
    const intent = add("inference", {
      ...base,
      type: "intent.proposed",
      data: {
        tool,
        args: { path: `/home/ana/Documents/reports/q${step % 4}.xlsx`, pattern: "TODO|FIXME", maxResults: 200 },
        reason: "The user asked for an overview of the open work items; reading the report gives the list.",
        step: step % 50,
      },
    })
    const decision = add("policy", {
      ...base,
      type: "decision.made",
      causation: intent.id,
      data: {
        intent: intent.id,
        intentHash: eventHash(intent),
        effect: "allow",
        rules: ["workspace-read"],
        explanation: "Reading files inside the granted workspace is allowed.",
        obligations: [{ kind: "max-bytes", bytes: 1_000_000 }],
        bundle: "a".repeat(64),
        dataClass: "internal",
      },
    })
    const started = add("sandbox", {
      ...base,
      type: "action.started",
      causation: decision.id,
      data: { decision: decision.id, intent: intent.id, tool, tier: "os" },
    })
    add("sandbox", {
      ...base,
      type: "action.completed",
      causation: started.id,
      data: { action: started.id, exitCode: 0, durationMs: 42 },
      blobs: { output: blobRefOf(utf8.encode(`output ${step}`), "text/plain; charset=utf-8") },
    })
    add("dlp", {
      ...base,
      type: "result.screened",
      causation: started.id,
      data: { action: started.id, verdict: step % 7 === 0 ? "masked" : "clean", findings: [] },
      blobs: { masked: blobRefOf(utf8.encode(`masked output ${step}`), "text/plain; charset=utf-8") },
    })
  }
  return out.slice(0, n)
}

/** Runs `task(0..n-1)` with at most `window` promises in flight. */
const windowed = async (n: number, window: number, task: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  const worker = async () => {
    while (next < n) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker))
}

const publishAll = async (server: NatsServer, events: ReadonlyArray<{ principal: Principal; event: Event }>) => {
  const conns = new Map<Principal, NatsConnection>()
  try {
    for (const { principal } of events) {
      if (!conns.has(principal)) conns.set(principal, await server.connect(principal as "inference"))
    }
    const js = new Map([...conns].map(([p, nc]) => [p, jetstream(nc, { checkAPI: false })]))
    const wire = events.map(({ principal, event }) => ({ principal, event, bytes: encodeEvent(event) }))
    await windowed(wire.length, PUBLISH_WINDOW, (i) => {
      const w = wire[i] as (typeof wire)[number]
      const to = js.get(w.principal)
      if (to === undefined) throw new Error(`no connection for ${w.principal}`)
      return to.publish(eventSubject(w.event.session, w.event.type), w.bytes, { msgID: w.event.id })
    })
  } finally {
    for (const nc of conns.values()) await nc.close()
  }
}

/** A plain pull consumer (admin) over the whole stream, acking every message; events/s. */
const rawConsume = async (admin: NatsConnection, n: number): Promise<number> => {
  const jsm = await jetstreamManager(admin)
  const durable = "bench_raw"
  await jsm.consumers.add(STREAM_EVENTS, {
    durable_name: durable,
    filter_subject: EVENTS_ALL,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 2_048,
  })
  try {
    const consumer = await jetstream(admin, { checkAPI: false }).consumers.get(STREAM_EVENTS, durable)
    const t0 = performance.now()
    const messages = await consumer.consume({ max_messages: PULL_BATCH })
    let got = 0
    for await (const m of messages) {
      m.ack()
      if (++got === n) break
    }
    await admin.flush()
    const seconds = (performance.now() - t0) / 1000
    await messages.close()
    return n / seconds
  } finally {
    await jsm.consumers.delete(STREAM_EVENTS, durable).catch(() => undefined)
  }
}

/** Batch settings of the auditor before this benchmark's tuning (consumeBatches: events, ms, pull). */
const PREVIOUS_BATCHING = {
  VIGIL_AUDIT_MAX_BATCH: "1000",
  VIGIL_AUDIT_MAX_WAIT_MS: "20",
  VIGIL_AUDIT_PULL_BATCH: "256",
}

/**
 * libs/bus `consumeBatches` alone (verification, DLQ checks, acks; a handler that does nothing) on its own durable,
 * in this process as admin with the auditor's current batch settings: the ceiling the bus puts on the auditor.
 */
const verifiedConsume = async (server: NatsServer, th: TestHome, admin: NatsConnection, n: number) => {
  const durable = "bench_verify"
  const jsm = await jetstreamManager(admin)
  await jsm.consumers.add(STREAM_EVENTS, {
    durable_name: durable,
    filter_subject: EVENTS_ALL,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 2_048,
  })
  const seed = server.creds.admin?.seed
  const bus = DeadLetters.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(Nats.layer, Trust.layerStatic(th.chain), Verifier.layer())),
    Layer.provideMerge(
      BusConfig.layer({
        url: server.url,
        user: "admin",
        ...(seed === undefined ? {} : { nkeySeed: Option.some(Redacted.make(seed)) }),
      }),
    ),
  )
  try {
    return await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          let handled = 0
          let finish = () => {}
          const done = new Promise<void>((resolve) => {
            finish = resolve
          })
          const t0 = performance.now()
          const handle = yield* consumeBatches(
            { durable, stream: STREAM_EVENTS, maxBatch: 2_000, maxWaitMs: 100, batch: 1_000 },
            (batch) =>
              Effect.sync(() => {
                handled += batch.length
                if (handled >= n) finish()
              }),
          )
          yield* Effect.promise(() => done)
          const seconds = (performance.now() - t0) / 1000
          if (handle.stats.rejected !== 0) return yield* Effect.die(new Error(`${handle.stats.rejected} rejected`))
          return n / seconds
        }).pipe(Effect.provide(bus)),
      ),
    )
  } finally {
    await jsm.consumers.delete(STREAM_EVENTS, durable).catch(() => undefined)
  }
}

interface AuditorRun {
  readonly rate: number
  /** From spawning the process (node start, key and manifest checks, log open) until the ack floor reached N. */
  readonly coldSeconds: number
  readonly auditorCpu: number
  readonly natsCpu: number
  readonly machine: number
}

/** A fresh server and home with N signed events stored and nothing consuming them yet. */
const storedEvents = async (n: number) => {
  const server = await startNats({ secure: true })
  const th = await prepareHome(server)
  const admin = await server.connect("admin")
  await publishAll(server, sessionEvents(th, n))
  const stored = await countStored(admin, STREAM_EVENTS)
  if (stored !== n) throw new Error(`stored ${stored} of ${n} events`)
  return {
    server,
    th,
    admin,
    close: async () => {
      await admin.close().catch(() => undefined)
      await server.stop()
      th.remove()
    },
  }
}

/** A process started from another entry point, stopped with SIGTERM (no readiness wait: the watch times it). */
const spawnOther = (main: string, env: NodeJS.ProcessEnv) => {
  const child = spawn(process.execPath, [main], { env, stdio: "ignore" })
  const exited = new Promise<void>((r) => child.once("exit", () => r()))
  return {
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      await exited
    },
  }
}

/** Start the auditor process; time it from its durable's first delivery until its ack floor reaches N. */
const auditorRun = async (
  setup: { server: NatsServer; th: TestHome; admin: NatsConnection },
  n: number,
  env: NodeJS.ProcessEnv,
): Promise<AuditorRun> => {
  const { server, th, admin } = setup
  const jsm = await jetstreamManager(admin)
  let first: { t: number; auditorCpu: number; natsCpu: number; busy: number } | undefined
  let last: typeof first
  let pid = 0
  const spawnedAt = performance.now()
  const sample = () => ({
    t: performance.now(),
    auditorCpu: pid === 0 ? 0 : procCpuSeconds(`/proc/${pid}/stat`),
    natsCpu: procCpuSeconds(`/proc/${server.pid}/stat`),
    busy: machineBusySeconds(),
  })
  let stop = false
  const watch = (async () => {
    while (!stop) {
      const ci = await jsm.consumers.info(STREAM_EVENTS, AUDITOR_DURABLE)
      if (first === undefined && ci.delivered.stream_seq > 0) first = sample()
      if (ci.ack_floor.stream_seq >= n) {
        last = sample()
        return
      }
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  // VIGIL_BENCH_AUDITOR_NODE_OPTIONS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the auditor process;
  // VIGIL_BENCH_AUDITOR_MAIN runs another auditor entry point (e.g. a copy of an older version) for comparisons.
  const nodeOptions = process.env.VIGIL_BENCH_AUDITOR_NODE_OPTIONS
  const fullEnv = {
    VIGIL_LOG_LEVEL: "warn",
    ...env,
    ...(nodeOptions === undefined ? {} : { NODE_OPTIONS: nodeOptions }),
  }
  const other = process.env.VIGIL_BENCH_AUDITOR_MAIN
  const auditor =
    other === undefined
      ? await startService("auditor", th, { env: fullEnv, readyTimeoutMs: 60_000 })
      : spawnOther(other, th.env(fullEnv))
  pid = auditor.pid
  try {
    await Promise.race([
      watch,
      new Promise((_, reject) => setTimeout(() => reject(new Error("auditor did not ingest in 120 s")), 120_000)),
    ])
  } finally {
    stop = true
    await auditor.stop()
  }
  const f = first as NonNullable<typeof first>
  const l = last as NonNullable<typeof last>
  const seconds = (l.t - f.t) / 1000
  return {
    rate: n / seconds,
    coldSeconds: (l.t - spawnedAt) / 1000,
    auditorCpu: (l.auditorCpu - f.auditorCpu) / seconds,
    natsCpu: (l.natsCpu - f.natsCpu) / seconds,
    machine: (l.busy - f.busy) / seconds / availableParallelism(),
  }
}

interface IngestRound {
  readonly raw: number
  readonly verified: number
  readonly auditor: AuditorRun
  readonly previous: AuditorRun
  readonly verify?: { readonly rate: number; readonly wallSeconds: number; readonly leaves: number }
}

/** `node cli/src/main.ts audit verify --home … --json` on the auditor's home. */
const cliVerify = (home: string): Promise<{ rate: number; wallSeconds: number; leaves: number } | string> =>
  new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(
      process.execPath,
      [join(REPO, "cli", "src", "main.ts"), "audit", "verify", "--home", home, "--json"],
      { stdio: ["ignore", "pipe", "pipe"] },
    )
    let out = ""
    let err = ""
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString()
    })
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString()
    })
    child.once("exit", (code) => {
      const wallSeconds = (performance.now() - t0) / 1000
      try {
        const r = JSON.parse(out.trim().split("\n").at(-1) ?? "") as {
          ok: boolean
          leavesChecked: number
          elapsedMs: number
        }
        if (code !== 0 || !r.ok) return resolve(`exit ${code}: ${out.slice(-500)} ${err.slice(-500)}`)
        resolve({ rate: r.leavesChecked / (r.elapsedMs / 1000), wallSeconds, leaves: r.leavesChecked })
      } catch {
        resolve(`exit ${code}: ${out.slice(-500)} ${err.slice(-500)}`)
      }
    })
  })

const describeRun = (r: AuditorRun) =>
  `${fmt(r.rate)}/s (${r.coldSeconds.toFixed(1)} s from spawn; CPU auditor ${pct(r.auditorCpu)}, nats-server ` +
  `${pct(r.natsCpu)}, machine ${pct(r.machine)})`

/**
 * One round: on a fresh server with N stored events, the raw consumer, the bus alone, then the auditor with its
 * current settings (and `vigil audit verify` on its log); on a second fresh server, the auditor with the previous
 * batch settings.
 */
export const ingestRound = async (n: number, log: (s: string) => void, round: number): Promise<IngestRound> => {
  const a = await storedEvents(n)
  let raw: number
  let verified: number
  let auditor: AuditorRun
  let verify: Awaited<ReturnType<typeof cliVerify>>
  try {
    raw = await rawConsume(a.admin, n)
    verified = await verifiedConsume(a.server, a.th, a.admin, n)
    auditor = await auditorRun(a, n, {})
    verify = await cliVerify(a.th.home.root)
  } finally {
    await a.close()
  }
  const b = await storedEvents(n)
  let previous: AuditorRun
  try {
    previous = await auditorRun(b, n, PREVIOUS_BATCHING)
  } finally {
    await b.close()
  }
  log(
    `  round ${round}: raw consume ${fmt(raw)}/s, bus consumeBatches alone ${fmt(verified)}/s, auditor ` +
      `${describeRun(auditor)}, ratio ${(auditor.rate / raw).toFixed(3)}; previous batching ${describeRun(previous)}` +
      (typeof verify === "string" ? `; audit verify failed: ${verify}` : `; audit verify ${fmt(verify.rate)}/s`),
  )
  return { raw, verified, auditor, previous, ...(typeof verify === "string" ? {} : { verify }) }
}

interface ProofFigures {
  readonly buildSeconds: number
  readonly cold: ReadonlyArray<number>
  readonly warm: ReadonlyArray<number>
  readonly withEntry: ReadonlyArray<number>
  readonly proofLength: number
}

/** Inclusion proofs in a TileLog of `leaves` small entries: generate (from the tiles) + verify, in ms. */
const proofTimes = (leaves: number, samples: number, log: (s: string) => void): ProofFigures => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-bench-tlog-"))
  try {
    const t0 = performance.now()
    let built = TileLog.open(dir)
    const batch = 16_384
    for (let start = 0; start < leaves; start += batch) {
      const count = Math.min(batch, leaves - start)
      built.append(
        Array.from({ length: count }, (_, i) => utf8.encode(`{"leaf":${start + i},"pad":"0123456789abcdef"}`)),
      )
    }
    const buildSeconds = (performance.now() - t0) / 1000
    built.close()
    log(`  proofs: built a ${fmt(leaves)}-leaf log in ${buildSeconds.toFixed(1)} s`)
    // A freshly opened log: tiles come from disk on first use (the OS page cache is warm).
    built = TileLog.open(dir)
    const size = built.size
    const root = built.root()
    const indexes = Array.from({ length: samples }, () => Math.floor(Math.random() * size))
    const hashes = indexes.map((i) => leafHash(utf8.encode(`{"leaf":${i},"pad":"0123456789abcdef"}`)))
    let proofLength = 0
    const pass = (withEntry: boolean) =>
      indexes.map((index, k) => {
        const t = performance.now()
        const leaf = withEntry ? leafHash(built.entry(index)) : (hashes[k] as Uint8Array)
        const proof = built.inclusionProof(index, size)
        const r = verifyInclusion(index, size, leaf, proof, root)
        const ms = performance.now() - t
        if (!r.ok) throw new Error(`proof of ${index} does not verify: ${r.code}`)
        proofLength = proof.length
        return ms
      })
    const cold = pass(false)
    const warm = pass(false)
    built.close()
    built = TileLog.open(dir)
    const withEntry = pass(true)
    built.close()
    return { buildSeconds, cold, warm, withEntry, proofLength }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const msRow = (name: string, config: string, xs: ReadonlyArray<number>, extra = ""): BenchRow => {
  const s = [...xs].sort((a, b) => a - b)
  return {
    name,
    config,
    value: median(s),
    unit: "ms (median)",
    detail: `p99 ${quantile(s, 0.99).toFixed(3)} ms, max ${(s.at(-1) as number).toFixed(3)} ms over ${fmt(s.length)} random leaves${extra}`,
  }
}

export const auditBench: Benchmark = {
  id: "audit",
  title: "Auditor: ingest rate, inclusion proofs at 10^6 leaves, `vigil audit verify`",
  run: async (opts: BenchOptions) => {
    const n = opts.n ?? DEFAULT_N
    const rounds = opts.rounds ?? DEFAULT_ROUNDS
    opts.log(`audit: N = ${fmt(n)} events per round, ${rounds} rounds; proofs at ${fmt(PROOF_LEAVES)} leaves`)
    const results: IngestRound[] = []
    for (let r = 1; r <= rounds; r++) results.push(await ingestRound(n, opts.log, r))
    const proofs = proofTimes(PROOF_LEAVES, PROOF_SAMPLES, opts.log)

    const per = (f: (r: IngestRound) => number, digits = 0) =>
      results.map((r) => (digits === 0 ? fmt(f(r)) : f(r).toFixed(digits))).join(" / ")
    const med = (f: (r: IngestRound) => number) => median(results.map(f))
    const raw = med((r) => r.raw)
    const auditor = med((r) => r.auditor.rate)
    const verifies = results.flatMap((r) => (r.verify === undefined ? [] : [r.verify]))
    const cpu = (k: (r: IngestRound) => AuditorRun) =>
      `CPU auditor ${pct(med((r) => k(r).auditorCpu))}, nats-server ${pct(med((r) => k(r).natsCpu))}, machine ` +
      `${pct(med((r) => k(r).machine))} busy`
    const rows: BenchRow[] = [
      {
        name: "raw pull consumer, ack each message",
        config: "admin user, in the benchmark process",
        value: raw,
        unit: "events/s",
        detail: `rounds ${per((r) => r.raw)}`,
      },
      {
        name: "libs/bus consumeBatches alone (verify + ack, no-op handler)",
        config: "admin user, in the benchmark process",
        value: med((r) => r.verified),
        unit: "events/s",
        detail: `rounds ${per((r) => r.verified)}; the ceiling the bus puts on the auditor on this machine`,
      },
      {
        name: "auditor ingest (verify, append + commit, OCSF record, ack)",
        config: "auditor process, batches ≤ 2,000 / 100 ms, pull 1,000",
        value: auditor,
        unit: "events/s",
        detail: `rounds ${per((r) => r.auditor.rate)}; from spawn ${per((r) => r.auditor.coldSeconds, 1)} s; ${cpu((r) => r.auditor)}`,
      },
      {
        name: "ratio auditor / raw",
        config: "same server, same stream",
        value: auditor / raw,
        unit: "×",
        detail:
          `per round ${results.map((r) => (r.auditor.rate / r.raw).toFixed(3)).join(" / ")}; auditor / bus alone ` +
          `${(auditor / med((r) => r.verified)).toFixed(2)}; target ${fmt(INGEST_TARGET)} events/s: ` +
          (auditor >= INGEST_TARGET ? "met" : "missed"),
      },
      {
        name: "auditor ingest, previous batching",
        config: "batches ≤ 1,000 / 20 ms, pull 256 (before this benchmark)",
        value: med((r) => r.previous.rate),
        unit: "events/s",
        detail: `rounds ${per((r) => r.previous.rate)}; ${cpu((r) => r.previous)}; fresh server of its own`,
      },
      msRow(
        "inclusion proof, generate + verify",
        `TileLog, ${fmt(PROOF_LEAVES)} leaves, just opened`,
        proofs.cold,
        `; ${proofs.proofLength} hashes per proof`,
      ),
      msRow(
        "inclusion proof, generate + verify",
        "second pass (LRU of 2,048 tiles: about half the level-0 tiles)",
        proofs.warm,
      ),
      msRow(
        "entry read + leaf hash + inclusion proof + verify",
        "just opened (what the proof API does per request)",
        proofs.withEntry,
      ),
    ]
    if (verifies.length > 0) {
      rows.push({
        name: "`vigil audit verify` (every leaf's signature, the tree, every checkpoint)",
        config: "node cli/src/main.ts audit verify --home … --json",
        value: median(verifies.map((v) => v.rate)),
        unit: "events/s",
        detail: `rounds ${verifies.map((v) => fmt(v.rate)).join(" / ")} over ${fmt(verifies[0]?.leaves ?? 0)} leaves; whole command ${verifies.map((v) => v.wallSeconds.toFixed(1)).join(" / ")} s wall`,
      })
    }
    const notes = [
      `Ingest: ${fmt(n)} events (intent.proposed, decision.made, action.started, action.completed, result.screened ` +
        "in turn, each signed by its catalog producer and published as that producer's NATS user) are stored before " +
        "anything consumes them. The raw figure is a plain pull consumer in the benchmark process (admin user, " +
        `explicit ack of each message, \`consume({ max_messages: ${PULL_BATCH} })\`); "bus alone" is libs/bus ` +
        "`consumeBatches` with the auditor's batch settings and a handler that does nothing (every event verified: " +
        "JSON, schema, RFC 8785 signing bytes, Ed25519 on the SignaturePool's worker thread, manifest), on its own durable of the same " +
        "stream. The auditor figure runs from " +
        "the auditor durable's first delivery until its ack floor reaches N (watched with consumer info every 5 ms), " +
        "so it covers verification (schema, signature, manifest), the fsync'd tile-log commit per batch, one OCSF " +
        'record per event published and acked by JetStream, and the checkpoints signed meanwhile; "from spawn" adds ' +
        "node start-up, key and manifest checks and the log open. The previous-batching row is the same auditor " +
        "with the batch settings it had before this benchmark (VIGIL_AUDIT_MAX_BATCH / _MAX_WAIT_MS / _PULL_BATCH), " +
        "on a fresh server with the same kind of events. CPU shares are /proc CPU time over the timed part (100% = " +
        "one core).",
      `Proofs: a TileLog of ${fmt(PROOF_LEAVES)} entries of ~45 bytes built in ${proofs.buildSeconds.toFixed(1)} s ` +
        `(batches of 16,384); then ${fmt(PROOF_SAMPLES)} random leaves, each timed for \`inclusionProof(i, size)\` + ` +
        "`verifyInclusion` against the root, first on a freshly opened log (tiles read from disk on first use, OS page " +
        "cache warm), then again over the same leaves (TileLog's default cache of 2,048 tiles holds about half of the " +
        "3,907 level-0 tiles of this log, so a second pass still reads some from disk); the last row adds reading the entry from its bundle (first " +
        "read of a bundle checks all 256 of its leaf hashes) and hashing it.",
      verifies.length > 0
        ? "`vigil audit verify` ran (the CLI's own `--json` report: leaves checked / elapsed) on each round's auditor " +
          "home after the auditor stopped; the wall time adds node start-up."
        : "`vigil audit verify` could not be measured in this run (see the log above).",
    ]
    return {
      id: "audit",
      title: auditBench.title,
      rows,
      notes,
      params: {
        "N (events per round)": n,
        rounds:
          `${rounds}, median reported; each round: a fresh secured nats-server (startNats) and Vigil home for raw, ` +
          "bus alone, the auditor and `audit verify`, and another for the previous-batching auditor",
        "auditor settings":
          "defaults (batches ≤ 2,000 events or 100 ms, pull 1,000; checkpoint every 1,000 leaves or 1 s)",
      },
    }
  },
}
