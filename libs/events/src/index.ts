export { blobRefOf } from "./blobs.ts"
export { canonicalBytes, canonicalJson, contextBytes } from "./canonical.ts"
export type { EventData, EventType, Principal, Service } from "./catalog.ts"
export {
  CATALOG,
  DATA_CLASSES,
  EVENT_TYPES,
  isEventType,
  PRINCIPALS,
  SERVICES,
  TOOLS,
  typesConsumedBy,
  typesProducedBy,
} from "./catalog.ts"
export type { Ed25519 } from "./ed25519.ts"
export {
  fast as fastEd25519,
  noble as nobleEd25519,
  node as nodeEd25519,
  nodeVerifyAsync,
  randomSeed,
  sodium as sodiumEd25519,
} from "./ed25519.ts"
export type { Draft, Event, SigningKey, Unsigned } from "./envelope.ts"
export {
  ENVELOPE_VERSION,
  Envelope,
  encodeEvent,
  eventHash,
  followUp,
  keyIdOf,
  signEvent,
  signEventEncoded,
  signingBytes,
} from "./envelope.ts"
export {
  derivedEventId,
  EVENT_ID_PATTERN,
  eventIdFromDigest,
  eventIdKey,
  eventIdTime,
  newEventId,
  TOKEN_PATTERN,
} from "./ids.ts"
export { BlobRef, EventId, KeyId, Sha256Hex, SignatureB64, Timestamp, Token } from "./primitives.ts"
export type { SignatureChecker, SignaturePoolOptions } from "./signature-pool.ts"
export { inlineChecker, SignaturePool } from "./signature-pool.ts"
export * from "./subjects.ts"
export type { DurableSpec } from "./topology.ts"
export { AUDITOR_DURABLE, allDurables, durablesFor, SIEM_DURABLE } from "./topology.ts"
export type {
  KeyLookup,
  KeyResolver,
  Rejection,
  RejectionReason,
  TrustedKey,
  Verified,
  VerifyOptions,
} from "./verify.ts"
export { REJECTION_REASONS, verifyEvent, verifyEventAsync } from "./verify.ts"
