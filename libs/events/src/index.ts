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
  typesProducedBy,
} from "./catalog.ts"
export type { Draft, Event, SigningKey } from "./envelope.ts"
export {
  Envelope,
  encodeEvent,
  eventHash,
  followUp,
  signEvent,
  signEventEncoded,
  signingBytes,
} from "./envelope.ts"
export { derivedEventId, eventIdFromDigest, eventIdKey, newEventId } from "./ids.ts"
export { BlobRef, KeyId, Sha256Hex, SignatureB64, Timestamp, Token } from "./primitives.ts"
export {
  AUDIT_ALL,
  AUDIT_CHECKPOINT_SUBJECT,
  DLQ_ALL,
  dlqSubject,
  durableName,
  EVENTS_ALL,
  eventSubject,
  eventTypeFilter,
  HEADER_DLQ_REASON,
  HEADER_MSG_ID,
  HEADER_TRACEPARENT,
  HEALTH_ALL,
  healthSubject,
  inboxPrefix,
  jsApiPrefix,
  KEYS_MANIFEST_SUBJECT,
  KV_KEYS,
  KV_POLICY,
  kvStream,
  kvSubject,
  OBJ_BLOBS,
  POLICY_BUNDLE_KEY,
  POLICY_BUNDLE_SUBJECT,
  PROOF_ALL,
  PROOF_ASKERS,
  PROOF_SUBJECTS,
  proofRequestSubject,
  ROLE_JS_API,
  STREAM_AUDIT,
  STREAM_DLQ,
  STREAM_EVENTS,
} from "./subjects.ts"
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
