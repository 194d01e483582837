import type { Service } from "@vigil/events"
import {
  dlqSubject,
  durablesFor,
  eventTypeFilter,
  HEALTH_ALL,
  healthSubject,
  inboxPrefix,
  KEYS_MANIFEST_SUBJECT,
  KV_KEYS,
  KV_POLICY,
  POLICY_BUNDLE_SUBJECT,
  PROOF_ALL,
  SERVICES,
  SIEM_DURABLE,
  STREAM_AUDIT,
  STREAM_EVENTS,
  typesProducedBy,
} from "@vigil/events"

/**
 * NATS users and what each may do, derived from the event catalog so that permissions cannot drift from it.
 * Facts and traps behind these rules: ../shared/design/NATS-NOTES.md (nats-server 2.9.10, client 3.4).
 */

/** One NATS user per service, plus the ops CLI, the read-only SIEM reader and the provisioner. */
/**
 * `prover` is the auditor's second connection, the only user with `allow_responses`: it answers proof requests and
 * consumes nothing. nats-server tracks the reply subject of every message delivered to a user with
 * `allow_responses` — for a JetStream consumer that is every `$JS.ACK…` — which cut pull throughput about five
 * times in the benchmark; so no event-consuming user has it, and health is a published heartbeat, not a reply.
 */
export const ROLES = [...SERVICES, "prover", "ops", "siem", "admin"] as const
export type Role = (typeof ROLES)[number]

export const isRole = (s: string): s is Role => (ROLES as ReadonlyArray<string>).includes(s)

export { AUDITOR_DURABLE, type DurableSpec, durablesFor, SIEM_DURABLE } from "@vigil/events"
/** Subjects of the audit stream the auditor publishes (OCSF records and checkpoints) and SIEMs read. */
export const AUDIT_OCSF = "vigil.audit.ocsf.*"
export const AUDIT_CHECKPOINT = "vigil.audit.checkpoint"
/** Stream behind the key-manifest KV bucket. */
export const KV_KEYS_STREAM = `KV_${KV_KEYS}`

/** The only consumer rights a reader gets: info, pull and ack on one pre-created durable (never CREATE: trap 7). */
export const durableReadSubjects = (stream: string, durable: string): ReadonlyArray<string> => [
  `$JS.API.CONSUMER.INFO.${stream}.${durable}`,
  `$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`,
  `$JS.ACK.${stream}.${durable}.>`,
]

export interface Permissions {
  readonly publish: { readonly allow: ReadonlyArray<string> }
  /** Never empty: `subscribe { allow: [] }` means unrestricted on nats-server (trap 2). */
  readonly subscribe: { readonly allow: ReadonlyArray<string> }
  /** Lets the user publish one reply to the reply subject of a message it received (health requests). */
  readonly allowResponses: boolean
  /** Why each rule is there, rendered as comments. */
  readonly notes: ReadonlyArray<string>
}

/** Read access to the key manifest: direct get and msg get on its stream, plus live updates as plain messages. */
const keyManifestRead = {
  publish: [
    `$JS.API.DIRECT.GET.${KV_KEYS_STREAM}`,
    `$JS.API.DIRECT.GET.${KV_KEYS_STREAM}.>`,
    `$JS.API.STREAM.MSG.GET.${KV_KEYS_STREAM}`,
  ],
  subscribe: [KEYS_MANIFEST_SUBJECT],
}

const servicePermissions = (service: Service): Permissions => {
  const produced = typesProducedBy(service).map(eventTypeFilter)
  // The auditor publishes the SIEM feed and checkpoints, reads back its last published checkpoint (direct get) to
  // refuse a rolled-back store, and answers proof requests.
  const audit = service === "auditor" ? [AUDIT_OCSF, AUDIT_CHECKPOINT, ...directGet(STREAM_AUDIT)] : []
  // The policy service reads the active signed bundle (direct get on its KV stream) and follows announcements, and
  // at start reads back the grants, revocations and containments its durables will not deliver again (ADR 0013).
  const bundles = service === "policy" ? [...directGet(`KV_${KV_POLICY}`), ...directGet(STREAM_EVENTS)] : []
  const bundleNews = service === "policy" ? [POLICY_BUNDLE_SUBJECT] : []
  const durables = durablesFor(service).flatMap((d) => durableReadSubjects(d.stream, d.durable))
  return {
    publish: {
      allow: [
        ...produced,
        ...audit,
        ...bundles,
        dlqSubject(service),
        healthSubject(service),
        ...durables,
        ...keyManifestRead.publish,
      ],
    },
    subscribe: { allow: [`${inboxPrefix(service)}.>`, ...bundleNews, ...keyManifestRead.subscribe] },
    allowResponses: false,
    notes: [
      `service ${service}: publishes its catalog event types${audit.length > 0 ? ", the audit records" : ""} and its own DLQ subject`,
      `reads ${durablesFor(service)
        .map((d) => d.durable)
        .join(", ")} (info, pull, ack only; never CONSUMER.CREATE)`,
      `reads the key manifest (${KV_KEYS}) by direct/msg get and follows ${KEYS_MANIFEST_SUBJECT} (not $KV: its put carries the writer's ack inbox); publishes its heartbeat on ${healthSubject(service)}`,
      `replies only through its own inbox prefix ${inboxPrefix(service)}`,
    ],
  }
}

/** Read-only direct get on a stream: by sequence, and last-by-subject (`…DIRECT.GET.<stream>.<subject>`). */
const directGet = (stream: string): ReadonlyArray<string> => [
  `$JS.API.DIRECT.GET.${stream}`,
  `$JS.API.DIRECT.GET.${stream}.>`,
]

/** Publish and subscribe rules for one role. */
export const permissionsFor = (role: Role): Permissions => {
  switch (role) {
    case "prover":
      return {
        // Publishes nothing of its own (its inbox is a harmless non-empty allow list); replies via allow_responses.
        publish: { allow: [`${inboxPrefix("prover")}.>`] },
        subscribe: { allow: [`${inboxPrefix("prover")}.>`, PROOF_ALL] },
        allowResponses: true,
        notes: ["the auditor's query connection: answers vigil.proof.* requests, one reply each; consumes nothing"],
      }
    case "ops":
      return {
        publish: {
          allow: [
            eventTypeFilter("containment.ordered"),
            PROOF_ALL,
            ...directGet(STREAM_AUDIT),
            ...directGet(STREAM_EVENTS),
            `$JS.API.STREAM.INFO.${STREAM_AUDIT}`,
            `$JS.API.STREAM.INFO.${STREAM_EVENTS}`,
          ],
        },
        subscribe: { allow: [`${inboxPrefix("ops")}.>`, HEALTH_ALL] },
        allowResponses: false,
        notes: [
          "ops CLI: orders containment, reads service heartbeats, sends proof requests, reads the event and audit streams by",
          "direct get (read-only, no consumer to create); nothing else",
        ],
      }
    case "siem":
      return {
        publish: { allow: [...durableReadSubjects(STREAM_AUDIT, SIEM_DURABLE), PROOF_ALL] },
        subscribe: { allow: [`${inboxPrefix("siem")}.>`] },
        allowResponses: false,
        notes: [
          `SIEM reader: read-only, through the pre-created durable ${SIEM_DURABLE} on ${STREAM_AUDIT}; asks the`,
          "auditor for proofs",
        ],
      }
    case "admin":
      return {
        publish: { allow: ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>", "vigil.>"] },
        subscribe: { allow: [`${inboxPrefix("admin")}.>`, "$KV.>", "$O.>", "vigil.>"] },
        allowResponses: false,
        notes: [
          "provisioner: streams, durables, KV buckets and object stores ($JS.API.> since the 3.x client puts the",
          "filter into CONSUMER.CREATE subjects); acks and flow control for its own ordered consumers",
        ],
      }
    default:
      return servicePermissions(role)
  }
}

/** The config variable holding a role's permissions, e.g. `POLICY_PERMS`. */
export const permsVariable = (role: Role): string => `${role.toUpperCase()}_PERMS`
/** The config variable holding a role's nkey public key in a per-install users file, e.g. `POLICY_NKEY`. */
export const nkeyVariable = (role: Role): string => `${role.toUpperCase()}_NKEY`
