import type { JsMsg } from "@nats-io/jetstream"
import { type Event, type EventType, STREAM_EVENTS, verifyEvent } from "@vigil/events"
import { Cause, Effect, Exit, type Scope, Stream } from "effect"
import { BusConfig } from "./config.ts"
import { Nats } from "./connection.ts"
import { DeadLetters, deadLetterRecord } from "./dlq.ts"
import { ConsumeError, type HandlerError } from "./errors.ts"
import { Trust } from "./trust.ts"

/** Where a verified event came from, for handlers that care (e.g. the auditor's leaf order is `streamSeq`). */
export interface Delivery {
  readonly subject: string
  readonly streamSeq: number
  readonly deliveryCount: number
  readonly storedAt: number
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
 * Bind to a pre-created durable and hand every event that verifies (schema, signature, key authorised for the
 * type, key valid at the event's time, fresh) to `handler`. Anything else is dead-lettered with its reason and
 * acked, so bad input is never redelivered forever and never reaches a handler. Handler failures are nak'ed with
 * backoff and dead-lettered as `handler_failed` on the last allowed delivery.
 *
 * The consumer runs in a fiber of the current scope; closing the scope stops pulling and lets in-flight handlers
 * finish before the connection drains.
 */
export const consume = <T extends EventType, R>(
  opts: ConsumeOptions,
  handler: Handler<T, R>,
): Effect.Effect<ConsumerHandle, ConsumeError, Nats | Trust | BusConfig | DeadLetters | Scope.Scope | R> =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const trust = yield* Trust
    const cfg = yield* BusConfig
    const dlq = yield* DeadLetters
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
    const recent = new RecentIds()

    const deliveryOf = (m: JsMsg): Delivery => ({
      subject: m.subject,
      streamSeq: m.info.streamSequence,
      deliveryCount: m.info.deliveryCount,
      storedAt: Math.floor(m.info.timestampNanos / 1e6),
    })

    const deadLetter = (
      m: JsMsg,
      d: Delivery,
      reason: Parameters<typeof deadLetterRecord>[0]["reason"],
      detail: string,
      ids: { eventId?: string; type?: string },
    ) =>
      dlq
        .send(
          deadLetterRecord(
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
          ),
        )
        .pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              stats.deadLettered++
              m.ack()
            }),
          ),
          // If even the DLQ is unreachable, leave the message unacked: it comes back, nothing is lost.
          Effect.catch((e) => Effect.logError("dead-letter publish failed; message left for redelivery", e)),
        )

    const process = (m: JsMsg): Effect.Effect<void, never, R> => {
      const d = deliveryOf(m)
      const verified = verifyEvent(m.data, {
        keys: trust.resolver,
        maxBytes: cfg.maxEventBytes,
        subject: m.subject,
        receivedAt: d.storedAt,
        maxSkewMs: cfg.duplicateWindowMs,
      })
      if (!verified.ok) {
        stats.rejected++
        const { eventId, type } = verified
        return deadLetter(m, d, verified.reason, verified.detail, {
          ...(eventId === undefined ? {} : { eventId }),
          ...(type === undefined ? {} : { type }),
        })
      }
      const event = verified.event as Event<T>
      if (recent.has(event.id)) {
        stats.duplicates++
        m.ack()
        return Effect.void
      }
      return handler(event, d).pipe(
        Effect.exit,
        Effect.flatMap((exit) => {
          if (Exit.isSuccess(exit)) {
            recent.add(event.id)
            stats.handled++
            m.ack()
            return Effect.void
          }
          stats.failed++
          const why = Cause.pretty(exit.cause)
          if (maxDeliver > 0 && d.deliveryCount >= maxDeliver) {
            return deadLetter(m, d, "handler_failed", why.slice(0, 2000), { eventId: event.id, type: event.type })
          }
          m.nak(Math.min(30_000, 250 * 2 ** d.deliveryCount))
          return Effect.logWarning(`handler failed for ${event.type} ${event.id} (delivery ${d.deliveryCount})`, why)
        }),
      )
    }

    const messages = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => consumer.consume({ max_messages: opts.batch ?? 256 }),
        catch: (cause) => new ConsumeError({ durable: opts.durable, cause }),
      }),
      (msgs) =>
        Effect.promise(() =>
          msgs.close().then(
            () => undefined,
            () => undefined,
          ),
        ),
    )
    yield* Stream.fromAsyncIterable(messages, (cause) => new ConsumeError({ durable: opts.durable, cause })).pipe(
      Stream.mapEffect(process, { concurrency: opts.concurrency ?? 1 }),
      Stream.runDrain,
      Effect.catch((e) => Effect.logError(`consumer ${opts.durable} stopped`, e)),
      Effect.forkScoped,
    )
    return { durable: opts.durable, stats }
  })
