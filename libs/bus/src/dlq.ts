import { createHash } from "node:crypto"
import { headers as natsHeaders } from "@nats-io/transport-node"
import { dlqSubject, HEADER_DLQ_REASON, type RejectionReason } from "@vigil/events"
import { Context, Effect, Layer } from "effect"
import { Nats } from "./connection.ts"
import { PublishError } from "./errors.ts"

export type DeadLetterReason = RejectionReason | "handler_failed"

/** What `vigil.dlq.<service>` carries: enough to find, explain and re-drive the refused message. */
export interface DeadLetter {
  readonly v: 1
  readonly service: string
  readonly reason: DeadLetterReason
  readonly detail: string
  readonly subject: string
  readonly stream: string
  readonly durable: string
  readonly streamSeq: number
  readonly deliveryCount: number
  readonly storedAt: string
  readonly deadLetteredAt: string
  readonly eventId?: string
  readonly type?: string
  readonly payloadBytes: number
  readonly payloadSha256: string
  /** The refused bytes, base64, cut at {@link MAX_DLQ_PAYLOAD} (an oversized payload must not be re-posted whole). */
  readonly payload: string
  readonly payloadTruncated: boolean
}

export const MAX_DLQ_PAYLOAD = 64 * 1024

export const deadLetterRecord = (
  fields: Omit<DeadLetter, "v" | "payload" | "payloadBytes" | "payloadSha256" | "payloadTruncated" | "deadLetteredAt">,
  payload: Uint8Array,
): DeadLetter => ({
  v: 1,
  ...fields,
  deadLetteredAt: new Date().toISOString(),
  payloadBytes: payload.length,
  payloadSha256: createHash("sha256").update(payload).digest("hex"),
  payload: Buffer.from(payload.subarray(0, MAX_DLQ_PAYLOAD)).toString("base64"),
  payloadTruncated: payload.length > MAX_DLQ_PAYLOAD,
})

export class DeadLetters extends Context.Service<
  DeadLetters,
  { readonly send: (record: DeadLetter) => Effect.Effect<void, PublishError> }
>()("@vigil/bus/DeadLetters") {
  static readonly layer = Layer.effect(
    DeadLetters,
    Effect.gen(function* () {
      const { js, user } = yield* Nats
      const subject = dlqSubject(user)
      return DeadLetters.of({
        send: (record) => {
          const h = natsHeaders()
          h.set(HEADER_DLQ_REASON, record.reason)
          // One DLQ entry per refused stream message, even if the refusal itself is retried or redelivered.
          const msgID = `dlq:${record.stream}:${record.durable}:${record.streamSeq}`
          return Effect.tryPromise({
            try: () => js.publish(subject, JSON.stringify(record), { msgID, headers: h }),
            catch: (cause) => new PublishError({ subject, eventId: record.eventId ?? "", refused: false, cause }),
          }).pipe(Effect.retry({ times: 5 }), Effect.asVoid)
        },
      })
    }),
  )
}
