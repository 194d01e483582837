import { availableParallelism } from "node:os"
import { performance } from "node:perf_hooks"
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import {
  ackedPublisher,
  BusConfig,
  CONSUMER_DEFAULTS,
  ConsumeError,
  consume,
  DEFAULTS,
  DeadLetters,
  jetStreamOptions,
  Nats,
  Publisher,
  Signer,
  Trust,
  Verifier,
} from "@vigil/bus"
import {
  type Ed25519,
  keyIdOf,
  nobleEd25519,
  nodeEd25519,
  nodeVerifyAsync,
  randomSeed,
  type SignatureChecker,
  SignaturePool,
  sodiumEd25519,
} from "@vigil/crypto"
import {
  DLQ_ALL,
  type Draft,
  durableName,
  EVENTS_ALL,
  encodeEvent,
  eventSubject,
  eventTypeFilter,
  inboxPrefix,
  type SigningKey,
  STREAM_DLQ,
  STREAM_EVENTS,
  signEvent,
  signingBytes,
  verifyEvent,
  verifyEventAsync,
} from "@vigil/events"
import { buildManifest, ManifestChain, signManifest } from "@vigil/keys"
import { NATS_SERVER_BIN, type NatsServer, startNats } from "@vigil/test"
import { Context, Effect, Layer, Option, Redacted, Result } from "effect"
import {
  type Benchmark,
  type BenchOptions,
  type BenchRow,
  type CpuShare,
  cpuMeter,
  median,
  pct,
  procCpuSeconds,
} from "./lib.ts"

/**
 * Signed publish → verified consume throughput, as a ratio of raw JetStream publish → consume on the same server in
 * the same run. Raw and signed rounds alternate so drift of the machine hits both alike.
 *
 * Both modes: one publishing connection (user `inference`) and one consuming connection (user `policy`, durable
 * `policy__intent_proposed`, explicit ack, the provisioner's consumer settings) in this process; a bounded window
 * of in-flight acked publishes; the round's time runs from the first publish until the consumer has acked the
 * last message and flushed its acks. Each round gets a fresh stream and durable.
 */

const DEFAULT_N = 20_000
const DEFAULT_ROUNDS = 3
/** In-flight acked publishes, both modes (`--window=`). */
const DEFAULT_WINDOW = 256
/** `consume({ max_messages })`, both modes (`--batch=`; libs/bus's default `batch`). */
const DEFAULT_BATCH = 256

const PRODUCER = "inference" as const
const CONSUMER = "policy" as const
const TYPE = "intent.proposed" as const
const DURABLE = durableName(CONSUMER, TYPE)
const SESSION = "bench-session"
const SUBJECT = eventSubject(SESSION, TYPE)
const TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/** A realistic intent: a tool call with arguments and a reason (encodes to ~700 bytes signed). */
const draftFor = (i: number): Draft<typeof TYPE> => ({
  type: TYPE,
  session: SESSION,
  trace: TRACE,
  data: {
    tool: "fs.search",
    args: {
      root: "/home/user/projects/vigil/workspace",
      pattern: "TODO|FIXME|XXX",
      include: ["**/*.ts", "**/*.md", "**/*.json"],
      exclude: ["node_modules/**"],
      maxResults: 200,
      caseSensitive: false,
    },
    reason:
      "The user asked for an overview of the open work items in the project; searching the workspace for " +
      "the usual markers gives the list to summarise.",
    step: i % 50,
  },
})

interface Keys {
  readonly producer: SigningKey
  /** The consuming service's key: it signs the DLQ records of what it refuses. */
  readonly consumer: SigningKey
  readonly chain: ManifestChain
}

/** A root key, a producer key, and a real manifest chain (v1, root-signed) granting it the catalog's types. */
const makeKeys = (): Keys => {
  const rootSeed = randomSeed()
  const rootPub = nodeEd25519.publicKey(rootSeed)
  const seed = randomSeed()
  const publicKey = nodeEd25519.publicKey(seed)
  const producer: SigningKey = { principal: PRODUCER, kid: keyIdOf(publicKey), seed, publicKey }
  const consumerSeed = randomSeed()
  const consumerPublicKey = nodeEd25519.publicKey(consumerSeed)
  const consumer: SigningKey = {
    principal: CONSUMER,
    kid: keyIdOf(consumerPublicKey),
    seed: consumerSeed,
    publicKey: consumerPublicKey,
  }
  const issuedAt = new Date(Date.now() - 60_000).toISOString()
  const unsigned = buildManifest({
    deployment: "bench",
    version: 1,
    issuedAt,
    prev: null,
    keys: [
      { principal: PRODUCER, publicKey },
      { principal: CONSUMER, publicKey: consumerPublicKey },
    ],
  })
  const chain = ManifestChain.make(rootPub, [signManifest(rootSeed, unsigned)])
  if (Result.isFailure(chain)) throw new Error(`manifest: ${chain.failure.message}`)
  return { producer, consumer, chain: chain.success }
}

/** Fresh VIGIL_EVENTS stream and durable, as libs/bus's provisioner configures them. */
const resetStream = async (jsm: JetStreamManager): Promise<void> => {
  await jsm.streams.delete(STREAM_EVENTS).catch(() => false)
  await jsm.streams.add({
    name: STREAM_EVENTS,
    subjects: [EVENTS_ALL],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: 1,
    duplicate_window: DEFAULTS.duplicateWindowMs * 1_000_000,
    max_msg_size: 1024 * 1024,
    allow_direct: true,
  })
  await jsm.consumers.add(STREAM_EVENTS, {
    durable_name: DURABLE,
    filter_subject: eventTypeFilter(TYPE),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: CONSUMER_DEFAULTS.ackWaitMs * 1_000_000,
    max_deliver: CONSUMER_DEFAULTS.maxDeliver,
    max_ack_pending: CONSUMER_DEFAULTS.maxAckPending,
  })
}

/** Runs `task(0..n-1)` with at most `window` promises in flight. */
const windowed = async (n: number, window: number, task: (i: number) => Promise<unknown>): Promise<void> => {
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      await task(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker))
}

interface Round {
  readonly mode: "raw" | "raw-acked" | "signed"
  readonly seconds: number
  readonly rate: number
  readonly cpu: CpuShare
}

interface Ctx {
  readonly window: number
  readonly batch: number
  readonly server: NatsServer
  readonly admin: NatsConnection
  readonly jsm: JetStreamManager
  readonly keys: Keys
  readonly n: number
  /** Bytes of one signed event on the wire; raw payloads have the same size. */
  readonly payload: Uint8Array
}

/**
 * Raw payloads of the signed event's size, published with the client's `js.publish` or (`acked`) with libs/bus
 * `ackedPublisher`, the transport the signed rounds' Publisher uses; consumed and acked by a plain pull consumer.
 */
const rawRound = async (ctx: Ctx, round: number, transport: "js" | "acked" = "js"): Promise<Round> => {
  await resetStream(ctx.jsm)
  const pubNc = await ctx.server.connect(PRODUCER)
  const subNc = await ctx.server.connect(CONSUMER)
  try {
    // A secured server has an account per role (ADR 0017); an unsecured one only the server's own API.
    const opts = (role: string) => (ctx.server.secure ? jetStreamOptions(role) : { checkAPI: false })
    const js = jetstream(pubNc, opts(PRODUCER))
    const consumer = await jetstream(subNc, opts(CONSUMER)).consumers.get(STREAM_EVENTS, DURABLE)
    const messages = await consumer.consume({ max_messages: ctx.batch })
    let consumed = 0
    const done = (async () => {
      for await (const m of messages) {
        m.ack()
        if (++consumed === ctx.n) break
      }
    })()
    const meter = cpuMeter(ctx.server.pid)
    const t0 = performance.now()
    const prefix = `raw-${transport}-${round}-`
    if (transport === "js") {
      await windowed(ctx.n, ctx.window, (i) => js.publish(SUBJECT, ctx.payload, { msgID: `${prefix}${i}` }))
    } else {
      const acked = ackedPublisher(pubNc, inboxPrefix(PRODUCER), 10_000)
      await windowed(ctx.n, ctx.window, (i) => acked.publish(SUBJECT, ctx.payload, { msgId: `${prefix}${i}` }))
      acked.close()
    }
    await done
    await subNc.flush()
    const seconds = (performance.now() - t0) / 1000
    const cpu = meter.stop()
    await messages.close()
    if (consumed !== ctx.n) throw new Error(`raw round consumed ${consumed} of ${ctx.n}`)
    return { mode: transport === "js" ? "raw" : "raw-acked", seconds, rate: ctx.n / seconds, cpu }
  } finally {
    await pubNc.close()
    await subNc.close()
  }
}

const busLayers = (ctx: Ctx) => {
  const settings = (user: typeof PRODUCER | typeof CONSUMER) => {
    const creds = ctx.server.creds[user]
    return BusConfig.layer({
      url: ctx.server.url,
      user,
      ...(creds === undefined ? {} : { nkeySeed: Option.some(Redacted.make(creds.seed)) }),
    })
  }
  const producer = Publisher.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(Nats.layer, Signer.layer(ctx.keys.producer))),
    Layer.provideMerge(settings(PRODUCER)),
  )
  const consumer = DeadLetters.layer.pipe(
    Layer.provideMerge(
      Layer.mergeAll(Nats.layer, Signer.layer(ctx.keys.consumer), Trust.layerStatic(ctx.keys.chain), Verifier.layer()),
    ),
    Layer.provideMerge(settings(CONSUMER)),
  )
  return { producer, consumer }
}

const signedRound = async (ctx: Ctx): Promise<Round> => {
  await resetStream(ctx.jsm)
  const drafts = Array.from({ length: ctx.n }, (_, i) => draftFor(i))
  const layers = busLayers(ctx)
  return Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const prod = yield* Layer.build(layers.producer)
        const cons = yield* Layer.build(layers.consumer)
        const publisher = Context.get(prod, Publisher)
        const { nc: subNc } = Context.get(cons, Nats)
        let handled = 0
        let finish = () => {}
        const done = new Promise<void>((resolve) => {
          finish = resolve
        })
        const handle = yield* consume<typeof TYPE, never>(
          { durable: DURABLE, stream: STREAM_EVENTS, batch: ctx.batch },
          () =>
            Effect.sync(() => {
              if (++handled === ctx.n) finish()
            }),
        ).pipe(Effect.provide(cons))
        const meter = cpuMeter(ctx.server.pid)
        const t0 = performance.now()
        yield* Effect.forEach(drafts, (d) => publisher.publish(d), { concurrency: ctx.window, discard: true })
        yield* Effect.promise(() => done)
        yield* Effect.promise(() => subNc.flush())
        const seconds = (performance.now() - t0) / 1000
        const cpu = meter.stop()
        const s = handle.stats
        if (s.handled !== ctx.n || s.rejected !== 0 || s.failed !== 0) {
          return yield* Effect.die(new Error(`signed round: ${JSON.stringify(s)} (expected ${ctx.n} handled)`))
        }
        return { mode: "signed", seconds, rate: ctx.n / seconds, cpu } as const
      }),
    ).pipe(Effect.mapError((e) => (e instanceof ConsumeError ? new Error(`consume: ${String(e.cause)}`) : e))),
  )
}

/** Operations per second of `op`, run for at least `minMs` (and at least `minOps` times). */
const rate = (op: (i: number) => void, minMs = 1_000, minOps = 200): number => {
  for (let i = 0; i < 50; i++) op(i) // warm-up
  let ops = 0
  const t0 = performance.now()
  let elapsed = 0
  while (elapsed < minMs || ops < minOps) {
    for (let k = 0; k < 50; k++) op(ops++)
    elapsed = performance.now() - t0
  }
  return (ops / elapsed) * 1000
}

/** In-process sign and verify rates (no broker): full envelope path and the bare Ed25519 primitive. */
const ED_SIGN = "Ed25519 sign, primitive only"
const ED_VERIFY = "Ed25519 verify, primitive only"
const IMPL_NAMES = { sodium: "libsodium (sodium-native)", node: "node:crypto", noble: "@noble/ed25519" } as const

/** verifyEventAsync with `inFlight` verifications outstanding for at least `minMs`; also event-loop CPU per event. */
const asyncVerifyRate = async (
  wire: ReadonlyArray<Uint8Array>,
  keys: Keys,
  at: number,
  inFlight: number,
  signatures: SignatureChecker,
  minMs = 1_000,
) => {
  const opts = {
    keys: keys.chain,
    maxBytes: DEFAULTS.maxEventBytes,
    subject: SUBJECT,
    receivedAt: at,
    maxSkewMs: DEFAULTS.duplicateWindowMs,
    signatures,
  }
  const mainPath = `/proc/${process.pid}/task/${process.pid}/stat`
  let ops = 0
  const t0 = performance.now()
  const m0 = procCpuSeconds(mainPath)
  const worker = async () => {
    while (performance.now() - t0 < minMs) {
      const r = await verifyEventAsync(wire[ops++ % wire.length] as Uint8Array, opts)
      if (!r.ok) throw new Error(`verify: ${r.reason} ${r.detail}`)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const elapsed = performance.now() - t0
  return { rate: (ops / elapsed) * 1000, mainUsPerOp: ((procCpuSeconds(mainPath) - m0) * 1e6) / ops }
}

const cryptoRates = async (keys: Keys): Promise<BenchRow[]> => {
  const rows: BenchRow[] = []
  const events = Array.from({ length: 1_000 }, (_, i) => signEvent(keys.producer, draftFor(i)))
  const wire = events.map((e) => encodeEvent(e))
  const messages = events.map(({ sig: _sig, ...unsigned }) => signingBytes(unsigned))
  const sigs = events.map((e) => new Uint8Array(Buffer.from(e.sig, "base64url")))
  const at = Date.now()
  for (const ed of [sodiumEd25519, nodeEd25519, nobleEd25519] as ReadonlyArray<Ed25519>) {
    const impl = IMPL_NAMES[ed.name]
    const minMs = ed.name === "noble" ? 2_000 : 1_000
    const sign = rate((i) => signEvent(keys.producer, draftFor(i), ed), minMs)
    const verify = rate((i) => {
      const r = verifyEvent(wire[i % wire.length] as Uint8Array, {
        keys: keys.chain,
        maxBytes: DEFAULTS.maxEventBytes,
        subject: SUBJECT,
        receivedAt: at,
        maxSkewMs: DEFAULTS.duplicateWindowMs,
        ed,
      })
      if (!r.ok) throw new Error(`verify: ${r.reason} ${r.detail}`)
    }, minMs)
    const rawSign = rate((i) => ed.sign(messages[i % messages.length] as Uint8Array, keys.producer.seed), minMs)
    const rawVerify = rate((i) => {
      const j = i % messages.length
      if (!ed.verify(sigs[j] as Uint8Array, messages[j] as Uint8Array, keys.producer.publicKey)) throw new Error("!")
    }, minMs)
    rows.push(
      { name: "signEvent (envelope + RFC 8785 + sign)", config: impl, value: sign, unit: "ops/s" },
      {
        name: "verifyEvent (JSON + schemas + RFC 8785 + verify + manifest)",
        config: impl,
        value: verify,
        unit: "ops/s",
      },
      { name: ED_SIGN, config: impl, value: rawSign, unit: "ops/s" },
      { name: ED_VERIFY, config: impl, value: rawVerify, unit: "ops/s" },
    )
  }
  const pool = new SignaturePool()
  try {
    const checkers = [
      { name: `SignaturePool, ${pool.workers} worker thread(s)`, config: IMPL_NAMES.sodium, checker: pool },
      {
        name: "libuv's thread pool",
        config: IMPL_NAMES.node,
        checker: { verify: nodeVerifyAsync } satisfies SignatureChecker,
      },
    ]
    const offThread: BenchRow[] = []
    for (const c of checkers) {
      await asyncVerifyRate(wire, keys, at, DEFAULT_BATCH, c.checker, 200) // warm-up
      const r = await asyncVerifyRate(wire, keys, at, DEFAULT_BATCH, c.checker)
      offThread.push({
        name: `verifyEventAsync, ${DEFAULT_BATCH} in flight, Ed25519 on ${c.name}`,
        config: c.config,
        value: r.rate,
        unit: "ops/s",
        detail: `event loop ${r.mainUsPerOp.toFixed(0)} µs CPU per event${c.checker === pool ? " (what consume() uses)" : ""}`,
      })
    }
    rows.splice(2, 0, ...offThread)
  } finally {
    await pool.close()
  }
  return rows
}

interface Series {
  readonly raw: ReadonlyArray<Round>
  readonly rawAcked: ReadonlyArray<Round>
  readonly signed: ReadonlyArray<Round>
}

const runSeries = async (
  shape: { readonly window: number; readonly batch: number },
  secure: boolean,
  keys: Keys,
  n: number,
  rounds: number,
  log: (s: string) => void,
): Promise<Series> => {
  const server = await startNats({ secure })
  const admin = await server.connect("admin")
  const raw: Round[] = []
  const rawAcked: Round[] = []
  const signed: Round[] = []
  try {
    const jsm = await jetstreamManager(admin)
    await jsm.streams.add({ name: STREAM_DLQ, subjects: [DLQ_ALL], storage: StorageType.File })
    const payload = encodeEvent(signEvent(keys.producer, draftFor(0)))
    const ctx: Ctx = { server, admin, jsm, keys, n, payload, window: shape.window, batch: shape.batch }
    // Warm-up (JIT, connections, file store), not measured.
    const warm = { ...ctx, n: Math.min(n, 2_000) }
    await rawRound(warm, -1)
    await rawRound(warm, -1, "acked")
    await signedRound(warm)
    const label = secure ? "secured" : "unsecured"
    const show = (r: Round, i: number) =>
      log(
        `  ${label} ${r.mode.padEnd(9)} round ${i + 1}: ${Math.round(r.rate).toLocaleString("en-US")} msg/s ` +
          `(${r.seconds.toFixed(2)} s; CPU nats-server ${pct(r.cpu.nats)}, node ${pct(r.cpu.node)}, ` +
          `event loop ${pct(r.cpu.nodeMain)} + ${pct(r.cpu.nodeMainWait)} waiting for a CPU)`,
      )
    for (let i = 0; i < rounds; i++) {
      const r = await rawRound(ctx, i)
      show(r, i)
      raw.push(r)
      const a = await rawRound(ctx, i, "acked")
      show(a, i)
      rawAcked.push(a)
      const s = await signedRound(ctx)
      show(s, i)
      signed.push(s)
    }
  } finally {
    await admin.close().catch(() => undefined)
    await server.stop()
  }
  return { raw, rawAcked, signed }
}

const med = (rs: ReadonlyArray<Round>, f: (c: CpuShare) => number): number => median(rs.map((r) => f(r.cpu)))

const cpuDetail = (rs: ReadonlyArray<Round>): string =>
  `CPU: nats-server ${pct(med(rs, (c) => c.nats))}, node ${pct(med(rs, (c) => c.node))} ` +
  `(event loop ${pct(med(rs, (c) => c.nodeMain))}), other processes ${pct(med(rs, (c) => c.others))}`

const seriesRows = (config: string, s: Series): BenchRow[] => {
  const rate = (rs: ReadonlyArray<Round>) => median(rs.map((r) => r.rate))
  const rateRow = (name: string, rs: ReadonlyArray<Round>): BenchRow => ({
    name,
    config,
    value: rate(rs),
    unit: "msg/s",
    detail: `rounds ${rs.map((r) => Math.round(r.rate).toLocaleString("en-US")).join(" / ")}; ${cpuDetail(rs)}`,
  })
  /** Medians' ratio, and each round's against the round of `to` it alternated with. */
  const ratioRow = (name: string, of: ReadonlyArray<Round>, to: ReadonlyArray<Round>): BenchRow => ({
    name,
    config,
    value: rate(of) / rate(to),
    unit: "×",
    detail: `per round ${of.map((r, i) => (r.rate / (to[i] as Round).rate).toFixed(2)).join(" / ")}`,
  })
  return [
    rateRow("raw JetStream publish → consume", s.raw),
    rateRow("signed publish → verified consume", s.signed),
    ratioRow("ratio signed / raw", s.signed, s.raw),
    rateRow("raw publish with the Publisher's transport (ackedPublisher) → consume", s.rawAcked),
    ratioRow("ratio signed / raw, same publish transport", s.signed, s.rawAcked),
  ]
}

/** What limited a set of rounds, read from their CPU shares. */
const bottleneck = (rs: ReadonlyArray<Round>): string => {
  const cores = availableParallelism()
  const busy = med(rs, (c) => c.nats + c.node + c.others)
  const loop = med(rs, (c) => c.nodeMain)
  const wait = med(rs, (c) => c.nodeMainWait)
  const shares =
    `nats-server ${pct(med(rs, (c) => c.nats))}, node event loop ${pct(loop)} on CPU + ${pct(wait)} waiting for ` +
    `one, worker and other node threads ${pct(med(rs, (c) => c.node - c.nodeMain))}, other processes ` +
    `${pct(med(rs, (c) => c.others))}; machine ${pct(busy / cores)} busy`
  if (busy >= 0.9 * cores) return `the machine's ${cores} CPUs were saturated (${shares})`
  if (loop + wait >= 0.85) return `node's event loop was the bottleneck (${shares})`
  // A connection's messages are handled on one server thread, so a server near one core is the limit.
  if (med(rs, (c) => c.nats) >= 0.9) return `nats-server was the bottleneck (${shares})`
  return `no thread was saturated, so round trips limit it (${shares})`
}

/** One sentence per configuration on what limits each side, from the CPU shares measured in the rounds. */
const limits = (config: string, s: Series, ed: { sign: number; verify: number }): string => {
  const raw = median(s.raw.map((r) => r.rate))
  const edUs = 1e6 / ed.sign + 1e6 / ed.verify
  return (
    `${config}: raw: ${bottleneck(s.raw)}; signed: ${bottleneck(s.signed)}. Ed25519 sign + verify alone cost ` +
    `${edUs.toFixed(0)} µs of CPU per event (primitive rates in the table), so half the raw rate ` +
    `(${Math.round(raw / 2).toLocaleString("en-US")}/s) would need ${((raw / 2) * edUs * 1e-6).toFixed(1)} of ` +
    `the ${availableParallelism()} cores for the signatures alone.`
  )
}

/**
 * The acked-publish transport alone: `js.publish` (a request, a timer and two stack-capturing errors per message)
 * against libs/bus `ackedPublisher` (the Publisher's and the auditor's), same payload, window and Nats-Msg-Id, on one
 * unsecured server; alternating, `rounds` each, median reported. Client CPU per message from process.cpuUsage.
 */
const transportRows = async (n: number, window: number, rounds: number, log: (s: string) => void) => {
  const server = await startNats({})
  const nc = await server.connect()
  try {
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: "BENCH_TRANSPORT", subjects: ["bench.transport.>"] })
    const js = jetstream(nc, { checkAPI: false })
    const acked = ackedPublisher(nc, "_INBOX", 10_000)
    const payload = new Uint8Array(767).fill(120)
    const results = { "js.publish": [] as Array<[number, number]>, ackedPublisher: [] as Array<[number, number]> }
    let run = 0
    for (let r = 0; r < rounds; r++) {
      for (const mode of ["js.publish", "ackedPublisher"] as const) {
        const id = `${++run}-`
        const c0 = process.cpuUsage()
        const t0 = performance.now()
        await windowed(n, window, (i) =>
          mode === "js.publish"
            ? js.publish("bench.transport.x", payload, { msgID: id + i })
            : acked.publish("bench.transport.x", payload, { msgId: id + i }),
        )
        const seconds = (performance.now() - t0) / 1000
        const cpu = process.cpuUsage(c0)
        results[mode].push([n / seconds, (cpu.user + cpu.system) / n])
        log(
          `  transport ${mode} round ${r + 1}: ${Math.round(n / seconds)} msg/s, ${((cpu.user + cpu.system) / n).toFixed(1)} µs client CPU per message`,
        )
      }
    }
    acked.close()
    return (["js.publish", "ackedPublisher"] as const).map((mode): BenchRow => {
      const rates = results[mode].map(([rate]) => rate)
      const cpus = results[mode].map(([, c]) => c)
      return {
        name: `acked JetStream publish, transport alone: ${mode}`,
        config: "unsecured, 767-byte payloads with Nats-Msg-Id",
        value: Math.round(median(rates)),
        unit: "msg/s",
        detail: `rounds ${rates.map((x) => Math.round(x).toLocaleString("en-US")).join(" / ")}; client CPU ${cpus.map((x) => x.toFixed(1)).join(" / ")} µs per message`,
      }
    })
  } finally {
    await nc.close()
    await server.stop()
  }
}

export const busThroughput: Benchmark = {
  id: "bus-throughput",
  title: "Bus throughput: signed publish → verified consume vs raw JetStream",
  run: async (opts: BenchOptions) => {
    const n = opts.n ?? DEFAULT_N
    const shape = { window: opts.window ?? DEFAULT_WINDOW, batch: opts.batch ?? DEFAULT_BATCH }
    const rounds = opts.rounds ?? DEFAULT_ROUNDS
    const keys = makeKeys()
    const eventBytes = encodeEvent(signEvent(keys.producer, draftFor(0))).length
    opts.log(
      `bus-throughput: N = ${n} per round, ${rounds} × (raw, raw with ackedPublisher, signed) rounds, ${eventBytes}-byte events`,
    )
    opts.log("  in-process sign/verify rates…")
    const crypto = await cryptoRates(keys)
    const unsecured = await runSeries(shape, false, keys, n, rounds, opts.log)
    const secured = opts.quick ? undefined : await runSeries(shape, true, keys, n, rounds, opts.log)
    const transport = await transportRows(n, shape.window, rounds, opts.log)
    const rows: BenchRow[] = [
      ...seriesRows("unsecured", unsecured),
      ...(secured === undefined ? [] : seriesRows("secured (per-user nkeys + permissions)", secured)),
      ...transport,
      ...crypto,
    ]
    const rateOf = (name: string) => crypto.find((r) => r.name === name && r.config === IMPL_NAMES.sodium)?.value ?? 0
    const ed = { sign: rateOf(ED_SIGN), verify: rateOf(ED_VERIFY) }
    const notes = [
      `CPU shares are /proc/<pid>/stat CPU time over the timed part of each round divided by its wall time (median; ` +
        `100% = one core; "other processes" is the rest of the machine's busy time from /proc/stat, a noise gauge). ` +
        `What limits each side: ${limits("unsecured", unsecured, ed)}` +
        (secured === undefined ? "" : ` ${limits("secured", secured, ed)}`),
      "The raw rows publish with the client's `js.publish`; the signed rows with the libs/bus Publisher, whose " +
        "transport is `ackedPublisher` (plain publishes with a reply token under one inbox, one subscription for the " +
        'acks, ADR 0014). The "same publish transport" rows publish raw payloads with `ackedPublisher` too, so their ' +
        "ratio is the cost of signing and verifying alone; the transport rows compare the two publish calls alone.",
    ]
    return {
      id: "bus-throughput",
      title: busThroughput.title,
      rows,
      notes,
      params: {
        "N (events per round)": n,
        rounds: `${rounds} raw (js.publish) + ${rounds} raw (ackedPublisher) + ${rounds} signed, alternating, median reported (after one unmeasured warm-up of each)`,
        "event size": `${eventBytes} bytes (intent.proposed with traceparent); raw payloads the same size`,
        "publish window": `${shape.window} acked publishes in flight, both modes`,
        "pull batch": `consume({ max_messages: ${shape.batch} }), durable with explicit ack, max_ack_pending ${CONSUMER_DEFAULTS.maxAckPending}`,
        server: `nats-server spawned by startNats (${NATS_SERVER_BIN}), file store in a temp dir, one per configuration`,
      },
    }
  },
}
