import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { jetstream } from "@nats-io/jetstream"
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { consume, consumeBatches, HandlerError, Publisher } from "@vigil/bus"
import { AUDITOR_DURABLE, type Event, eventSubject, STREAM_EVENTS } from "@vigil/events"
import { telemetryEnabled, telemetrySettings } from "@vigil/runtime"
import {
  BLOB,
  busFor,
  DLP_TASKS,
  eventually,
  type RunningBus,
  readStream,
  screenedDraft,
  startBus,
  startVigilBus,
  taskDraft,
  type VigilBus,
} from "@vigil/test"
import { ConfigProvider, Effect, Layer, Metric, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * Telemetry from birth (issue 12): every handled event is one consumer span continuing the trace the event carries,
 * with ids and types as attributes and nothing of its content; the bus counts what goes in, out and to the DLQ; and
 * with no exporter configured, no OpenTelemetry module is even loaded.
 */

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const SESSION = "tele-secret-session"
const WORKSPACE = "/home/alice/private-telemetry-workspace"
const SECRET_PATH = "/home/alice/.ssh/id_ed25519"

/** Every attribute a handler span may carry: ids, types, positions. */
const ALLOWED_ATTRIBUTES = new Set([
  "messaging.system",
  "messaging.operation.type",
  "messaging.consumer.group.name",
  "vigil.service",
  "vigil.event.id",
  "vigil.event.type",
  "vigil.event.source",
  "vigil.stream.seq",
  "vigil.delivery.count",
])

const traceparent = () => `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`

/** Everything a span exports, as one string: attributes, events (exceptions included), status, links. */
const exported = (s: ReadableSpan) =>
  JSON.stringify({ name: s.name, attributes: s.attributes, events: s.events, status: s.status, links: s.links })

/** A counter's count, or a histogram's number of observations, for the series with these attributes. */
const metricCount = (name: string, attributes: Record<string, string>): number => {
  const snap = Effect.runSync(Metric.snapshot).find(
    (m) => m.id === name && Object.entries(attributes).every(([k, v]) => m.attributes?.[k] === v),
  )
  if (snap === undefined) return 0
  const state = snap.state as { count?: number }
  return state.count ?? 0
}

describe("handler spans and bus metrics", () => {
  let vb: VigilBus
  let dlp: RunningBus
  const exporter = new InMemorySpanExporter()
  beforeAll(async () => {
    vb = await startVigilBus()
    // The dlp process as a service with telemetry on: its bus layer plus the OpenTelemetry SDK (an in-memory
    // exporter instead of OTLP), built into the same scope.
    const otel = NodeSdk.layer(() => ({
      resource: { serviceName: "dlp" },
      spanProcessor: new SimpleSpanProcessor(exporter),
    }))
    dlp = await startBus(Layer.merge(busFor(vb.server, "dlp", vb.dep), otel))
  })
  afterAll(async () => {
    await dlp?.close()
    await vb?.stop()
  })

  it("a handled event is one consumer span whose parent is the event's trace, with no content among its attributes", async () => {
    const seen = new Map<string, number>()
    await dlp.run(
      consume<"task.submitted", Publisher>({ durable: DLP_TASKS }, (event, delivery) =>
        Effect.gen(function* () {
          seen.set(event.id, delivery.deliveryCount)
          // The first delivery of a `fail` task fails with a message quoting a secret path: the span may say that
          // the handler failed, never what it said.
          if (event.data.channel === "ui" && delivery.deliveryCount === 1) {
            return yield* new HandlerError({ message: `cannot read ${SECRET_PATH}` })
          }
          const publisher = yield* Publisher
          yield* publisher.publish(screenedDraft(event, publisher.derivedId(event.id, "dlp")))
        }).pipe(Effect.mapError((cause) => new HandlerError({ message: `${event.id}: ${cause.message}`, cause }))),
      ),
    )
    const gateway = await vb.bus("gateway")
    const trace = traceparent()
    const [, traceId, parentSpanId] = trace.split("-")
    const data = { channel: "cli" as const, workspace: WORKSPACE, promptChars: 4 }
    const { event: input } = await gateway.run(
      Effect.flatMap(Publisher, (p) => p.publish(taskDraft(SESSION, { trace, data }))),
    )
    const { event: failing } = await gateway.run(
      Effect.flatMap(Publisher, (p) =>
        p.publish(taskDraft(SESSION, { trace: traceparent(), data: { ...data, channel: "ui" } })),
      ),
    )

    const spansOf = (id: string) =>
      exporter.getFinishedSpans().filter((s) => s.attributes["vigil.event.id"] === id && s.name.includes(".handle "))
    const [span] = await eventually("the handler span", async () =>
      spansOf(input.id).length > 0 ? spansOf(input.id) : undefined,
    )
    expect(spansOf(input.id)).toHaveLength(1)
    expect(span?.name).toBe("dlp.handle task.submitted")
    expect(span?.kind).toBe(SpanKind.CONSUMER)
    expect(span?.spanContext().traceId).toBe(traceId)
    expect(span?.parentSpanContext?.spanId).toBe(parentSpanId)
    expect(span?.parentSpanContext?.isRemote).toBe(true)
    expect(span?.status.code).toBe(SpanStatusCode.OK)
    expect(span?.attributes).toMatchObject({
      "vigil.event.id": input.id,
      "vigil.event.type": "task.submitted",
      "vigil.event.source": "gateway",
      "messaging.consumer.group.name": DLP_TASKS,
      "vigil.delivery.count": 1,
    })
    expect(typeof span?.attributes["vigil.stream.seq"]).toBe("number")
    // The follow-up names its cause's trace, with the handler's span (not the gateway's) as its parent.
    const followUps = await eventually("the follow-up", async () => {
      const all = (await readStream(vb.admin, STREAM_EVENTS, eventSubject(SESSION, "prompt.screened"))).map((m) =>
        m.json<Event<"prompt.screened">>(),
      )
      const mine = all.filter((e) => e.data.task === input.id)
      return mine.length > 0 ? mine : undefined
    })
    const [, followTrace, followParent] = (followUps[0]?.trace ?? "").split("-")
    expect(followTrace).toBe(traceId)
    expect(followParent).not.toBe(parentSpanId)
    expect(span?.spanContext().spanId).toBe(followParent)
    for (const s of exporter.getFinishedSpans()) {
      for (const key of Object.keys(s.attributes)) expect(ALLOWED_ATTRIBUTES, `${s.name}: ${key}`).toContain(key)
      const text = exported(s)
      for (const secret of [WORKSPACE, SESSION, SECRET_PATH, BLOB.sha256, "/home/", "promptChars"]) {
        expect(text, s.name).not.toContain(secret)
      }
    }

    // The follow-up the handler published continues the same trace. (`followUp` copies its cause's traceparent, so
    // its parent is the producer's span, not the handler's.)
    const followUp = await eventually("the follow-up", async () =>
      (await readStream(vb.admin, STREAM_EVENTS, eventSubject(SESSION, "prompt.screened")))
        .map((m) => JSON.parse(new TextDecoder().decode(m.data)) as Event)
        .find((e) => e.causation === input.id),
    )
    expect(followUp.trace.split("-")[1]).toBe(traceId)

    // A failed delivery ends its span in error, saying only that (and the error's tag); the redelivery succeeds.
    const failed = await eventually("both deliveries of the failing task", async () =>
      spansOf(failing.id).length === 2 ? spansOf(failing.id) : undefined,
    )
    const [first, second] = failed.sort(
      (a, b) => Number(a.attributes["vigil.delivery.count"]) - Number(b.attributes["vigil.delivery.count"]),
    )
    expect(first?.status).toEqual({ code: SpanStatusCode.ERROR, message: "handler failed (HandlerError)" })
    expect(first?.events.map((e) => e.attributes?.["exception.message"])).toEqual(["handler failed (HandlerError)"])
    expect(exported(first as ReadableSpan)).not.toContain("cannot read")
    expect(second?.status.code).toBe(SpanStatusCode.OK)
  })

  it("counts events in (by type and durable), published (by type), dead-lettered (by reason) and handler time", async () => {
    const filter = { type: "task.submitted", durable: DLP_TASKS }
    await eventually("the handled count", async () =>
      metricCount("vigil.bus.events.in", filter) >= 3 ? true : undefined,
    )
    // One delivery of the plain task, two of the failing one.
    expect(metricCount("vigil.bus.events.in", filter)).toBe(3)
    expect(metricCount("vigil.bus.handler.duration_ms", filter)).toBe(3)
    // This test process is both the gateway and dlp: two tasks in, two follow-ups out.
    expect(metricCount("vigil.bus.events.published", { type: "task.submitted" })).toBe(2)
    expect(metricCount("vigil.bus.events.published", { type: "prompt.screened" })).toBe(2)

    const raw = await vb.server.connect("gateway")
    try {
      await jetstream(raw).publish(eventSubject(SESSION, "task.submitted"), new TextEncoder().encode("{not json"), {
        msgID: `junk-${Date.now()}`,
      })
    } finally {
      await raw.close()
    }
    await eventually("the dead letter", async () =>
      metricCount("vigil.bus.dead_letters", { reason: "invalid_json" }) === 1 ? true : undefined,
    )
    // Counted by reason only: the type a refused message claims is whatever its sender wrote.
    const dlq = Effect.runSync(Metric.snapshot).filter((m) => m.id === "vigil.bus.dead_letters")
    for (const m of dlq) expect(Object.keys(m.attributes ?? {})).toEqual(["reason"])
  })
  it("a batch consumer ends one span per event of the batch, each in its event's trace", async () => {
    const exporter = new InMemorySpanExporter()
    const otel = NodeSdk.layer(() => ({
      resource: { serviceName: "auditor" },
      spanProcessor: new SimpleSpanProcessor(exporter),
    }))
    const auditor = await startBus(Layer.merge(busFor(vb.server, "auditor", vb.dep), otel))
    try {
      const batches: Array<number> = []
      await auditor.run(
        consumeBatches({ durable: AUDITOR_DURABLE, maxBatch: 64, maxWaitMs: 50 }, (batch) =>
          Effect.sync(() => {
            batches.push(batch.length)
          }),
        ),
      )
      const gateway = await vb.bus("gateway")
      const trace = traceparent()
      const { event } = await gateway.run(Effect.flatMap(Publisher, (p) => p.publish(taskDraft(SESSION, { trace }))))
      const span = await eventually("the auditor's span", async () =>
        exporter.getFinishedSpans().find((s) => s.attributes["vigil.event.id"] === event.id),
      )
      expect(span.name).toBe("auditor.handle task.submitted")
      expect(span.kind).toBe(SpanKind.CONSUMER)
      expect(span.spanContext().traceId).toBe(trace.split("-")[1])
      expect(span.parentSpanContext?.spanId).toBe(trace.split("-")[2])
      expect(span.attributes["messaging.consumer.group.name"]).toBe(AUDITOR_DURABLE)
      expect(typeof span.attributes["vigil.batch.size"]).toBe("number")
      // Every stored event so far went through the auditor's batches, each with its own span.
      expect(exporter.getFinishedSpans()).toHaveLength(batches.reduce((a, b) => a + b, 0))
      for (const s of exporter.getFinishedSpans()) {
        for (const key of Object.keys(s.attributes)) {
          expect([...ALLOWED_ATTRIBUTES, "vigil.batch.size"], `${s.name}: ${key}`).toContain(key)
        }
        expect(exported(s)).not.toContain(WORKSPACE)
      }
    } finally {
      await auditor.close()
    }
  })
})

/** Run `script` (an ES module) in a fresh node process at the repository root; its last stdout line is JSON. */
const probe = async (script: string, env: Record<string, string>) => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_")))
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
    cwd: ROOT,
    env: { ...clean, ...env },
    timeout: 30_000,
  })
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as {
    otel: Array<string>
    rssMb: number
    heapMb: number
    sampled: boolean
  }
}

/** Load @vigil/runtime, build `Telemetry.layer`, run a traced effect in it; report which OTel modules loaded. */
const PROBE = `
import { registerHooks } from "node:module"
const otel = []
registerHooks({
  resolve(specifier, context, next) {
    const r = next(specifier, context)
    if (/\\/@(opentelemetry|effect\\/opentelemetry)\\//.test(r.url)) otel.push(r.url.replace(/^.*node_modules\\//, ""))
    return r
  },
})
const { telemetryLayer } = await import("@vigil/runtime")
const { Effect, Layer } = await import("effect")
const sampled = await Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const context = yield* Layer.build(telemetryLayer("probe"))
      return yield* Effect.provideContext(Effect.map(Effect.currentSpan, (s) => s.sampled).pipe(Effect.withSpan("probe")), context)
    }),
  ),
)
globalThis.gc?.()
const m = process.memoryUsage()
const report = { otel: [...new Set(otel)], rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, sampled }
// Exit now: an exporter may still be retrying its unreachable endpoint.
process.stdout.write(JSON.stringify(report) + "\\n", () => process.exit(0))
`

describe("telemetryLayer", () => {
  it("with no exporter configured, loads no OpenTelemetry module (and with one, does)", async () => {
    const [off, disabled, on] = await Promise.all([
      probe(PROBE, {}),
      probe(PROBE, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9", OTEL_SDK_DISABLED: "TRUE" }),
      // The control: an endpoint set where nothing listens. The probe's span fails to export at the final flush,
      // which must still close the layer cleanly (an unsettled flush made the stop a defect, exit status 1).
      probe(PROBE, {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
        OTEL_EXPORTER_OTLP_TIMEOUT: "300",
        OTEL_METRICS_EXPORTER: "none",
      }),
    ])
    console.log(
      `telemetry off: rss ${off.rssMb.toFixed(1)} MB, heap ${off.heapMb.toFixed(1)} MB; ` +
        `on: rss ${on.rssMb.toFixed(1)} MB, heap ${on.heapMb.toFixed(1)} MB, ${on.otel.length} OpenTelemetry modules`,
    )
    expect(off.otel).toEqual([])
    expect(disabled.otel).toEqual([])
    expect(off.sampled).toBe(true)
    expect(on.otel).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^@effect\/opentelemetry\//),
        expect.stringMatching(/^@opentelemetry\/sdk-trace-base\//),
        expect.stringMatching(/^@opentelemetry\/exporter-trace-otlp-http\//),
      ]),
    )
    expect(on.otel.some((u) => u.startsWith("@opentelemetry/exporter-metrics-otlp-http/"))).toBe(false)
  })

  it("reads the standard OpenTelemetry variables", async () => {
    const read = (env: Record<string, string>) =>
      Effect.runSync(telemetrySettings.parse(ConfigProvider.fromEnv({ env })))
    const off = read({})
    expect(telemetryEnabled(off)).toBe(false)
    expect(telemetryEnabled(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "" }))).toBe(false)
    expect(telemetryEnabled(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }))).toBe(
      false,
    )
    const on = read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/", OTEL_SDK_DISABLED: "false" })
    expect(on.tracesUrl).toEqual(Option.some("http://c:4318/v1/traces"))
    expect(on.metricsUrl).toEqual(Option.some("http://c:4318/v1/metrics"))
    const split = read({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t:4318/traces",
      OTEL_METRICS_EXPORTER: "none",
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
    })
    expect(split.tracesUrl).toEqual(Option.some("http://t:4318/traces"))
    expect(split.metricsUrl).toEqual(Option.none())
  })
})
