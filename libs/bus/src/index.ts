export { type AckedPublisher, ackedPublisher, NotStored } from "./acked-publish.ts"
export { BusConfig, DEFAULTS } from "./config.ts"
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
export { BusConnectError, ConsumeError, HandlerError, PublishError, StreamReadError } from "./errors.ts"
export { HEARTBEAT_MS, publishHealth } from "./health.ts"
export type { ProvisionOptions } from "./provision.ts"
export { CONSUMER_DEFAULTS, provision } from "./provision.ts"
export type { Published, PublisherShape } from "./publisher.ts"
export { Publisher } from "./publisher.ts"
export type { Dropped } from "./responder.ts"
export { respond } from "./responder.ts"
export type { ReadEventsOptions, StoredRecord, StreamReaderShape } from "./stream-reader.ts"
export { StreamReader } from "./stream-reader.ts"
export type { TraceContext } from "./trace.ts"
export { childOf, formatTraceparent, parseTraceparent } from "./trace.ts"
export type { TrustedChain } from "./trust.ts"
export { Signer, Trust } from "./trust.ts"
export { Verifier } from "./verifier.ts"
