import type { EventType } from "@vigil/events"
import { type Context, Effect, Metric } from "effect"
import type { DeadLetterReason } from "./dlq.ts"

/*
 * The bus's standard metrics, as Effect `Metric`s: kept in the process's metric registry (a few numbers per series)
 * and exported only when telemetry is on (`Telemetry.layer` of @vigil/runtime). Every attribute comes from a small
 * fixed set (catalog event types, durable names, refusal reasons), never from message content: a message that did
 * not verify is counted by its reason alone, since the type it claims is whatever its sender wrote.
 */

/** The metric names, for dashboards and tests. */
export const BUS_METRICS = {
  eventsIn: "vigil.bus.events.in",
  eventsPublished: "vigil.bus.events.published",
  deadLetters: "vigil.bus.dead_letters",
  handlerDuration: "vigil.bus.handler.duration_ms",
} as const

type Attributes = Readonly<Record<string, string>>

/**
 * One metric per attribute combination, made on first use. A metric caches its series key, so an update is one map
 * lookup; `Metric.withAttributes` would merge the attributes into a new context on every update.
 */
const tagged = <M>(make: (attributes: Attributes) => M) => {
  const byKey = new Map<string, M>()
  return (attributes: Attributes): M => {
    const key = Object.values(attributes).join("\u0000")
    let m = byKey.get(key)
    if (m === undefined) {
      m = make(attributes)
      byKey.set(key, m)
    }
    return m
  }
}

const counter = (name: string, description: string) =>
  tagged((attributes) => Metric.counter(name, { description, incremental: true, attributes }))

const eventsInOf = counter(
  BUS_METRICS.eventsIn,
  "Verified events handed to a handler (every delivery), by event type and durable",
)
const eventsPublishedOf = counter(
  BUS_METRICS.eventsPublished,
  "Events this process stored on the bus (de-duplicated retries not counted), by event type",
)
const deadLettersOf = counter(BUS_METRICS.deadLetters, "Messages this service dead-lettered, by reason")

/** 0.25 ms to about 8 s, doubling. */
const DURATION_BOUNDARIES = Metric.exponentialBoundaries({ start: 0.25, factor: 2, count: 16 })
const handlerDurationOf = tagged((attributes) =>
  Metric.histogram(BUS_METRICS.handlerDuration, {
    description: "Time a handler took for one event (or one batch: type `batch`), in ms, by event type and durable",
    boundaries: DURATION_BOUNDARIES,
    attributes,
  }),
)

/** A verified event handed to the handler of `durable`. */
export const eventIn = (type: EventType, durable: string): Effect.Effect<void> =>
  Metric.update(eventsInOf({ type, durable }), 1)

/**
 * A verified event of `type` handled by the handler of `durable` in `ms` (successfully or not): {@link eventIn} and
 * {@link handlerTook} in one step, as the consumer records every event.
 */
export const eventHandled = (type: EventType, durable: string, ms: number): Effect.Effect<void> =>
  Effect.contextWith((context: Context.Context<never>) => {
    const attributes = { type, durable }
    eventsInOf(attributes).updateUnsafe(1, context)
    handlerDurationOf(attributes).updateUnsafe(ms, context)
    return Effect.void
  })

/** An event this process stored on the bus. */
export const eventPublished = (type: EventType): Effect.Effect<void> => Metric.update(eventsPublishedOf({ type }), 1)

/** A message recorded on this service's dead-letter subject. */
export const deadLettered = (reason: DeadLetterReason): Effect.Effect<void> =>
  Metric.update(deadLettersOf({ reason }), 1)

/** How long a handler of `durable` took for one event of `type`, or for a batch (`type` = `"batch"`). */
export const handlerTook = (type: EventType | "batch", durable: string, ms: number): Effect.Effect<void> =>
  Metric.update(handlerDurationOf({ type, durable }), ms)
