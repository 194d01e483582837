export {
  type AckCallback,
  type AckedPublisher,
  ackedPublisher,
  NotStored,
  type PublishOptions,
  type StreamAck,
} from "./acked-publish.ts"
export type { BusSettings } from "./config.ts"
export { BusConfig, DEFAULTS } from "./config.ts"
export { Nats } from "./connection.ts"
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
export type { DeadLetter, DeadLetterReason } from "./dlq.ts"
export { DeadLetters, deadLetterRecord, MAX_DLQ_PAYLOAD } from "./dlq.ts"
export { BusConnectError, ConsumeError, HandlerError, ProvisionError, PublishError } from "./errors.ts"
export type { HealthReport } from "./health.ts"
export { HEARTBEAT_MS, publishHealth } from "./health.ts"
export type { ProvisionOptions, ProvisionReport } from "./provision.ts"
export { CONSUMER_DEFAULTS, provision } from "./provision.ts"
export type { Published, PublisherShape } from "./publisher.ts"
export { derivedEventId, Publisher } from "./publisher.ts"
export type { DurableSpec, StreamSpec } from "./topology.ts"
export { durables, durablesOf, KV_BUCKETS, OBJECT_STORES, STREAMS } from "./topology.ts"
export type { TraceContext } from "./trace.ts"
export { childOf, formatTraceparent, parseTraceparent } from "./trace.ts"
export type { TrustedChain, TrustShape } from "./trust.ts"
export { Signer, Trust } from "./trust.ts"
export { Verifier } from "./verifier.ts"
