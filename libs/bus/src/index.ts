export {
  type AckCallback,
  type AckedPublisher,
  ackedPublisher,
  NotStored,
  type PublishOptions,
  type StreamAck,
} from "./acked-publish.ts"
export type { BusSettings } from "./config.ts"
export { BusConfig, DEFAULTS, MAX_EVENT_BYTES } from "./config.ts"
export { jetStreamOptions, Nats } from "./connection.ts"
export type {
  BatchHandler,
  BatchOptions,
  ConsumeOptions,
  ConsumerHandle,
  ConsumerStats,
  Delivered,
  Delivery,
  Handler,
} from "./consumer.ts"
export { consume, consumeBatches } from "./consumer.ts"
export type {
  DeadLetter,
  DeadLetterReason,
  DeadLetterRefusal,
  DeadLetterVerdict,
  UnsignedDeadLetter,
  VerifyDeadLetterOptions,
} from "./dlq.ts"
export {
  DEAD_LETTER_CONTEXT,
  DEAD_LETTER_VERSION,
  DeadLetters,
  deadLetterMsgId,
  deadLetterRecord,
  deadLetterSigningBytes,
  MAX_DLQ_PAYLOAD,
  signDeadLetter,
  verifyDeadLetter,
} from "./dlq.ts"
export { BusConnectError, ConsumeError, HandlerError, ProvisionError, PublishError } from "./errors.ts"
export type { HealthReport } from "./health.ts"
export { HEARTBEAT_MS, publishHealth } from "./health.ts"
export type { ProvisionOptions, ProvisionReport } from "./provision.ts"
export { CONSUMER_DEFAULTS, provision } from "./provision.ts"
export type { Published, PublisherShape } from "./publisher.ts"
export { Publisher } from "./publisher.ts"
export type { Dropped, Responder, ResponderOptions } from "./responder.ts"
export { IMPORT_REPLY_PREFIX, respond } from "./responder.ts"
export type { DurableSpec, StreamSpec } from "./topology.ts"
export { durables, durablesOf, KV_BUCKETS, OBJECT_STORES, STREAMS } from "./topology.ts"
export type { TraceContext } from "./trace.ts"
export { childOf, formatTraceparent, parseTraceparent } from "./trace.ts"
export type { TrustedChain, TrustShape } from "./trust.ts"
export { Signer, Trust } from "./trust.ts"
export { Verifier } from "./verifier.ts"
