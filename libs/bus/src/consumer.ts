import type { JsMsg } from "@nats-io/jetstream"
import {
  type Event,
  type EventType,
  type Rejection,
  STREAM_EVENTS,
  type Verified,
  type VerifyOptions,
  verifyEvent,
  verifyEventAsync,
} from "@vigil/events"
import { Cause, Clock, Duration, Effect, Exit, Fiber, Queue, Schedule, type Scope, Stream, Tracer } from "effect"
import { BusConfig } from "./config.ts"
import { Nats } from "./connection.ts"
import { DeadLetters, deadLetterRecord } from "./dlq.ts"
import { ConsumeError, type HandlerError } from "./errors.ts"
import { eventHandled, eventIn, handlerTook } from "./metrics.ts"
import { parentSpanOf } from "./trace.ts"
import { Trust } from "./trust.ts"
import { Verifier } from "./verifier.ts"

/** Where a verified event came from, for handlers that care (e.g. the auditor's leaf order is `streamSeq`). */
export interface Delivery {
  readonly subject: string
  readonly streamSeq: number
  readonly deliveryCount: number
  readonly storedAt: number
  /** The event's RFC 8785 canonical bytes, as verified (hash them instead of re-encoding the event). */
  readonly canonical: Uint8Array
}

export type Handler<T extends EventType, R> = (
  event: Event<T>,
  delivery: Delivery,
) => Effect.Effect<void, HandlerError, R>

export interface ConsumeOptions {
  readonly stream?: string
  readonly durable: string
  /** Messages handled at once; 1 keeps stream order. */
  readonly concurrency?: number
  /** Messages requested per pull. */
  readonly batch?: number
}

export interface ConsumerStats {
  handled: number
  rejected: number
  duplicates: number
  failed: number
  deadLettered: number
}

export interface BatchOptions extends ConsumeOptions {
  /** Most events handed to the handler at once. */
  readonly maxBatch: number
  /** Longest a partial batch waits for more events. */
  readonly maxWaitMs: number
}

/** A verified event with where it came from, as batch handlers receive it (in stream order). */
export interface Delivered<T extends EventType = EventType> {
  readonly event: Event<T>
  readonly delivery: Delivery
}

export type BatchHandler<R> = (batch: ReadonlyArray<Delivered>) => Effect.Effect<void, HandlerError, R>

export interface ConsumerHandle {
  readonly durable: string
  readonly stats: Readonly<ConsumerStats>
}

/**
 * How many recently handled ids a consumer remembers. A redelivery of an event handled in this process life
 * (ack lost, ack_wait expired while a handler was slow) is acked without running the handler again.
 */
const RECENT_IDS = 16_384

class RecentIds {
  private readonly set = new Set<string>()
  has(id: string): boolean {
    return this.set.has(id)
  }
  add(id: string): void {
    this.set.add(id)
    if (this.set.size > RECENT_IDS) {
      const oldest = this.set.values().next().value as string
      this.set.delete(oldest)
    }
  }
}

/**
 * What a handler span says about its event: ids, type, source, where it sits in the stream. Never the payload, the
 * session (a client may name it), the subject (it holds the session) or anything a handler returns.
 */
const spanAttributes = (service: string, durable: string, event: Event, d: Delivery) => ({
  "messaging.system": "nats",
  "messaging.operation.type": "process",
  "messaging.consumer.group.name": durable,
  "vigil.service": service,
  "vigil.event.id": event.id,
  "vigil.event.type": event.type,
  "vigil.event.source": event.source,
  "vigil.stream.seq": d.streamSeq,
  "vigil.delivery.count": d.deliveryCount,
})

/** The span of one handled event: a consumer span whose parent is the span that emitted it, when it says. */
const handleSpanOptions = (service: string, durable: string, event: Event, d: Delivery): Tracer.SpanOptions => {
  const parent = parentSpanOf(event.trace)
  return {
    kind: "consumer",
    attributes: spanAttributes(service, durable, event, d),
    // The call site is always this file; capturing a stack for it costs more than the rest of the span.
    captureStackTrace: false,
    ...(parent === undefined ? {} : { parent }),
  }
}

/**
 * How a failed handler's span ends: with the kind of failure (the error's tag), never its message, stack or cause,
 * which may quote content, paths or secrets. A tracer exports what a span's failure carries.
 */
const spanFailure = (cause: Cause.Cause<unknown>) => {
  const error = Cause.findErrorOption(cause)
  const tag =
    error._tag === "Some" && typeof error.value === "object" && error.value !== null && "_tag" in error.value
      ? String(error.value._tag)
      : undefined
  const message = Cause.hasFails(cause)
    ? `handler failed${tag === undefined ? "" : ` (${tag})`}`
    : Cause.hasDies(cause)
      ? "handler died"
      : "handler interrupted"
  return { name: "HandlerFailure", message, stack: `HandlerFailure: ${message}` }
}

/**
 * Run a handler for one event in a span that continues the event's trace (its signed `trace` field, the W3C
 * traceparent the producer set), so events the handler emits carry the same trace id; count it, and time it.
 * Resolves to the handler's exit.
 */
const handleTraced =
  (service: string, durable: string, event: Event, d: Delivery) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Exit.Exit<A, E>, never, R> =>
    Effect.suspend(() => {
      const start = performance.now()
      let exit: Exit.Exit<A, E> | undefined
      return effect.pipe(
        Effect.exit,
        Effect.flatMap((e) => {
          exit = e
          const counted = eventHandled(event.type, durable, performance.now() - start)
          return Exit.isSuccess(e) ? counted : Effect.andThen(counted, Effect.fail(spanFailure(e.cause)))
        }),
        Effect.withSpan(`${service}.handle ${event.type}`, handleSpanOptions(service, durable, event, d)),
        Effect.exit,
        Effect.map(() => exit as Exit.Exit<A, E>),
      )
    })

/**
 * Run a batch handler with one span per event of the batch (each continuing its event's trace, all ending with the
 * batch), so every event's trace shows where it was handled. The handler itself runs outside them, as before. With
 * no tracer installed (Effect's native tracer, which exports nothing) the spans are not made at all. Resolves to
 * the handler's exit.
 */
const handleBatchTraced =
  (service: string, durable: string, batch: ReadonlyArray<{ readonly event: Event; readonly d: Delivery }>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Exit.Exit<A, E>, never, R> =>
    Effect.gen(function* () {
      const tracer = yield* Effect.tracer
      const spans =
        tracer === Tracer.nativeTracer
          ? []
          : yield* Effect.forEach(batch, ({ event, d }) => {
              const { captureStackTrace: _, ...options } = handleSpanOptions(service, durable, event, d)
              return Effect.makeSpan(`${service}.handle ${event.type}`, {
                ...options,
                attributes: { ...options.attributes, "vigil.batch.size": batch.length },
              })
            })
      for (const { event } of batch) yield* eventIn(event.type, durable)
      const start = performance.now()
      const exit = yield* Effect.exit(effect)
      yield* handlerTook("batch", durable, performance.now() - start)
      if (spans.length > 0) {
        const end = yield* Clock.currentTimeNanos
        const spanExit = Exit.isSuccess(exit) ? Exit.void : Exit.fail(spanFailure(exit.cause))
        for (const span of spans) span.end(end, spanExit)
      }
      return exit
    })

/** Where a message is in its stream, before it is known to be a valid event. */
type Position = Omit<Delivery, "canonical">

/** A message that verified, with its event. */
interface Admitted {
  readonly m: JsMsg
  readonly d: Delivery
  readonly event: Event
}

/** What binding a durable gives both consumption styles: verified events in order, and how to settle them. */
const bindDurable = (opts: ConsumeOptions) =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const trust = yield* Trust
    const cfg = yield* BusConfig
    const dlq = yield* DeadLetters
    const { signatures } = yield* Verifier
    const stream = opts.stream ?? STREAM_EVENTS
    const consumer = yield* Effect.tryPromise({
      try: () => js.consumers.get(stream, opts.durable),
      catch: (cause) => new ConsumeError({ durable: opts.durable, cause }),
    })
    // `consumers.get` fetched the info already; the cached copy costs no request.
    const info = yield* Effect.tryPromise({
      try: () => consumer.info(true),
      catch: (cause) => new ConsumeError({ durable: opts.durable, cause }),
    })
    const maxDeliver = info.config.max_deliver ?? -1
    const stats: ConsumerStats = { handled: 0, rejected: 0, duplicates: 0, failed: 0, deadLettered: 0 }

    const deliveryOf = (m: JsMsg): Position => ({
      subject: m.subject,
      streamSeq: m.info.streamSequence,
      deliveryCount: m.info.deliveryCount,
      storedAt: Math.floor(m.info.timestampNanos / 1e6),
    })

    /**
     * Record the message in `vigil.dlq.<user>` and ack it. Until the DLQ has it, the message stays unacked and the
     * attempt is repeated (the ack deadline extended meanwhile): on its last allowed delivery JetStream would not
     * bring it back, so giving up here would lose it.
     */
    const deadLetter = (
      m: JsMsg,
      d: Position,
      reason: Parameters<typeof deadLetterRecord>[0]["reason"],
      detail: string,
      ids: { eventId?: string; type?: string },
    ) => {
      const record = deadLetterRecord(
        {
          service: cfg.user,
          reason,
          detail,
          subject: m.subject,
          stream,
          durable: opts.durable,
          streamSeq: d.streamSeq,
          deliveryCount: d.deliveryCount,
          storedAt: new Date(d.storedAt).toISOString(),
          ...ids,
        },
        m.data,
      )
      return dlq.send(record).pipe(
        Effect.tapError((e) =>
          Effect.sync(() => m.working()).pipe(
            Effect.andThen(Effect.logError("dead-letter publish failed; retrying", e)),
          ),
        ),
        Effect.retry(Schedule.min([Schedule.exponential(Duration.millis(200), 2), Schedule.spaced("5 seconds")])),
        Effect.tap(() =>
          Effect.sync(() => {
            stats.deadLettered++
            m.ack()
          }),
        ),
        Effect.orDie,
      )
    }

    /** A failed handler: nak with backoff, or dead-letter it on the last delivery JetStream allows. */
    const failed = (m: JsMsg, d: Position, event: Event, cause: Cause.Cause<unknown>) => {
      stats.failed++
      const why = Cause.pretty(cause)
      if (maxDeliver > 0 && d.deliveryCount >= maxDeliver) {
        return deadLetter(m, d, "handler_failed", why.slice(0, 2000), { eventId: event.id, type: event.type })
      }
      m.nak(Math.min(30_000, 250 * 2 ** d.deliveryCount))
      return Effect.logWarning(`handler failed for ${event.type} ${event.id} (delivery ${d.deliveryCount})`, why)
    }

    const verifyOptions = (m: JsMsg, d: Position): VerifyOptions => ({
      keys: trust.resolver,
      maxBytes: cfg.maxEventBytes,
      subject: m.subject,
      receivedAt: d.storedAt,
      maxSkewMs: cfg.duplicateWindowMs,
      signatures,
    })

    interface Checked {
      readonly m: JsMsg
      readonly d: Position
      /** Manifest version the verdict was reached under. */
      readonly manifest: number
      readonly verified: Verified | Rejection
    }

    const check = (m: JsMsg): Promise<Checked> => {
      const d = deliveryOf(m)
      const manifest = trust.latestVersion()
      return verifyEventAsync(m.data, verifyOptions(m, d)).then((verified) => ({ m, d, manifest, verified }))
    }

    /** Dead-letter what does not verify; pass on what does. Runs in delivery order. */
    const admit = (c: Checked): Effect.Effect<Admitted | undefined> => {
      const { m, d } = c
      // The verdict depends only on the bytes, the delivery and the manifest. If a newer manifest arrived while this
      // message waited, verify it again now, so every verdict is the one the manifest in force at handling gives.
      const verified = c.manifest === trust.latestVersion() ? c.verified : verifyEvent(m.data, verifyOptions(m, d))
      if (verified.ok) return Effect.succeed({ m, d: { ...d, canonical: verified.canonical }, event: verified.event })
      stats.rejected++
      const { eventId, type } = verified
      return deadLetter(m, d, verified.reason, verified.detail, {
        ...(eventId === undefined ? {} : { eventId }),
        ...(type === undefined ? {} : { type }),
      }).pipe(Effect.as(undefined))
    }

    const pull = opts.batch ?? 256
    const messages = yield* Effect.tryPromise({
      try: () => consumer.consume({ max_messages: pull }),
      catch: (cause) => new ConsumeError({ durable: opts.durable, cause }),
    })
    // Every message is verified as soon as it arrives (the Ed25519 checks of one arrival burst go to the Verifier's
    // workers together) and handed on in delivery order once its verdict and all earlier ones are in. Verification
    // has no side effect: dead-lettering, acks and handler calls happen after `admit`, in delivery order. Plain
    // promises here, not a fiber per message: this runs for every event of every service. How far it runs ahead is
    // bounded by the durable's max_ack_pending.
    const checked = Stream.callback<Checked, ConsumeError>((queue) =>
      Effect.sync(() => {
        // In arrival order; a slot leaves (and drops its message) as soon as it and all before it are verified.
        const slots: Array<{ value: Checked | undefined }> = []
        let outstanding = 0
        let sourceDone = false
        const release = () => {
          while (slots.length > 0 && (slots[0] as { value: Checked | undefined }).value !== undefined) {
            Queue.offerUnsafe(queue, (slots.shift() as { value: Checked }).value)
          }
          if (sourceDone && outstanding === 0) Queue.endUnsafe(queue)
        }
        const pump = async () => {
          for await (const m of messages) {
            const slot: { value: Checked | undefined } = { value: undefined }
            slots.push(slot)
            outstanding++
            check(m).then(
              (c) => {
                slot.value = c
                outstanding--
                release()
              },
              // Verification never rejects by contract; if it ever does, stop visibly instead of stalling here.
              (cause) => Queue.failCauseUnsafe(queue, Cause.fail(new ConsumeError({ durable: opts.durable, cause }))),
            )
          }
        }
        pump().then(
          () => {
            sourceDone = true
            release()
          },
          (cause) => Queue.failCauseUnsafe(queue, Cause.fail(new ConsumeError({ durable: opts.durable, cause }))),
        )
      }),
    )
    const admitted = checked.pipe(
      Stream.mapEffect(admit),
      Stream.filter((x): x is Admitted => x !== undefined),
    )

    /**
     * Run the consumption fiber until the scope closes; then stop pulling first and give in-flight handlers a
     * moment to finish and ack, so a clean shutdown redelivers as little as possible.
     */
    const run = <E, R>(drain: Effect.Effect<void, E, R>) =>
      Effect.gen(function* () {
        const fiber = yield* drain.pipe(
          Effect.catch((e) => Effect.logError(`consumer ${opts.durable} stopped`, e)),
          Effect.forkDetach,
        )
        yield* Effect.addFinalizer(() =>
          Effect.promise(() =>
            messages.close().then(
              () => undefined,
              () => undefined,
            ),
          ).pipe(
            Effect.andThen(Fiber.await(fiber).pipe(Effect.timeout("5 seconds"), Effect.ignore)),
            Effect.andThen(Fiber.interrupt(fiber)),
          ),
        )
        return { durable: opts.durable, stats } satisfies ConsumerHandle
      })

    return { service: cfg.user, stats, admitted, failed, run }
  })

/**
 * Bind to a pre-created durable and hand every event that verifies (schema, signature, key authorised for the
 * type, key valid at the event's time, fresh, key still valid and authorised when the stream stored it) to
 * `handler`. Anything else is dead-lettered with its reason (a record signed with this service's key) and acked,
 * so bad input is never redelivered forever and never reaches a handler. Handler failures are nak'ed with backoff
 * and dead-lettered as `handler_failed` on the last allowed delivery.
 *
 * The consumer runs in a fiber of the current scope; closing the scope stops pulling and lets in-flight handlers
 * finish (for a few seconds) before the connection drains.
 */
export const consume = <T extends EventType, R>(
  opts: ConsumeOptions,
  handler: Handler<T, R>,
): Effect.Effect<ConsumerHandle, ConsumeError, Nats | Trust | Verifier | BusConfig | DeadLetters | Scope.Scope | R> =>
  Effect.gen(function* () {
    const { service, stats, admitted, failed, run } = yield* bindDurable(opts)
    const recent = new RecentIds()
    const process = ({ m, d, event }: Admitted) => {
      if (recent.has(event.id)) {
        stats.duplicates++
        m.ack()
        return Effect.void
      }
      return handler(event as Event<T>, d).pipe(
        handleTraced(service, opts.durable, event, d),
        Effect.flatMap((exit) => {
          if (Exit.isFailure(exit)) return failed(m, d, event, exit.cause)
          recent.add(event.id)
          stats.handled++
          m.ack()
          return Effect.void
        }),
      )
    }
    return yield* run(admitted.pipe(Stream.mapEffect(process, { concurrency: opts.concurrency ?? 1 }), Stream.runDrain))
  })

/**
 * Like {@link consume}, but the handler receives verified events in stream order in batches (up to `maxBatch`,
 * or whatever arrived within `maxWaitMs`), and the whole batch is acked only after the handler succeeded. For
 * consumers whose commit is per batch, like the auditor's fsync'd log append.
 */
export const consumeBatches = <R>(
  opts: BatchOptions,
  handler: BatchHandler<R>,
): Effect.Effect<ConsumerHandle, ConsumeError, Nats | Trust | Verifier | BusConfig | DeadLetters | Scope.Scope | R> =>
  Effect.gen(function* () {
    const { service, stats, admitted, failed, run } = yield* bindDurable(opts)
    const process = (batch: ReadonlyArray<Admitted>) =>
      handler(batch.map(({ event, d }) => ({ event, delivery: d }))).pipe(
        handleBatchTraced(service, opts.durable, batch),
        Effect.flatMap((exit) => {
          if (Exit.isFailure(exit))
            return Effect.forEach(batch, ({ m, d, event }) => failed(m, d, event, exit.cause), { discard: true })
          stats.handled += batch.length
          for (const { m } of batch) m.ack()
          return Effect.void
        }),
      )
    return yield* run(
      admitted.pipe(
        Stream.groupedWithin(opts.maxBatch, Duration.millis(opts.maxWaitMs)),
        // The next batch is pulled, verified and grouped while the handler commits this one (an fsync, waiting for
        // the stream's acks): without the buffer, verification stops whenever a handler waits.
        Stream.buffer({ capacity: 1 }),
        Stream.mapEffect(process),
        Stream.runDrain,
      ),
    )
  })
