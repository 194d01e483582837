import type { EventType, Principal, Service } from "./catalog.ts"

/**
 * Subject, stream, bucket and header names. A request can be followed from gateway to audit leaf by reading these:
 * `vigil.ev.<session>.<type>` carries every event, `vigil.audit.*` what SIEMs read, `vigil.dlq.<service>` rejects.
 */
export const STREAM_EVENTS = "VIGIL_EVENTS"
export const STREAM_AUDIT = "VIGIL_AUDIT"
export const STREAM_DLQ = "VIGIL_DLQ"
export const KV_KEYS = "vigil_keys"
export const KV_POLICY = "vigil_policy"
export const OBJ_BLOBS = "vigil_blobs"

export const EVENTS_ALL = "vigil.ev.>"
export const AUDIT_ALL = "vigil.audit.>"
export const DLQ_ALL = "vigil.dlq.>"

export const eventSubject = (session: string, type: EventType): string => `vigil.ev.${session}.${type}`
/** Filter matching one event type in every session. */
export const eventTypeFilter = (type: EventType): string => `vigil.ev.*.${type}`
export const dlqSubject = (who: Principal | string): string => `vigil.dlq.${who}`
export const healthSubject = (service: Service): string => `vigil.health.${service}`
export const HEALTH_ALL = "vigil.health.*"
/**
 * New key manifest versions, announced by the provisioner with a plain publish (no reply subject). Services follow
 * this instead of `$KV.vigil_keys.>`: a KV put carries the writer's ack inbox as its reply subject, and with
 * `allow_responses` every subscriber could slip one forged "ack" into it. Manifests are root-signed, so the
 * announcement needs no further trust.
 */
export const KEYS_MANIFEST_SUBJECT = "vigil.keys.manifest"
/** The stream a KV bucket is stored in (JetStream's own naming: `KV_<bucket>`). */
export const kvStream = (bucket: string): string => `KV_${bucket}`
/** The subject one key of a KV bucket is stored under (`$KV.<bucket>.<key>`). */
export const kvSubject = (bucket: string, key: string): string => `$KV.${bucket}.${key}`
/** Key of the active signed policy bundle in the KV bucket {@link KV_POLICY}. */
export const POLICY_BUNDLE_KEY = "bundle"
/** A new signed policy bundle, announced (plain publish) after it is written to KV; root-signed, verified on use. */
export const POLICY_BUNDLE_SUBJECT = "vigil.policy.bundle"

/**
 * Read-only questions to the auditor (request/reply; not stored: outside `vigil.audit.>`): the latest checkpoint,
 * inclusion and consistency proofs, a leaf's bytes. An asker sends to these names in its own account; the import
 * from the auditor's query account maps them to {@link proofRequestSubject}, so the answerer knows who asks.
 */
export const PROOF_SUBJECTS = {
  checkpoint: "vigil.proof.checkpoint",
  inclusion: "vigil.proof.inclusion",
  consistency: "vigil.proof.consistency",
  entry: "vigil.proof.entry",
} as const
export const PROOF_ALL = "vigil.proof.>"
/** Roles that may ask the auditor's query user for proofs (each through an import of its own). */
export const PROOF_ASKERS = ["ops", "siem"] as const
/** What the auditor's query user receives for a request `kind` sent by `role`. */
export const proofRequestSubject = (role: string, kind: keyof typeof PROOF_SUBJECTS | "*"): string =>
  `vigil.proof.${role}.${kind}`
/** Where the auditor publishes each signed checkpoint note (stream VIGIL_AUDIT). */
export const AUDIT_CHECKPOINT_SUBJECT = "vigil.audit.checkpoint"

/** Parse `vigil.ev.<session>.<type>`; the type itself contains a dot. */
export const parseEventSubject = (subject: string): { session: string; type: string } | undefined => {
  const parts = subject.split(".")
  if (parts.length !== 5 || parts[0] !== "vigil" || parts[1] !== "ev") return undefined
  return { session: parts[2] as string, type: `${parts[3]}.${parts[4]}` }
}

/** Durable consumer name for a service's input type (consumer names may not contain dots). */
export const durableName = (service: Service, type: EventType): string => `${service}__${type.replace(".", "_")}`

/**
 * The JetStream API as every NATS user but the provisioner sees it. Streams live in the provisioner's account; each
 * other user has an account of its own into which exactly its API calls are imported under this prefix (the
 * server's own `$JS.API.>` in an account without JetStream would answer first). ADR 0017.
 */
export const ROLE_JS_API = "JS.VIGIL.API"
/** The API prefix for a user's JetStream contexts (`jetstream(nc, { apiPrefix })`). */
export const jsApiPrefix = (user: string): string => (user === "admin" ? "$JS.API" : ROLE_JS_API)

/** Per-user inbox prefix: the shared `_INBOX.>` leaks other users' pulled payloads (NATS-NOTES trap 1). */
export const inboxPrefix = (user: string): string => `_INBOX_${user}`

export const HEADER_MSG_ID = "Nats-Msg-Id"
export const HEADER_TRACEPARENT = "traceparent"
export const HEADER_DLQ_REASON = "Vigil-Dlq-Reason"
