import { createHash } from "node:crypto"
import { headers as natsHeaders } from "@nats-io/transport-node"
import {
  type Draft,
  type Envelope,
  type Event,
  type EventType,
  encodeEvent,
  eventSubject,
  HEADER_TRACEPARENT,
  inboxPrefix,
  signEventEncoded,
} from "@vigil/events"
import { Context, Duration, Effect, Layer, Schedule } from "effect"
import { ackedPublisher, type StreamAck } from "./acked-publish.ts"
import { BusConfig } from "./config.ts"
import { Nats } from "./connection.ts"
import { PublishError } from "./errors.ts"
import { formatTraceparent } from "./trace.ts"
import { Signer } from "./trust.ts"

export interface Published<T extends EventType = EventType> {
  readonly event: Event<T>
  readonly seq: number
  /** JetStream already had this id (a retry, or a re-handled input): stored once. */
  readonly duplicate: boolean
}

export interface PublisherShape {
  /** Sign and publish; resolves once JetStream has stored it (or reports it a duplicate). */
  readonly publish: <T extends EventType>(draft: Draft<T>) => Effect.Effect<Published<T>, PublishError>
  /** Publish an already-signed event exactly as it is (re-publication, relays, tests). */
  readonly publishSigned: <T extends EventType>(event: Event<T>) => Effect.Effect<Published<T>, PublishError>
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

/**
 * Deterministic id for the `index`-th event a producer emits in response to `causeId`. Handling the same input
 * twice (a redelivery after a crash before the ack) therefore yields the same `Nats-Msg-Id`, and JetStream stores
 * the output once. The time part is the cause's, so ids stay sortable.
 */
export const derivedEventId = (causeId: string, producer: string, index = 0): string => {
  const h = createHash("sha256").update(`${producer}\n${causeId}\n${index}`).digest()
  let rand = ""
  // 16 base32 characters = 80 bits of the hash.
  let bits = 0
  let acc = 0
  for (let i = 0; rand.length < 16; i++) {
    acc = (acc << 8) | (h[i] as number)
    bits += 8
    while (bits >= 5 && rand.length < 16) {
      rand += CROCKFORD[(acc >>> (bits - 5)) & 31]
      bits -= 5
    }
    acc &= (1 << bits) - 1
  }
  return causeId.slice(0, 10) + rand
}

export class Publisher extends Context.Service<Publisher, PublisherShape>()("@vigil/bus/Publisher") {
  static readonly layer = Layer.effect(
    Publisher,
    Effect.gen(function* () {
      const { nc, user } = yield* Nats
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

      const send = <T extends EventType>(
        event: Event<T>,
        bytes: Uint8Array = encodeEvent(event as Envelope),
      ): Effect.Effect<Published<T>, PublishError> => {
        const subject = eventSubject(event.session, event.type)
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
          Effect.map((ack) => ({ event, seq: ack.seq, duplicate: ack.duplicate })),
        )
      }

      // An event emitted inside a traced effect carries that span as its trace context (envelope `trace`, signed,
      // and the `traceparent` header), so a request can be followed across services in any OTel backend.
      const withTrace = <T extends EventType>(draft: Draft<T>): Effect.Effect<Draft<T>> =>
        draft.trace !== undefined
          ? Effect.succeed(draft)
          : Effect.currentSpan.pipe(
              Effect.map((span) => ({
                ...draft,
                trace: formatTraceparent({ traceId: span.traceId, spanId: span.spanId, sampled: span.sampled }),
              })),
              Effect.orElseSucceed(() => draft),
            )

      return Publisher.of({
        publish: (draft) =>
          withTrace(draft).pipe(
            Effect.flatMap((d) =>
              Effect.suspend(() => {
                const { event, bytes } = signEventEncoded(key, d)
                return send(event, bytes)
              }),
            ),
          ),
        publishSigned: (event) => send(event),
      })
    }),
  )
}
