import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { jetstream } from "@nats-io/jetstream"
import { type ProvisionOptions, Publisher } from "@vigil/bus"
import type { Event } from "@vigil/events"
import {
  derivedEventId,
  encodeEvent,
  eventIdKey,
  eventSubject,
  eventTypeFilter,
  STREAM_EVENTS,
  signEvent,
} from "@vigil/events"
import type { RunningBus, VigilBus } from "@vigil/test"
import {
  busFixture,
  consumerInfo,
  consumeTasks,
  countStored,
  DLP_TASKS,
  eventually,
  readStream,
  screenHandler,
  startVigilBus,
  taskDraft,
} from "@vigil/test"
import { Effect } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"

/**
 * Delivery guarantees of libs/bus against a real, secured nats-server (ADR 0008): de-duplication by Nats-Msg-Id,
 * exactly-once effect across consumer crashes (a child process killed with SIGKILL), and no loss across a broker
 * restart. Every service connects as its own NATS user and signs with its own manifest-granted key.
 */

const FIXTURE = join(import.meta.dirname, "fixtures", "dlp-consumer.ts")

/** A secured, provisioned server and a deployment for one describe block, stopped after it. */
const suite = (provisionOptions: ProvisionOptions = {}): { readonly t: VigilBus } => {
  const holder = {} as { t: VigilBus }
  beforeAll(async () => {
    holder.t = await startVigilBus({ provision: provisionOptions })
  })
  afterAll(async () => {
    await holder.t?.stop()
  })
  return holder
}

const publishSigned = (b: RunningBus, event: Event) =>
  b.run(
    Effect.gen(function* () {
      return yield* (yield* Publisher).publishSigned(event)
    }),
  )

describe("publishing is idempotent by Nats-Msg-Id = event id", () => {
  const s = suite()

  it("publishing the same signed event twice stores it once", async () => {
    const gateway = await s.t.bus("gateway")
    const event = signEvent(s.t.dep.keys.gateway, taskDraft("dedupe"))
    const first = await publishSigned(gateway, event)
    const second = await publishSigned(gateway, event)
    expect(first.duplicate).toBe(false)
    expect(second.duplicate).toBe(true)
    expect(second.seq).toBe(first.seq)
    const subject = eventSubject("dedupe", "task.submitted")
    expect(await countStored(s.t.admin, STREAM_EVENTS, subject)).toBe(1)
    const [stored] = await readStream(s.t.admin, STREAM_EVENTS, subject)
    expect(new Uint8Array(stored?.data ?? [])).toEqual(encodeEvent(event))
    expect(stored?.headers?.get("Nats-Msg-Id")).toBe(event.id)
  })

  it("a retry after a lost publish ack is stored once (raw publish with msgID, and the bus publisher)", async () => {
    const event = signEvent(s.t.dep.keys.gateway, taskDraft("lostack"))
    const subject = eventSubject("lostack", "task.submitted")
    const bytes = encodeEvent(event)

    // The same bytes twice with the same msgID, as a client retrying after a timeout would send them.
    const gwConn = await s.t.server.connect("gateway")
    try {
      const js = jetstream(gwConn, { checkAPI: false })
      const a = await js.publish(subject, bytes, { msgID: event.id })
      const b = await js.publish(subject, bytes, { msgID: event.id })
      expect([a.duplicate, b.duplicate]).toEqual([false, true])
      expect(b.seq).toBe(a.seq)
    } finally {
      await gwConn.close()
    }
    expect(await countStored(s.t.admin, STREAM_EVENTS, subject)).toBe(1)

    // A real lost ack: a gateway connection on the shared `_INBOX` prefix may not subscribe there, so the server
    // stores the event but the ack never arrives (NATS-NOTES trap 3). The bus's retry finds it stored.
    const other = signEvent(s.t.dep.keys.gateway, taskDraft("lostack2"))
    const otherSubject = eventSubject("lostack2", "task.submitted")
    const blind = await s.t.server.connect("gateway", { inboxPrefix: "_INBOX" })
    try {
      await expect(
        jetstream(blind, { checkAPI: false }).publish(otherSubject, encodeEvent(other), {
          msgID: other.id,
          timeout: 2_000,
        }),
      ).rejects.toThrow(/Permissions Violation for Subscription/)
    } finally {
      await blind.close()
    }
    expect(await countStored(s.t.admin, STREAM_EVENTS, otherSubject)).toBe(1)
    const retried = await publishSigned(await s.t.bus("gateway"), other)
    expect(retried.duplicate).toBe(true)
    expect(await countStored(s.t.admin, STREAM_EVENTS, otherSubject)).toBe(1)
  })
})

/** One dlp consumer process; counts handler invocations from its stdout. */
class ConsumerProcess {
  readonly child: ChildProcess
  readonly invocations: Array<{ id: string; delivery: number }> = []
  readonly ready: Promise<void>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  private readonly stderr: Array<string> = []
  private waiters: Array<{ n: number; resolve: () => void }> = []

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, [FIXTURE], {
      env: { ...process.env, ...env },
      // stdin is the child's lifeline: it exits when this process goes away, whatever the reason.
      stdio: ["pipe", "pipe", "pipe"],
    })
    live.add(this.child)
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => {
        live.delete(this.child)
        resolve({ code, signal })
      }),
    )
    let readyResolve: () => void = () => undefined
    let readyReject: (e: Error) => void = () => undefined
    this.ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve
      readyReject = reject
    })
    void this.exited.then(({ code, signal }) =>
      readyReject(new Error(`consumer exited (${code ?? signal}) before ready:\n${this.stderr.join("")}`)),
    )
    let partial = ""
    this.child.stdout?.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString("utf8")).split("\n")
      partial = lines.pop() ?? ""
      for (const line of lines) {
        if (line === "READY") readyResolve()
        else if (line.startsWith("H ")) {
          const [, id, delivery] = line.split(" ")
          this.invocations.push({ id: id as string, delivery: Number(delivery) })
        }
      }
      this.waiters = this.waiters.filter((w) => {
        if (this.invocations.length < w.n) return true
        w.resolve()
        return false
      })
    })
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr.push(chunk.toString("utf8"))
      if (this.stderr.length > 200) this.stderr.shift()
    })
  }

  /** Resolves once the handler has been invoked at least `n` times. */
  invoked(n: number, timeoutMs = 30_000): Promise<void> {
    if (this.invocations.length >= n) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${this.invocations.length} of ${n} invocations:\n${this.stderr.join("")}`)),
        timeoutMs,
      )
      this.waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer)
          resolve()
        },
      })
    })
  }

  /** A crash: SIGKILL, no drain, no pending acks flushed. */
  async kill9(): Promise<void> {
    if (this.child.pid !== undefined) process.kill(this.child.pid, "SIGKILL")
    const { signal } = await this.exited
    expect(signal).toBe("SIGKILL")
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined) {
      process.kill(this.child.pid, "SIGTERM")
    }
    await this.exited
  }
}

/** Consumer processes this file started and not yet reaped: killed by PID after each test. */
const live = new Set<ChildProcess>()
afterEach(() => {
  for (const c of live) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, "SIGKILL")
})

describe("exactly-once effect across consumer crashes", () => {
  // A short ack_wait so the crashed process's unacked deliveries come back within the test.
  const s = suite({ ackWaitMs: 2_000 })
  const N = 10_000
  const SESSIONS = Array.from({ length: 8 }, (_, i) => `crash-${i}`)

  it("10,000 events published while the dlp consumer is SIGKILLed twice are each handled exactly once", async () => {
    const gateway = await s.t.bus("gateway")
    const env = { VIGIL_TEST_BUS: JSON.stringify(busFixture(s.t.server, "dlp", s.t.dep)), VIGIL_TEST_CONCURRENCY: "16" }

    let published = 0
    const publishedIds: Array<string> = []
    // Paced (waves of 250 at concurrency 64, at most 2,500 events/s) so that publishing spans both crashes.
    const publishing = gateway.run(
      Effect.gen(function* () {
        const publisher = yield* Publisher
        for (let wave = 0; wave < N / 250; wave++) {
          if (wave > 0) yield* Effect.sleep("100 millis")
          yield* Effect.forEach(
            Array.from({ length: 250 }, (_, i) => wave * 250 + i),
            (i) =>
              publisher.publish(taskDraft(SESSIONS[i % SESSIONS.length] as string)).pipe(
                Effect.tap((p) =>
                  Effect.sync(() => {
                    publishedIds.push(p.event.id)
                    published++
                  }),
                ),
              ),
            { concurrency: 64, discard: true },
          )
        }
      }),
    )
    // Awaited below; marked handled now so an early failure does not also report an unhandled rejection.
    publishing.catch(() => undefined)
    const started = Date.now()

    const first = new ConsumerProcess(env)
    await first.ready
    await first.invoked(2_000)
    await first.kill9()
    const publishedAtFirstKill = published

    const second = new ConsumerProcess(env)
    await second.ready
    await second.invoked(3_000)
    await second.kill9()
    const publishedAtSecondKill = published

    const third = new ConsumerProcess(env)
    await third.ready
    await publishing
    const publishMs = Date.now() - started
    expect(published).toBe(N)
    // The first crash came while the gateway was still publishing.
    expect(publishedAtFirstKill).toBeLessThan(N)

    const screened = eventTypeFilter("prompt.screened")
    await eventually(
      "10,000 prompt.screened and an idle durable",
      async () => {
        if ((await countStored(s.t.admin, STREAM_EVENTS, screened)) < N) return undefined
        const info = await consumerInfo(s.t.admin, STREAM_EVENTS, DLP_TASKS)
        return info.num_pending === 0 && info.num_ack_pending === 0 ? info : undefined
      },
      40_000,
      200,
    )
    const doneMs = Date.now() - started
    await third.stop()

    // The record: every input once, every output once, outputs caused by exactly the inputs.
    const stored = await readStream(s.t.admin, STREAM_EVENTS, undefined, 30_000)
    expect(stored.length).toBe(2 * N)
    const tasks = stored.filter((m) => m.subject.endsWith(".task.submitted")).map((m) => m.json<Event>())
    const outputs = stored
      .filter((m) => m.subject.endsWith(".prompt.screened"))
      .map((m) => m.json<Event<"prompt.screened">>())
    const inputIds = new Set(tasks.map((e) => e.id))
    expect(tasks.length).toBe(N)
    expect(inputIds.size).toBe(N)
    expect([...inputIds].sort()).toEqual([...publishedIds].sort())
    expect(outputs.length).toBe(N)
    const causes = outputs.map((e) => e.causation)
    expect(new Set(causes).size).toBe(N)
    expect(causes.every((c) => c !== null && inputIds.has(c))).toBe(true)
    const dlpIdKey = eventIdKey(s.t.dep.keys.dlp.seed)
    for (const o of outputs) {
      expect(o.id).toBe(derivedEventId(dlpIdKey, o.causation as string, "dlp"))
      expect(o.data.task).toBe(o.causation)
      expect(o.source).toBe("dlp")
    }

    const info = await consumerInfo(s.t.admin, STREAM_EVENTS, DLP_TASKS)
    expect(info.num_pending).toBe(0)
    expect(info.num_ack_pending).toBe(0)
    expect(info.num_redelivered).toBe(0)

    // Each instance handled some but not all; together they invoked the handler at least once per input.
    const all = [first, second, third].flatMap((c) => c.invocations)
    const counts = [first, second, third].map((c) => c.invocations.length)
    for (const n of counts) {
      expect(n).toBeGreaterThan(0)
      expect(n).toBeLessThan(N)
    }
    expect(new Set(all.map((x) => x.id))).toEqual(inputIds)
    const redelivered = all.filter((x) => x.delivery > 1).length
    const reHandled = all.length - inputIds.size
    console.info(
      `crash test: invocations per process ${counts.join(" + ")} = ${all.length} for ${N} inputs ` +
        `(${reHandled} handled again after a crash, ${redelivered} invocations on a redelivery); ` +
        `published at the kills: ${publishedAtFirstKill}, ${publishedAtSecondKill} (publishing took ${publishMs} ms, ` +
        `all handled after ${doneMs} ms)`,
    )
    expect(all.length).toBeGreaterThanOrEqual(N)
  }, 60_000)
})

describe("broker restart", () => {
  const s = suite()
  const N = 2_000

  it("a nats-server restart in the middle of publishing loses no acked event (and the consumer carries on)", async () => {
    const gateway = await s.t.bus("gateway")
    const dlp = await s.t.bus("dlp")
    const handled = new Set<string>()
    await consumeTasks(
      dlp,
      screenHandler((e) => void handled.add(e.id)),
      { concurrency: 8 },
    )

    const acked: Array<{ id: string; seq: number; duplicate: boolean }> = []
    const pidBefore = s.t.server.pid
    let restarted: Promise<void> | undefined
    await gateway.run(
      Effect.gen(function* () {
        const publisher = yield* Publisher
        yield* Effect.forEach(
          Array.from({ length: N }, (_, i) => i),
          () =>
            publisher.publish(taskDraft("restart")).pipe(
              Effect.tap((p) =>
                Effect.sync(() => {
                  acked.push({ id: p.event.id, seq: p.seq, duplicate: p.duplicate })
                  if (acked.length === N / 4) restarted = s.t.server.restart()
                }),
              ),
            ),
          { concurrency: 32, discard: true },
        )
      }),
    )
    await restarted
    expect(restarted).toBeDefined()
    expect(s.t.server.pid).not.toBe(pidBefore)
    expect(acked.length).toBe(N)

    const stored = await readStream(s.t.admin, STREAM_EVENTS, eventSubject("restart", "task.submitted"))
    const storedIds = stored.map((m) => m.json<Event>().id)
    expect(storedIds.length).toBe(N)
    expect(new Set(storedIds)).toEqual(new Set(acked.map((a) => a.id)))
    const seqOf = new Map(acked.map((a) => [a.id, a.seq]))
    for (const m of stored) expect(seqOf.get(m.headers?.get("Nats-Msg-Id") ?? "")).toBe(m.seq)

    await eventually(
      "the consumer to handle every event after the restart",
      async () =>
        (await countStored(s.t.admin, STREAM_EVENTS, eventSubject("restart", "prompt.screened"))) === N
          ? true
          : undefined,
      40_000,
      200,
    )
    expect(handled.size).toBe(N)
    console.info(
      `broker restart: ${N} acked (${acked.filter((a) => a.duplicate).length} acks were duplicates of stored retries)`,
    )
  }, 60_000)
})
