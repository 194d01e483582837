import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Data, Effect, Layer, Option } from "effect"

/*
 * Telemetry for a service process: its spans (one per handled event, see libs/bus `consume`) and the bus metrics
 * exported over OTLP/HTTP through @effect/opentelemetry, configured by the standard OpenTelemetry environment:
 *
 * - `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL (`/v1/traces` and `/v1/metrics` are appended). Unset
 *   or empty, nothing is exported. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `…_METRICS_ENDPOINT` set one signal's
 *   full URL instead; `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` turn one signal off.
 * - `OTEL_SDK_DISABLED=true`: nothing is exported, whatever else is set.
 * - `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between metric exports (60000).
 * - `OTEL_EXPORTER_OTLP_HEADERS` (e.g. a collector token) and the other exporter variables are read by the
 *   OpenTelemetry exporters themselves; none of them is logged or put on a span.
 *
 * Off (the default), the layer is empty: spans stay with Effect's native tracer (in memory, exported nowhere, still
 * carrying trace context into emitted events) and no OpenTelemetry module is loaded at all, so an idle service pays
 * nothing for it. On, the SDK is imported when the layer is built.
 */

/** Where each signal goes; a signal without a URL is not exported. */
export interface TelemetrySettings {
  readonly tracesUrl: Option.Option<string>
  readonly metricsUrl: Option.Option<string>
  readonly metricIntervalMs: number
}

export class TelemetryError extends Data.TaggedError("TelemetryError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A variable that counts as unset when empty, as the OpenTelemetry spec has it. */
const nonEmpty = (name: string) =>
  Config.option(Config.String(name)).pipe(
    Config.map((o) =>
      Option.filter(
        Option.map(o, (s) => s.trim()),
        (s) => s !== "",
      ),
    ),
  )

/** The spec's boolean: true only for `true`, in any case. */
const flag = (name: string) =>
  nonEmpty(name).pipe(Config.map((o) => Option.getOrElse(o, () => "").toLowerCase() === "true"))

const signalUrl = (
  base: Option.Option<string>,
  own: Option.Option<string>,
  exporter: Option.Option<string>,
  path: string,
) =>
  Option.getOrElse(exporter, () => "otlp").toLowerCase() === "none"
    ? Option.none<string>()
    : Option.orElse(own, () => Option.map(base, (b) => `${b.replace(/\/+$/, "")}/${path}`))

/** The settings from the environment (through Effect's `Config`, so a test can supply its own provider). */
export const telemetrySettings: Config.Config<TelemetrySettings> = Config.all({
  disabled: flag("OTEL_SDK_DISABLED"),
  base: nonEmpty("OTEL_EXPORTER_OTLP_ENDPOINT"),
  traces: nonEmpty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
  metrics: nonEmpty("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
  tracesExporter: nonEmpty("OTEL_TRACES_EXPORTER"),
  metricsExporter: nonEmpty("OTEL_METRICS_EXPORTER"),
  metricIntervalMs: Config.Int("OTEL_METRIC_EXPORT_INTERVAL").pipe(Config.withDefault(60_000)),
}).pipe(
  Config.map(
    (c): TelemetrySettings => ({
      tracesUrl: c.disabled ? Option.none() : signalUrl(c.base, c.traces, c.tracesExporter, "v1/traces"),
      metricsUrl: c.disabled ? Option.none() : signalUrl(c.base, c.metrics, c.metricsExporter, "v1/metrics"),
      metricIntervalMs: Math.max(1_000, c.metricIntervalMs),
    }),
  ),
)

/** True when something is to be exported. */
export const telemetryEnabled = (s: TelemetrySettings): boolean =>
  Option.isSome(s.tracesUrl) || Option.isSome(s.metricsUrl)

/**
 * `processor`, but its flush and shutdown never reject. NodeSdk awaits them in its finalizer as a plain promise, so a
 * collector that is down or refuses the batch would otherwise turn a clean stop into a defect.
 */
const settling = (processor: SpanProcessor): SpanProcessor => ({
  onStart: (span, context) => processor.onStart(span, context),
  onEnd: (span) => processor.onEnd(span),
  forceFlush: () => processor.forceFlush().catch(() => undefined),
  shutdown: () => processor.shutdown().catch(() => undefined),
})

/**
 * The OpenTelemetry layer for `s` (which must enable something): the SDK and exporters, imported now. Spans go out
 * in batches; the tracer honours the sampling decision an event's trace context carries.
 */
const sdkLayer = async (serviceName: string, s: TelemetrySettings) => {
  const [{ layer: nodeSdk }, tracing, metrics] = await Promise.all([
    import("@effect/opentelemetry/NodeSdk"),
    Option.isSome(s.tracesUrl)
      ? Promise.all([import("@opentelemetry/sdk-trace-base"), import("@opentelemetry/exporter-trace-otlp-http")])
      : undefined,
    Option.isSome(s.metricsUrl)
      ? Promise.all([import("@opentelemetry/sdk-metrics"), import("@opentelemetry/exporter-metrics-otlp-http")])
      : undefined,
  ])
  return nodeSdk(() => ({
    resource: { serviceName, attributes: { "service.namespace": "vigil" } },
    ...(tracing === undefined || Option.isNone(s.tracesUrl)
      ? {}
      : {
          spanProcessor: settling(
            new tracing[0].BatchSpanProcessor(new tracing[1].OTLPTraceExporter({ url: s.tracesUrl.value })),
          ),
        }),
    ...(metrics === undefined || Option.isNone(s.metricsUrl)
      ? {}
      : {
          metricReader: new metrics[0].PeriodicExportingMetricReader({
            exporter: new metrics[1].OTLPMetricExporter({ url: s.metricsUrl.value }),
            exportIntervalMillis: s.metricIntervalMs,
          }),
        }),
  }))
}

/**
 * Telemetry for the service `serviceName` (the OpenTelemetry `service.name`), to be provided to the whole service
 * program from its first line. Empty unless the environment enables an exporter (see above); closing it flushes
 * what is pending (for at most a few seconds).
 */
export const telemetryLayer = (serviceName: string): Layer.Layer<never, Config.ConfigError | TelemetryError> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const s = yield* telemetrySettings
      if (!telemetryEnabled(s)) return Layer.empty
      const sdk = yield* Effect.tryPromise({
        try: () => sdkLayer(serviceName, s),
        catch: (cause) => new TelemetryError({ message: "cannot load the OpenTelemetry SDK", cause }),
      })
      // Which signals, never where: an endpoint URL can carry credentials.
      yield* Effect.logInfo(
        `telemetry: exporting ${[Option.isSome(s.tracesUrl) ? "traces" : [], Option.isSome(s.metricsUrl) ? "metrics" : []].flat().join(" and ")} over OTLP/HTTP`,
      )
      return sdk
    }),
  )
