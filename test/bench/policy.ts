import { spawn } from "node:child_process"
import { join } from "node:path"
import { AckPolicy, DeliverPolicy, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { ackedPublisher } from "@vigil/bus"
import {
  type Event,
  encodeEvent,
  eventSubject,
  eventTypeFilter,
  inboxPrefix,
  STREAM_EVENTS,
  signEvent,
} from "@vigil/events"
import { compileBundleOrThrow, POLICIES_DIR, packBundle, publishBundle, signedBundleFrom } from "@vigil/policy"
import { Effect } from "effect"
import { type NatsServer, prepareHome, startNats, startService } from "../harness/index.ts"
import { type Benchmark, type BenchRow, cpuMeter, median } from "./lib.ts"

const GRANTED = "/home/ana/Documents"
const INTENTS = [
  { tool: "fs.read", args: { path: `${GRANTED}/notes.txt` } },
  { tool: "fs.list", args: { path: `${GRANTED}/Projects` } },
  { tool: "fs.delete", args: { path: `${GRANTED}/old.txt` } },
  { tool: "fs.read", args: { path: "/home/ana/Finance/salaries.xlsx" } },
  { tool: "fs.write", args: { path: `${GRANTED}/draft.txt`, content: "x" } },
] as const

type Shape = { readonly tool: (typeof INTENTS)[number]["tool"]; readonly args: Record<string, string> }

/** The k-th intent: one of the five shapes, or (distinct) the same shape on a file path no other intent uses. */
const intentAt = (k: number, distinct: boolean): Shape => {
  const i = INTENTS[k % INTENTS.length] as (typeof INTENTS)[number]
  if (!distinct) return { tool: i.tool, args: { ...i.args } }
  return { tool: i.tool, args: { ...i.args, path: i.args.path.replace(/(\.[a-z]+)?$/u, `-${k}$1`) } }
}

const quantile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number

/**
 * test/bench/echo-consumer.ts as a process on its own durable over `intent.proposed`: the bus path of the policy
 * service (pull, explicit ack, acked publish of the answer) without its work.
 */
const startEcho = async (server: NatsServer, admin: NatsConnection) => {
  const durable = "bench_echo"
  const jsm = await jetstreamManager(admin)
  await jsm.consumers.add(STREAM_EVENTS, {
    durable_name: durable,
    filter_subject: eventTypeFilter("intent.proposed"),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.New,
    max_ack_pending: 2_048,
  })
  const seed = server.creds.admin?.seed ?? ""
  const child = spawn(process.execPath, [join(import.meta.dirname, "echo-consumer.ts"), server.url, seed, durable], {
    stdio: ["ignore", "pipe", "inherit"],
  })
  const exited = new Promise<void>((r) => child.once("exit", () => r()))
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once("data", () => resolve())
    child.once("exit", (code) => reject(new Error(`echo consumer exited (${code}) before it was ready`)))
  })
  return {
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      await exited
      await jsm.consumers.delete(STREAM_EVENTS, durable).catch(() => undefined)
    },
  }
}

/**
 * Policy decisions: the Cedar engine alone (pre-parsed bundle, realistic requests), and intent → decision latency
 * through the real bus and the real policy service process at a steady offered load.
 */
export const policyBench: Benchmark = {
  id: "policy",
  title: "Policy: engine decisions/s and intent → decision latency over the bus",
  run: async (opts) => {
    const rows: BenchRow[] = []
    // The five shapes repeat, so the engine's answer cache is off here: every decision reaches Cedar.
    const engine = compileBundleOrThrow(packBundle(POLICIES_DIR, null), { answerCache: 0 })
    const device = { id: "bench", managed: false, os: "linux" }
    let n = 0
    const t0 = performance.now()
    while (performance.now() - t0 < 3_000) {
      const i = INTENTS[n % INTENTS.length] as (typeof INTENTS)[number]
      engine.decideIntent(i, { grantedFolders: [GRANTED], role: "staff", device })
      n++
    }
    const engineRate = n / ((performance.now() - t0) / 1000)
    rows.push({
      name: "engine.decideIntent (build request + Cedar, pre-parsed)",
      config: "default bundle, no answer cache",
      value: Math.round(engineRate),
      unit: "decisions/s",
      detail: `${n} decisions over 3 s, 5 intent shapes`,
    })
    opts.log(`engine: ${Math.round(engineRate)} decisions/s`)

    const rate = Number(process.env.VIGIL_BENCH_POLICY_RATE ?? 1_000)
    const seconds = opts.n === undefined ? 10 : Math.max(1, Math.round(opts.n / rate))
    const warmSeconds = 3
    const rounds = opts.rounds ?? 3
    const server = await startNats({ secure: true })
    const th = await prepareHome(server)
    const admin = await server.connect("admin")
    const inference = await server.connect("inference")
    let answering: { pid: number; stop: () => Promise<unknown> } | undefined
    try {
      await publishBundle(admin, await Effect.runPromise(signedBundleFrom(th.home, null)))
      const sent = new Map<string, number>()
      const latencies: number[] = []
      const sub = admin.subscribe("vigil.ev.*.decision.made", {
        callback: (_e, m) => {
          const d = m.json<Event<"decision.made">>()
          const at = sent.get(d.data.intent)
          if (at !== undefined) {
            latencies.push(performance.now() - at)
            sent.delete(d.data.intent)
          }
        },
      })
      await admin.flush()
      // The inference service's transport (the libs/bus Publisher's), so the load generator costs what it would.
      const intents = ackedPublisher(inference, inboxPrefix("inference"), 10_000)
      const publishIntent = (ev: Event<"intent.proposed">, bytes: Uint8Array) =>
        intents.publish(eventSubject(ev.session, ev.type), bytes, { msgId: ev.id })
      /** Unmeasured intents of the five shapes: JIT, the wasm engine's first calls, the answer cache. */
      const warmUp = async (count: number, session: string) => {
        const warm: Promise<unknown>[] = []
        for (let k = 0; k < count; k++) {
          const i = INTENTS[k % INTENTS.length] as (typeof INTENTS)[number]
          const ev = signEvent(th.keys.inference, {
            type: "intent.proposed",
            session,
            data: { tool: i.tool, args: { ...i.args }, reason: "bench", step: 0 },
          })
          warm.push(publishIntent(ev, encodeEvent(ev)))
        }
        await Promise.all(warm)
        await new Promise((r) => setTimeout(r, 3_000))
      }
      /**
       * One load: `runSeconds` at the offered rate. Intents are signed before the timed loop (the inference service
       * signs them, not the policy path), so the loop only publishes.
       */
      let offset = 0 // distinct paths never repeat across runs (warm-up included), or the answer cache would hit
      const run = async (distinct: boolean, runSeconds: number, session: string) => {
        const total = rate * runSeconds
        const base = offset
        offset += total
        const events = Array.from({ length: total }, (_, k) => {
          const i = intentAt(base + k, distinct)
          return signEvent(th.keys.inference, {
            type: "intent.proposed",
            session: `${session}${k % 50}`,
            data: { tool: i.tool, args: i.args, reason: "bench", step: 0 },
          })
        })
        const wire = events.map((ev) => encodeEvent(ev))
        sent.clear()
        latencies.length = 0
        const meter = cpuMeter(server.pid, answering?.pid)
        const start = performance.now()
        const pending: Promise<unknown>[] = []
        // Offered load: one intent every 1/rate seconds (Poisson-free, evenly spaced), published without waiting.
        for (let k = 0; k < total; k++) {
          const due = start + (k / rate) * 1000
          const wait = due - performance.now()
          if (wait >= 1) await new Promise((r) => setTimeout(r, wait))
          const ev = events[k] as Event<"intent.proposed">
          sent.set(ev.id, performance.now())
          pending.push(publishIntent(ev, wire[k] as Uint8Array))
        }
        await Promise.all(pending)
        const deadline = performance.now() + 30_000
        while (latencies.length < total && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50))
        const wall = (performance.now() - start) / 1000
        const cpu = meter.stop()
        return {
          total,
          achieved: total / wall,
          sorted: [...latencies].sort((a, b) => a - b),
          // Shares of one CPU over the round (its tail while the last answers arrive included).
          serviceCpu: cpu.other,
          natsCpu: cpu.nats,
          benchCpu: cpu.node,
        }
      }
      const measure = async (distinct: boolean, who: string, which: string) => {
        // Same load unmeasured first: JIT, the engine's answer cache and the broker settle into this load's shape.
        await run(distinct, warmSeconds, `warm-${who}-${distinct ? "d" : "r"}`)
        const round = async (r: number) => {
          await new Promise((res) => setTimeout(res, 500))
          const { total, sorted, serviceCpu, natsCpu, benchCpu } = await run(
            distinct,
            seconds,
            `${who}-${distinct ? "distinct" : "repeat"}${r}-`,
          )
          return {
            serviceCpu,
            natsCpu,
            benchCpu,
            p50: quantile(sorted, 0.5),
            p90: quantile(sorted, 0.9),
            p99: quantile(sorted, 0.99),
            max: sorted.at(-1) ?? Number.NaN,
            decided: sorted.length,
            total,
          }
        }
        const results: Array<Awaited<ReturnType<typeof round>>> = []
        for (let r = 0; r < rounds; r++) results.push(await round(r))
        const med = (f: (x: (typeof results)[number]) => number) => median(results.map(f))
        const per = (f: (x: (typeof results)[number]) => number) => results.map((x) => f(x).toFixed(1)).join(" / ")
        const pct = (f: (x: (typeof results)[number]) => number) => `${Math.round(100 * med(f))}%`
        opts.log(
          `${who} (${which}): p50 ${per((x) => x.p50)} ms, p90 ${per((x) => x.p90)} ms, p99 ${per((x) => x.p99)} ms; ` +
            `CPU ${who} ${per((x) => 100 * x.serviceCpu)}%, nats-server ${per((x) => 100 * x.natsCpu)}%, load generator ` +
            `${per((x) => 100 * x.benchCpu)}%`,
        )
        const config = `${rate}/s offered for ${seconds} s, ${which}`
        const decided = results.reduce((n, x) => n + x.decided, 0)
        const total = results.reduce((n, x) => n + x.total, 0)
        const subject = who === "echo" ? "intent → echo answer (bus floor)" : "intent → decision"
        rows.push(
          {
            name: `${subject} latency p50`,
            config,
            value: Number(med((x) => x.p50).toFixed(2)),
            unit: "ms",
            detail:
              `rounds ${per((x) => x.p50)}; p90 ${per((x) => x.p90)}; ${decided} of ${total} intents answered; CPU ` +
              `${who} ${pct((x) => x.serviceCpu)}, nats-server ${pct((x) => x.natsCpu)}, load generator ` +
              pct((x) => x.benchCpu),
          },
          {
            name: `${subject} latency p99`,
            config,
            value: Number(med((x) => x.p99).toFixed(1)),
            unit: "ms",
            detail: `rounds ${per((x) => x.p99)}; max ${per((x) => x.max)}`,
          },
        )
      }

      // The floor: the same load answered by a process that only consumes and publishes, on the same bus path.
      answering = await startEcho(server, admin)
      await warmUp(1_000, "warmup-echo")
      await measure(false, "echo", "echo process, no verification or decision")
      await answering.stop()

      // VIGIL_BENCH_POLICY_NODE_OPTIONS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") for the service process.
      const nodeOptions = process.env.VIGIL_BENCH_POLICY_NODE_OPTIONS
      answering = await startService("policy", th, {
        env: { VIGIL_GRANTED_FOLDERS: GRANTED, ...(nodeOptions === undefined ? {} : { NODE_OPTIONS: nodeOptions }) },
      })
      await warmUp(1_000, "warmup")
      await measure(false, "policy", "5 repeating intent shapes")
      await new Promise((r) => setTimeout(r, 1_000))
      // Distinct paths make every request new to the service's answer cache: the cost when Cedar runs every time.
      await measure(true, "policy", "every intent on its own path")
      sub.unsubscribe()
      intents.close()
    } finally {
      await answering?.stop()
      await inference.close()
      await admin.close()
      await server.stop()
      th.remove()
    }
    return {
      id: "policy",
      title: "Policy: engine decisions/s and intent → decision latency over the bus",
      rows,
      notes: [
        "After 1,000 unmeasured warm-up intents, and before each load the same load for 3 s unmeasured, latency is measured from just before the inference user's JetStream publish of a signed `intent.proposed` (signed before the timed loop, as the inference service would have; published with libs/bus `ackedPublisher`, the inference service's Publisher transport) to the arrival of the policy service's signed `decision.made` at a subscriber: it includes the broker (file store), the service's verification (schema, signature, manifest), the Cedar decision and the signed publish of the decision. Publisher, subscriber, nats-server and the policy service share the same 2 CPUs. Intents are evenly spaced (one every 1/rate s) and are local file tools (no wait for DLP findings). `VIGIL_BENCH_POLICY_RATE` changes the offered rate.",
        "Before the policy service starts, the same load is answered by test/bench/echo-consumer.ts (bench durable on `intent.proposed`, pull with explicit ack, acked JetStream publish of an unsigned answer naming the intent, nothing else): the floor this machine's bus path, load generator and measuring subscriber put under any service, measured in the same run.",
        "Two loads, one after the other on the same service: five intent shapes repeating (after warm-up every decision is served from the engine's answer cache, as repeated requests are in real sessions), then the same shapes with a file path no other intent uses (every request new: Cedar runs for each, about 0.3 ms on these machines). The engine row measures Cedar itself, with the answer cache off.",
      ],
      params: {
        "offered rate": `${rate} intents/s`,
        duration: `${seconds} s per round`,
        rounds: `${rounds} per load, median reported (after 3 s of the same load unmeasured)`,
        bundle: "policies/ default set",
      },
    }
  },
}
