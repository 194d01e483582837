import { randomBytes } from "node:crypto"
import { Tracer } from "effect"

/** W3C trace context (`traceparent`) in and out of event headers and the envelope's `trace` field. */
export interface TraceContext {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

export const parseTraceparent = (value: string | undefined): TraceContext | undefined => {
  const m = value === undefined ? null : TRACEPARENT.exec(value)
  if (m === null) return undefined
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string]
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 }
}

export const formatTraceparent = (t: TraceContext): string => `00-${t.traceId}-${t.spanId}-${t.sampled ? "01" : "00"}`

/** A child span id within the same trace, for an event emitted while handling another. */
export const childOf = (parent: TraceContext | undefined): TraceContext => ({
  traceId: parent?.traceId ?? randomBytes(16).toString("hex"),
  spanId: randomBytes(8).toString("hex"),
  sampled: parent?.sampled ?? true,
})

/**
 * The span that emitted an event, as the parent of the span that handles it: an external span from its W3C
 * traceparent (sampling decision included), or undefined when the event carries none (or an invalid one).
 */
export const parentSpanOf = (traceparent: string | undefined): Tracer.ExternalSpan | undefined => {
  const t = parseTraceparent(traceparent)
  return t === undefined ? undefined : Tracer.externalSpan(t)
}
