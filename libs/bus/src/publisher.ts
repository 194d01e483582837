import { headers as natsHeaders } from "@nats-io/transport-node"
import { fastEd25519 } from "@vigil/crypto"
import {
  type Draft,
  derivedEventId,
  type Envelope,
  type Event,
  type EventType,
  encodeEvent,
  eventIdKey,
  eventSubject,
  HEADER_TRACEPARENT,
  inboxPrefix,
  newEventId,
  STREAM_EVENTS,
  signEventEncoded,
  signingBytes,
} from "@vigil/events"
import { Context, Duration, Effect, Layer, Schedule } from "effect"
import { ackedPublisher, type StreamAck } from "./acked-publish.ts"
import { BusConfig } from "./config.ts"
import { Nats } from "./connection.ts"
import { PublishError } from "./errors.ts"
import { eventPublished } from "./metrics.ts"
import { formatTraceparent, parseTraceparent } from "./trace.ts"
import { Signer } from "./trust.ts"

export interface Published<T extends EventType = EventType> {
  /** The event as stored: for a duplicate, the copy this producer stored before. */
  readonly event: Event<T>
  readonly seq: number
  /** JetStream already had this id from this producer (a retry, or a re-handled input): stored once. */
  readonly duplicate: boolean
}

export interface PublisherShape {
  /** Sign and publish; resolves once JetStream has stored it (or reports it a duplicate). */
  readonly publish: <T extends EventType>(draft: Draft<T>) => Effect.Effect<Published<T>, PublishError>
  /** Publish an already-signed event exactly as it is (re-publication, relays, tests). */
  readonly publishSigned: <T extends EventType>(event: Event<T>) => Effect.Effect<Published<T>, PublishError>
  /**
   * The id of the `index`-th event this producer emits for `purpose` in answer to `causeId`: the same on every
   * redelivery of the cause, and unpredictable to every other principal (keyed by this producer's signing seed).
   */
  readonly derivedId: (causeId: string, purpose: string, index?: number) => string
}

/** What a duplicate ack's stored message turned out to be. */
type StoredCopy<T extends EventType> =
  | { readonly mine: true; readonly event: Event<T> }
  | { readonly mine: false; readonly why: string }

export class Publisher extends Context.Service<Publisher, PublisherShape>()("@vigil/bus/Publisher") {
  static readonly layer = Layer.effect(
    Publisher,
    Effect.gen(function* () {
      const { nc, js, user } = yield* Nats
      const { key } = yield* Signer
      const cfg = yield* BusConfig
      const acked = yield* Effect.acquireRelease(
        Effect.sync(() => ackedPublisher(nc, inboxPrefix(user), cfg.publishTimeoutMs)),
        (p) => Effect.sync(() => p.close()),
      )
      const retry = {
        schedule: Schedule.exponential(Duration.millis(100), 2),
        times: Math.max(0, cfg.publishAttempts - 1),
        while: (e: PublishError) => !e.refused,
      }

      const idKey = eventIdKey(key.seed)
      /** Whatever the stored message holds (it may be anyone's junk, not canonicalisable), never a defect. */
      const signedByUs = (sig: string, unsigned: object): boolean => {
        try {
          return fastEd25519.verify(Buffer.from(sig, "base64url"), signingBytes(unsigned), key.publicKey)
        } catch {
          return false
        }
      }
      // The connection's own JetStream context: its API prefix, and no $JS.API.INFO check.
      const jsm = yield* Effect.promise(() => js.jetstreamManager(false))

      /**
       * A duplicate ack means the stream already holds a message under this id. It is ours when it is our own
       * earlier copy (the same bytes, or an event of ours with this id and type signed by our key: a re-handled
       * input signs again with a new time); anything else took the id first (NATS-NOTES trap 10).
       */
      const storedCopy = <T extends EventType>(
        event: Event<T>,
        bytes: Uint8Array,
        seq: number,
      ): Effect.Effect<StoredCopy<T>, PublishError> =>
        Effect.tryPromise({
          try: () => jsm.direct.getMessage(STREAM_EVENTS, { seq }),
          catch: (cause) =>
            new PublishError({
              subject: eventSubject(event.session, event.type),
              eventId: event.id,
              refused: false,
              cause,
            }),
        }).pipe(
          Effect.map((m): StoredCopy<T> => {
            if (m === null) return { mine: false, why: `stream sequence ${seq} is gone` }
            if (Buffer.from(m.data).equals(Buffer.from(bytes))) return { mine: true, event }
            const other = parseOwn(m.data)
            if (other === undefined) return { mine: false, why: "the stored message is not JSON" }
            const { sig, ...unsigned } = other
            const ours =
              other.id === event.id &&
              other.type === event.type &&
              other.kid === key.kid &&
              other.source === key.principal &&
              typeof sig === "string" &&
              signedByUs(sig, unsigned)
            return ours
              ? { mine: true, event: other as unknown as Event<T> }
              : { mine: false, why: `the stored message (${m.subject}) is not this producer's ${event.type}` }
          }),
        )

      const send = <T extends EventType>(
        event: Event<T>,
        bytes: Uint8Array = encodeEvent(event as Envelope),
      ): Effect.Effect<Published<T>, PublishError> => {
        const subject = eventSubject(event.session, event.type)
        if (bytes.length > cfg.maxEventBytes) {
          // Every consumer would dead-letter it and the audit log could not hold it: refused, not retried.
          return Effect.fail(
            new PublishError({
              subject,
              eventId: event.id,
              refused: true,
              cause: new Error(
                `event ${event.id} (${event.type}) is ${bytes.length} bytes; the bus takes events of at most ${cfg.maxEventBytes} bytes: put content in a blob`,
              ),
            }),
          )
        }
        const h = natsHeaders()
        if (event.trace !== "") h.set(HEADER_TRACEPARENT, event.trace)
        return Effect.callback<StreamAck, PublishError>((resume) => {
          // msgId = event id: a retry after a lost ack is de-duplicated by JetStream.
          acked.send(subject, bytes, { msgId: event.id, headers: h }, (err, ack) =>
            resume(
              err === undefined
                ? Effect.succeed(ack as StreamAck)
                : Effect.fail(new PublishError({ subject, eventId: event.id, refused: err.refused, cause: err })),
            ),
          )
        }).pipe(
          Effect.retry(retry),
          Effect.flatMap((ack): Effect.Effect<Published<T>, PublishError> => {
            if (!ack.duplicate) return Effect.as(eventPublished(event.type), { event, seq: ack.seq, duplicate: false })
            return storedCopy(event, bytes, ack.seq).pipe(
              Effect.flatMap((copy) =>
                copy.mine
                  ? Effect.succeed({ event: copy.event, seq: ack.seq, duplicate: true })
                  : Effect.fail(
                      new PublishError({
                        subject,
                        eventId: event.id,
                        refused: false,
                        squatted: { seq: ack.seq, why: copy.why },
                        cause: new Error(`event id ${event.id} was taken first: ${copy.why}`),
                      }),
                    ),
              ),
            )
          }),
        )
      }

      /** Our id was taken first: say so, and store the event under a fresh id. Nothing is silently lost. */
      const reclaim = <T extends EventType>(draft: Draft<T>, e: PublishError) =>
        Effect.gen(function* () {
          const squatted = e.squatted as { readonly seq: number; readonly why: string }
          const fresh = newEventId()
          yield* publishDraft({
            type: "alert.raised",
            session: draft.session,
            ...(draft.correlation === undefined ? {} : { correlation: draft.correlation }),
            ...(draft.causation === undefined || draft.causation === null ? {} : { causation: draft.causation }),
            data: {
              rule: "event-id-squatted",
              severity: "critical",
              summary: `Another publisher stored stream sequence ${squatted.seq} under the id of this ${draft.type} (${e.eventId}); ${key.principal} published it again as ${fresh}.`,
              evidence: [],
              details: { squattedId: e.eventId, streamSeq: squatted.seq, reason: squatted.why, republishedAs: fresh },
            },
          }).pipe(Effect.ignore)
          return yield* publishDraft({ ...draft, id: fresh })
        })

      const publishDraft = <T extends EventType>(d: Draft<T>): Effect.Effect<Published<T>, PublishError> =>
        Effect.suspend(() => {
          const { event, bytes } = signEventEncoded(key, d)
          return send(event, bytes)
        })

      // An event emitted inside a traced effect carries that span as its trace context (envelope `trace`, signed,
      // and the `traceparent` header), so a request can be followed across services in any OTel backend. A follow-up
      // names its cause's trace; when the handler's span is in that same trace, the span is the closer parent.
      const withTrace = <T extends EventType>(draft: Draft<T>): Effect.Effect<Draft<T>> =>
        Effect.currentSpan.pipe(
          Effect.map((span) => {
            const given = draft.trace === undefined ? undefined : parseTraceparent(draft.trace)
            if (draft.trace !== undefined && given?.traceId !== span.traceId) return draft
            return {
              ...draft,
              trace: formatTraceparent({ traceId: span.traceId, spanId: span.spanId, sampled: span.sampled }),
            }
          }),
          Effect.orElseSucceed(() => draft),
        )

      return Publisher.of({
        publish: (draft) =>
          withTrace(draft).pipe(
            Effect.flatMap((d) =>
              publishDraft(d).pipe(
                Effect.catchIf(
                  (e) => e.squatted !== undefined,
                  (e) => reclaim(d, e),
                ),
              ),
            ),
          ),
        publishSigned: (event) => send(event),
        derivedId: (causeId, purpose, index) => derivedEventId(idKey, causeId, purpose, index),
      })
    }),
  )
}

/** The stored copy as a JSON object, or undefined when it is not one. */
const parseOwn = (data: Uint8Array): Record<string, unknown> | undefined => {
  try {
    const v = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString("utf8")) as unknown
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
