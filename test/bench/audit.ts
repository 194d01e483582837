import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { BusConfig, consumeBatches, DeadLetters, Nats, Signer, Trust, Verifier } from "@vigil/bus"
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
  STREAM_AUDIT,
  STREAM_EVENTS,
  signEvent,
} from "@vigil/events"
import { leafHash, verifyInclusion } from "@vigil/merkle"
import { TileLog } from "@vigil/tlog"
import { Effect, Layer, Option, Redacted } from "effect"
import { countStored, type NatsServer, prepareHome, startNats, startService, type TestHome } from "../harness/index.ts"
import { type Benchmark, type BenchOptions, type BenchRow, type CpuShare, cpuMeter, median, pct } from "./lib.ts"

/**
 * The auditor's ingest rate as a ratio of a raw pull consumer on the same stream, inclusion-proof cost in a log of a
 * million leaves, and the rate of `vigil audit verify` over the log the auditor just wrote.
 *
 * Ingest: N signed events of a realistic session mix (intent → decision → action started/completed → DLP screening,
 * each signed by its catalog producer and published as that producer's NATS user) are stored first; then a plain
 * pull consumer (admin, explicit ack, same pull batch as the bus) acks all N, timed; then the auditor process starts
 * on the same server and is timed by its OCSF records (every event verified, appended in a committed batch and its
 * record stored), then the floor on a second fresh server with the same events. One pair of servers per round.
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

/**
 * libs/bus `consumeBatches` alone (verification, DLQ checks, acks; a handler that does nothing) on its own durable,
 * in this process as admin with the auditor's current batch settings: the ceiling the bus puts on the auditor.
 */
const verifiedConsume = async (
  server: NatsServer,
  th: TestHome,
  admin: NatsConnection,
  n: number,
): Promise<Omit<DrainRun, "coldSeconds">> => {
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
    // The auditor's key signs the DLQ records of anything this stand-in for the auditor refuses.
    Layer.provideMerge(
      Layer.mergeAll(Nats.layer, Signer.layer(th.keys.auditor), Trust.layerStatic(th.chain), Verifier.layer()),
    ),
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
          const meter = cpuMeter(server.pid)
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
          const cpu = meter.stop()
          if (handle.stats.rejected !== 0) return yield* Effect.die(new Error(`${handle.stats.rejected} rejected`))
          return { rate: n / seconds, processCpu: cpu.node, natsCpu: cpu.nats, machine: cpu.machine }
        }).pipe(Effect.provide(bus)),
      ),
    )
  } finally {
    await jsm.consumers.delete(STREAM_EVENTS, durable).catch(() => undefined)
  }
}

interface DrainRun {
  readonly rate: number
  /** From spawning the process (node start, key and manifest checks, log open) until the ack floor reached N. */
  readonly coldSeconds: number
  readonly processCpu: number
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

/**
 * A node process (script and arguments), stopped with SIGTERM; no readiness wait: the watch times it. Its stderr
 * shows only when asked for (the floor's, whose failures would otherwise read as a timeout).
 */
const spawnNode = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, stderr: "ignore" | "inherit" = "ignore") => {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", stderr] })
  const exited = new Promise<void>((r) => child.once("exit", () => r()))
  return {
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      await exited
    },
  }
}

/** A process the benchmark times (the auditor or the floor). */
interface Spawned {
  readonly pid: number
  readonly stop: () => Promise<unknown>
}

/** Where the timed part of a run starts: after this share of the N records, so start-up and JIT warm-up stay out. */
const WARM_SHARE = 0.1

/**
 * Start a consumer process that stores one record per event in VIGIL_AUDIT; time it by that stream's message count
 * (stream info every 5 ms): from the (N × WARM_SHARE)-th new record to the N-th, then wait until `durable`'s ack
 * floor is N. Nothing asks the server about the consumer while it runs: on nats-server 2.9 a consumer info recounts
 * the consumer's pending messages by scanning the stream and can leave its cached count unset, so that every later
 * delivery scans again; polling it every 5 ms took a third of a core from the run it measured (stream info reads
 * the stream's running totals). A subscription to the records would cost the server a copy of each.
 */
const drainRun = async (
  setup: { server: NatsServer; admin: NatsConnection },
  n: number,
  durable: string,
  start: () => Promise<Spawned>,
): Promise<DrainRun> => {
  const { server, admin } = setup
  const jsm = await jetstreamManager(admin)
  const stored = async () => (await jsm.streams.info(STREAM_AUDIT)).state.messages
  const before = await stored()
  const warmAt = Math.max(1, Math.floor(n * WARM_SHARE))
  let first: { t: number; records: number; meter: ReturnType<typeof cpuMeter> } | undefined
  let last: { t: number; rate: number; cpu: CpuShare } | undefined
  const spawnedAt = performance.now()
  const child = await start()
  try {
    const deadline = performance.now() + 120_000
    while (last === undefined) {
      if (performance.now() > deadline) throw new Error(`${durable}: not ${n} records in 120 s`)
      const records = (await stored()) - before
      if (first === undefined && records >= warmAt) {
        first = { t: performance.now(), records, meter: cpuMeter(server.pid, child.pid) }
      }
      if (first !== undefined && records >= n) {
        const t = performance.now()
        // A run shorter than a few commits (≤ 2,000 events or 100 ms each) measures batching, not a rate.
        if (t - first.t < 500) throw new Error(`${durable}: ${n} events went by too fast to time (raise --n)`)
        last = { t, rate: (records - first.records) / ((t - first.t) / 1000), cpu: first.meter.stop() }
      } else await new Promise((r) => setTimeout(r, 5))
    }
    // Records go out before the batch is acked: the run is complete once the ack floor says so.
    for (;;) {
      const ci = await jsm.consumers.info(STREAM_EVENTS, durable)
      if (ci.ack_floor.stream_seq >= n) break
      await new Promise((r) => setTimeout(r, 20))
    }
  } finally {
    await child.stop()
  }
  return {
    rate: last.rate,
    coldSeconds: (last.t - spawnedAt) / 1000,
    processCpu: last.cpu.other,
    natsCpu: last.cpu.nats,
    machine: last.cpu.machine,
  }
}

/** The auditor process, timed on its durable. */
const auditorRun = (setup: { server: NatsServer; th: TestHome; admin: NatsConnection }, n: number) =>
  drainRun(setup, n, AUDITOR_DURABLE, async () => {
    // VIGIL_BENCH_AUDITOR_NODE_OPTIONS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the auditor process;
    // VIGIL_BENCH_AUDITOR_MAIN runs another auditor entry point (e.g. a copy of an older version) for comparisons.
    const nodeOptions = process.env.VIGIL_BENCH_AUDITOR_NODE_OPTIONS
    const env = { VIGIL_LOG_LEVEL: "warn", ...(nodeOptions === undefined ? {} : { NODE_OPTIONS: nodeOptions }) }
    const other = process.env.VIGIL_BENCH_AUDITOR_MAIN
    return other === undefined
      ? await startService("auditor", setup.th, { env, readyTimeoutMs: 60_000 })
      : spawnNode([other], setup.th.env(env))
  })

/**
 * test/bench/audit-floor.ts on a durable with the auditor durable's settings: what verifying, appending and
 * publishing a record per event costs with nothing else, on the same kind of server and events.
 */
const floorRun = async (setup: { server: NatsServer; th: TestHome; admin: NatsConnection }, n: number) => {
  const durable = "bench_floor"
  const jsm = await jetstreamManager(setup.admin)
  const auditorDurable = await jsm.consumers.info(STREAM_EVENTS, AUDITOR_DURABLE)
  const { ack_policy, ack_wait, max_ack_pending, max_deliver } = auditorDurable.config
  await jsm.consumers.add(STREAM_EVENTS, {
    durable_name: durable,
    filter_subject: EVENTS_ALL,
    deliver_policy: DeliverPolicy.All,
    ack_policy,
    ...(ack_wait === undefined ? {} : { ack_wait }),
    ...(max_ack_pending === undefined ? {} : { max_ack_pending }),
    ...(max_deliver === undefined ? {} : { max_deliver }),
  })
  const dir = mkdtempSync(join(tmpdir(), "vigil-bench-floor-"))
  try {
    const keysFile = join(dir, "keys.json")
    writeFileSync(
      keysFile,
      JSON.stringify(
        Object.fromEntries(
          Object.values(setup.th.keys).map((k) => [k.kid, Buffer.from(k.publicKey).toString("base64")]),
        ),
      ),
    )
    const seed = setup.server.creds.admin?.seed ?? ""
    const floor = join(REPO, "test", "bench", "audit-floor.ts")
    return await drainRun(setup, n, durable, async () =>
      spawnNode([floor, setup.server.url, seed, durable, keysFile, dir, String(n)], process.env, "inherit"),
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

interface IngestRound {
  readonly raw: number
  readonly verified: Omit<DrainRun, "coldSeconds">
  readonly auditor: DrainRun
  readonly floor: DrainRun
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

const describeCpu = (r: Omit<DrainRun, "coldSeconds">, who: string) =>
  `CPU ${who} ${pct(r.processCpu)}, nats-server ${pct(r.natsCpu)}, machine ${pct(r.machine)}`
const describeRun = (r: DrainRun, who: string) =>
  `${fmt(r.rate)}/s (${r.coldSeconds.toFixed(1)} s from spawn; ${describeCpu(r, who)})`

/**
 * One round: on a fresh server with N stored events, the raw consumer, the bus alone, then the auditor with its
 * settings (and `vigil audit verify` on its log); on a second fresh server with the same events, the floor.
 */
export const ingestRound = async (n: number, log: (s: string) => void, round: number): Promise<IngestRound> => {
  const a = await storedEvents(n)
  let raw: number
  let verified: Omit<DrainRun, "coldSeconds">
  let auditor: DrainRun
  let verify: Awaited<ReturnType<typeof cliVerify>>
  try {
    raw = await rawConsume(a.admin, n)
    verified = await verifiedConsume(a.server, a.th, a.admin, n)
    auditor = await auditorRun(a, n)
    verify = await cliVerify(a.th.home.root)
  } finally {
    await a.close()
  }
  const b = await storedEvents(n)
  let floor: DrainRun
  try {
    floor = await floorRun(b, n)
  } finally {
    await b.close()
  }
  log(
    `  round ${round}: raw consume ${fmt(raw)}/s, bus consumeBatches alone ${fmt(verified.rate)}/s ` +
      `(${describeCpu(verified, "benchmark process")}), auditor ${describeRun(auditor, "auditor")}, ratio ` +
      `${(auditor.rate / raw).toFixed(3)}; floor ${describeRun(floor, "floor")}` +
      (typeof verify === "string" ? `; audit verify failed: ${verify}` : `; audit verify ${fmt(verify.rate)}/s`),
  )
  return { raw, verified, auditor, floor, ...(typeof verify === "string" ? {} : { verify }) }
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
    const cpu = (k: (r: IngestRound) => Omit<DrainRun, "coldSeconds">, who: string) =>
      `CPU ${who} ${pct(med((r) => k(r).processCpu))}, nats-server ${pct(med((r) => k(r).natsCpu))}, machine ` +
      `${pct(med((r) => k(r).machine))} busy; ` +
      `${fmt(med((r) => ((k(r).processCpu + k(r).natsCpu) / k(r).rate) * 1e6))} µs of CPU per event (both processes)`
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
        value: med((r) => r.verified.rate),
        unit: "events/s",
        detail: `rounds ${per((r) => r.verified.rate)}; ${cpu((r) => r.verified, "benchmark process")}`,
      },
      {
        name: "auditor ingest (verify, append + commit, OCSF record, ack)",
        config: "auditor process, batches ≤ 2,000 / 100 ms, pull 1,000",
        value: auditor,
        unit: "events/s",
        detail: `rounds ${per((r) => r.auditor.rate)}; from spawn ${per((r) => r.auditor.coldSeconds, 1)} s; ${cpu((r) => r.auditor, "auditor")}`,
      },
      {
        name: "ratio auditor / raw",
        config: "same server, same stream",
        value: auditor / raw,
        unit: "×",
        detail:
          `per round ${results.map((r) => (r.auditor.rate / r.raw).toFixed(3)).join(" / ")}; auditor / bus alone ` +
          `${(auditor / med((r) => r.verified.rate)).toFixed(2)}, auditor / floor ` +
          `${(auditor / med((r) => r.floor.rate)).toFixed(2)}; target ${fmt(INGEST_TARGET)} events/s: ` +
          (auditor >= INGEST_TARGET ? "met" : "missed"),
      },
      {
        name: "floor: verify signature + append + record + ack, nothing else",
        config: "test/bench/audit-floor.ts, durable with the auditor's settings",
        value: med((r) => r.floor.rate),
        unit: "events/s",
        detail: `rounds ${per((r) => r.floor.rate)}; ${cpu((r) => r.floor, "floor")}; fresh server of its own`,
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
        "stream. The auditor figure is timed by its OCSF records, counted in VIGIL_AUDIT (stream info every 5 ms; " +
        "its checkpoint notes there, one per ~1,000 leaves, count too): " +
        "from the 10% mark to the N-th record (start-up and JIT warm-up left out), and the run counts once its " +
        "durable's ack floor reaches N; it covers verification (schema, signature, manifest), the " +
        "fsync'd tile-log commit per batch, one OCSF record per event published and acked by JetStream, and the " +
        'checkpoints signed meanwhile; "from spawn" runs from the process start to the N-th record. Nothing asks ' +
        "the server about the consumer during the timed part: on nats-server 2.9 each consumer info recounts its " +
        "pending messages by scanning the stream, and polling it every 5 ms (as this benchmark did until " +
        "2026-12-06) took a third of a core from the run it measured. The floor (test/bench/audit-floor.ts, its own " +
        "process on a second fresh server with the same kind of events, timed the same way) does only what any " +
        "auditor must per event: JSON parse, the RFC 8785 signing bytes, Ed25519 on the same SignaturePool worker, " +
        "a SHA-256 leaf hash, the event appended to one file fsync'd per batch of ≤ 2,000 / 100 ms, one small " +
        "OCSF-shaped record published with a Nats-Msg-Id and acked by the stream (same ackedPublisher), then the " +
        "ack; no schema, manifest or subject checks, no tiles, checkpoints, alerts or related-event lookups. CPU " +
        "shares are /proc CPU time over the timed part (100% = one core); µs per event add the consuming process " +
        "and nats-server.",
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
          "bus alone, the auditor and `audit verify`, and another for the floor",
        "auditor settings":
          "defaults (batches ≤ 2,000 events or 100 ms, pull 1,000; checkpoint every 1,000 leaves or 1 s)",
      },
    }
  },
}
