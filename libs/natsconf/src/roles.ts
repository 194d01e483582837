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
  kvStream,
  POLICY_BUNDLE_SUBJECT,
  PROOF_SUBJECTS,
  proofRequestSubject,
  ROLE_JS_API,
  SERVICES,
  SIEM_DURABLE,
  STREAM_AUDIT,
  STREAM_EVENTS,
  typesProducedBy,
} from "@vigil/events"

/**
 * NATS users, their accounts and what each may do, derived from the event catalog so that permissions cannot drift
 * from it. Facts and traps behind these rules: ../shared/design/NATS-NOTES.md (nats-server 2.9.10, client 3.4).
 *
 * Every role but `admin` has an account of its own without JetStream (ADR 0017). A JetStream reply — a publish
 * ack, a direct get, a pulled message — goes to whatever reply subject the request named, sent by the server
 * itself, past every user permission: measured on 2.9.10, a service publishing an event with reply
 * `$JS.API.STREAM.PURGE.VIGIL_AUDIT` emptied the audit stream, and one with reply `$KV.vigil_keys.manifest`
 * overwrote the key manifest. Across an import the server rewrites the reply to a private `_R_.…` subject and
 * maps the answer back into the asker's account, where nothing but the asker's own imports exists.
 */

/** One NATS user per service, plus the auditor's query user, the ops CLI, the SIEM reader and the provisioner. */
/**
 * `prover` is the auditor's second connection: it answers proof requests and consumes nothing. No user has
 * `allow_responses`: it lets a reply go to any subject (NATS-NOTES trap 9), and nats-server tracks the reply of
 * every message delivered to such a user, which cut pull throughput about five times in the benchmark.
 */
export const ROLES = [...SERVICES, "prover", "ops", "siem", "admin"] as const
export type Role = (typeof ROLES)[number]

/** Subjects of the audit stream the auditor publishes (OCSF records and checkpoints) and SIEMs read. */
export const AUDIT_OCSF = "vigil.audit.ocsf.*"
export const AUDIT_CHECKPOINT = "vigil.audit.checkpoint"
/** Stream behind the key-manifest KV bucket. */
export const KV_KEYS_STREAM = kvStream(KV_KEYS)

/** The account that holds the streams, KV buckets and object store; only `admin` lives in it. */
export const STORE_ACCOUNT = "VIGIL"
/** A role's own account (`admin`'s is the store account). */
export const accountOf = (role: Role): string => (role === "admin" ? STORE_ACCOUNT : role.toUpperCase())

/**
 * One thing a role may do, and how it reaches across accounts:
 * - `store`: publish into a stream (acked): a service import from the store account under the same name;
 * - `api`: a JetStream API call `$JS.API.<api>`, imported as `JS.VIGIL.API.<api>`; `stream` when the answer is
 *   many messages (a pull);
 * - `ack`: acknowledge messages of one durable (`$JS.ACK.<stream>.<durable>.>`, imported under the same name);
 * - `follow`: plain messages the provisioner publishes (announcements): a stream import;
 * - `ask`: a request to another role's account, which sees it as `as`;
 * - `announce`: its own plain messages (heartbeats), exported to the roles in `to`;
 * - `answer`: requests it receives (from `ask` grants of other roles) and answers through the import's reply.
 */
export type Grant =
  | { readonly kind: "store"; readonly subject: string }
  | { readonly kind: "api"; readonly api: string; readonly stream?: boolean }
  | { readonly kind: "ack"; readonly stream: string; readonly durable: string }
  | { readonly kind: "follow"; readonly subject: string }
  | { readonly kind: "ask"; readonly subject: string; readonly of: Role; readonly as: string }
  | { readonly kind: "announce"; readonly subject: string; readonly to: ReadonlyArray<Role> }
  | { readonly kind: "answer"; readonly subject: string }

export interface Permissions {
  /** Subjects the user may publish, as named in its own account. */
  readonly publish: { readonly allow: ReadonlyArray<string> }
  /** Never empty: `subscribe { allow: [] }` means unrestricted on nats-server (trap 2). */
  readonly subscribe: { readonly allow: ReadonlyArray<string> }
  /** Why each rule is there, rendered as comments. */
  readonly notes: ReadonlyArray<string>
}

export interface Import {
  readonly kind: "service" | "stream"
  readonly account: string
  readonly subject: string
  /** Local name, when it differs from the exported one. */
  readonly to?: string
}

export interface Export {
  readonly kind: "service" | "stream"
  readonly subject: string
  readonly accounts: ReadonlyArray<string>
  /** `stream`: a request answered by many messages (a pull). */
  readonly responseType?: "stream"
}

export interface AccountSpec {
  readonly name: string
  readonly jetstream: boolean
  readonly roles: ReadonlyArray<Role>
  readonly imports: ReadonlyArray<Import>
  readonly exports: ReadonlyArray<Export>
}

const jsApi = (api: string): string => `$JS.API.${api}`
const roleApi = (api: string): string => `${ROLE_JS_API}.${api}`

/** The only consumer rights a reader gets: info, pull and ack on one pre-created durable (never CREATE: trap 7). */
export const durableRead = (stream: string, durable: string): ReadonlyArray<Grant> => [
  { kind: "api", api: `CONSUMER.INFO.${stream}.${durable}` },
  { kind: "api", api: `CONSUMER.MSG.NEXT.${stream}.${durable}`, stream: true },
  { kind: "ack", stream, durable },
]

/** Read-only direct get on a stream: by sequence, and last-by-subject (`…DIRECT.GET.<stream>.<subject>`). */
const directGet = (stream: string): ReadonlyArray<Grant> => [
  { kind: "api", api: `DIRECT.GET.${stream}` },
  { kind: "api", api: `DIRECT.GET.${stream}.>` },
]

/** Read access to the key manifest: direct get and msg get on its stream, plus live announcements. */
const keyManifestRead: ReadonlyArray<Grant> = [
  ...directGet(KV_KEYS_STREAM),
  { kind: "api", api: `STREAM.MSG.GET.${KV_KEYS_STREAM}` },
  { kind: "follow", subject: KEYS_MANIFEST_SUBJECT },
]

const proofAsk = (role: Role): ReadonlyArray<Grant> =>
  (Object.keys(PROOF_SUBJECTS) as Array<keyof typeof PROOF_SUBJECTS>).map((kind) => ({
    kind: "ask",
    subject: proofRequestSubject(role, kind),
    of: "prover",
    as: PROOF_SUBJECTS[kind],
  }))

interface RoleSpec {
  readonly grants: ReadonlyArray<Grant>
  readonly notes: ReadonlyArray<string>
}

const serviceSpec = (service: Service): RoleSpec => {
  const produced = typesProducedBy(service).map(eventTypeFilter)
  const durables = durablesFor(service)
  return {
    grants: [
      ...produced.map((subject): Grant => ({ kind: "store", subject })),
      { kind: "store", subject: dlqSubject(service) },
      // The auditor publishes the SIEM feed and checkpoints, and reads back its published checkpoints (direct get)
      // to refuse a rolled-back store.
      ...(service === "auditor"
        ? [
            { kind: "store", subject: AUDIT_OCSF } as const,
            { kind: "store", subject: AUDIT_CHECKPOINT } as const,
            ...directGet(STREAM_AUDIT),
          ]
        : []),
      // The policy service reads the active signed bundle (direct get on its KV stream) and follows announcements;
      // at start it reads back grants, revocations and containments by subject (ADR 0013).
      ...(service === "policy"
        ? [
            ...directGet(kvStream(KV_POLICY)),
            { kind: "api", api: `DIRECT.GET.${STREAM_EVENTS}.>` } as const,
            { kind: "follow", subject: POLICY_BUNDLE_SUBJECT } as const,
          ]
        : []),
      // Any publisher compares a duplicate ack's stored message with its own (NATS-NOTES trap 10): by sequence.
      { kind: "api", api: `DIRECT.GET.${STREAM_EVENTS}` },
      ...durables.flatMap((d) => durableRead(d.stream, d.durable)),
      ...keyManifestRead,
      { kind: "announce", subject: healthSubject(service), to: ["ops", "admin"] },
    ],
    notes: [
      `service ${service}: stores its catalog event types${service === "auditor" ? ", the audit records" : ""} and its own DLQ subject`,
      `reads ${durables.map((d) => d.durable).join(", ")} (info, pull, ack only; never CONSUMER.CREATE)`,
      `reads the key manifest (${KV_KEYS}) by direct/msg get and follows ${KEYS_MANIFEST_SUBJECT}; heartbeat on ${healthSubject(service)}`,
    ],
  }
}

const roleSpec = (role: Role): RoleSpec => {
  switch (role) {
    case "prover":
      return {
        // Only the askers' imports reach this account, each under its own vigil.proof.<asker>.* subjects.
        grants: [{ kind: "answer", subject: proofRequestSubject("*", "*") }],
        notes: [
          "the auditor's query connection: answers vigil.proof.<asker>.* requests through the import's private",
          "reply subject (_R_.…), one reply each; consumes and stores nothing",
        ],
      }
    case "ops":
      return {
        grants: [
          ...typesProducedBy("ops").map((t): Grant => ({ kind: "store", subject: eventTypeFilter(t) })),
          ...proofAsk("ops"),
          ...directGet(STREAM_AUDIT),
          ...directGet(STREAM_EVENTS),
          { kind: "api", api: `STREAM.INFO.${STREAM_AUDIT}` },
          { kind: "api", api: `STREAM.INFO.${STREAM_EVENTS}` },
        ],
        notes: [
          "ops CLI: orders containment and raises alerts, reads service heartbeats, asks for proofs, reads the event",
          "and audit streams by direct get (read-only, no consumer to create); nothing else",
        ],
      }
    case "siem":
      return {
        grants: [...durableRead(STREAM_AUDIT, SIEM_DURABLE), ...proofAsk("siem")],
        notes: [
          `SIEM reader: read-only, through the pre-created durable ${SIEM_DURABLE} on ${STREAM_AUDIT}; asks the`,
          "auditor for proofs",
        ],
      }
    case "admin":
      return { grants: [], notes: [] }
    default:
      return serviceSpec(role)
  }
}

export const grantsOf = (role: Role): ReadonlyArray<Grant> => roleSpec(role).grants

/** What a grant lets the user publish, in its own account's names. */
const published = (g: Grant): ReadonlyArray<string> => {
  switch (g.kind) {
    case "store":
      return [g.subject]
    case "api":
      return [roleApi(g.api)]
    case "ack":
      return [`$JS.ACK.${g.stream}.${g.durable}.>`]
    case "ask":
      return [g.as]
    case "announce":
      return [g.subject]
    case "answer":
      // Answers go to the private reply subject the import made up for the asker (`_R_.<token>.<token>`).
      return ["_R_.>"]
    case "follow":
      return []
  }
}

/** Publish and subscribe rules for one role. */
export const permissionsFor = (role: Role): Permissions => {
  if (role === "admin") {
    return {
      publish: { allow: ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>", "vigil.>"] },
      subscribe: { allow: [`${inboxPrefix("admin")}.>`, "$KV.>", "$O.>", "vigil.>"] },
      notes: [
        "provisioner, the only user of the store account: streams, durables, KV buckets and object stores",
        "($JS.API.> since the 3.x client puts the filter into CONSUMER.CREATE subjects); acks and flow control for",
        "its own ordered consumers; reads heartbeats",
      ],
    }
  }
  const spec = roleSpec(role)
  const publish = [...new Set(spec.grants.flatMap(published))]
  const subscribe = [
    `${inboxPrefix(role)}.>`,
    ...spec.grants.flatMap((g) => (g.kind === "follow" || g.kind === "answer" ? [g.subject] : [])),
    ...(role === "ops" ? [HEALTH_ALL] : []),
  ]
  return {
    publish: { allow: publish },
    subscribe: { allow: subscribe },
    notes: [...spec.notes, `replies come to its own inbox prefix ${inboxPrefix(role)} (account ${accountOf(role)})`],
  }
}

/**
 * Every account: the store account (JetStream, the provisioner, an export for each import below, open only to the
 * accounts that import it) and one per other role, importing exactly what its grants name.
 */
export const accounts = (roles: ReadonlyArray<Role> = ROLES): ReadonlyArray<AccountSpec> => {
  const present = new Set(roles)
  const imports = new Map<Role, Array<Import>>()
  const exports = new Map<string, Array<Export>>()
  const exportTo = (owner: string, e: Omit<Export, "accounts">, importer: string) => {
    const list = exports.get(owner) ?? []
    exports.set(owner, list)
    const same = list.find((x) => x.kind === e.kind && x.subject === e.subject)
    if (same === undefined) list.push({ ...e, accounts: [importer] })
    else if (!same.accounts.includes(importer)) (same.accounts as Array<string>).push(importer)
  }
  const add = (role: Role, i: Import) => {
    const list = imports.get(role) ?? []
    imports.set(role, list)
    list.push(i)
  }
  for (const role of ROLES) {
    if (!present.has(role) || role === "admin") continue
    const account = accountOf(role)
    for (const g of grantsOf(role)) {
      switch (g.kind) {
        case "store":
          exportTo(STORE_ACCOUNT, { kind: "service", subject: g.subject }, account)
          add(role, { kind: "service", account: STORE_ACCOUNT, subject: g.subject })
          break
        case "api":
          exportTo(
            STORE_ACCOUNT,
            { kind: "service", subject: jsApi(g.api), ...(g.stream === true ? { responseType: "stream" } : {}) },
            account,
          )
          add(role, { kind: "service", account: STORE_ACCOUNT, subject: jsApi(g.api), to: roleApi(g.api) })
          break
        case "ack": {
          const subject = `$JS.ACK.${g.stream}.${g.durable}.>`
          exportTo(STORE_ACCOUNT, { kind: "service", subject }, account)
          add(role, { kind: "service", account: STORE_ACCOUNT, subject })
          break
        }
        case "follow":
          exportTo(STORE_ACCOUNT, { kind: "stream", subject: g.subject }, account)
          add(role, { kind: "stream", account: STORE_ACCOUNT, subject: g.subject })
          break
        case "ask":
          if (!present.has(g.of)) break
          exportTo(accountOf(g.of), { kind: "service", subject: g.subject }, account)
          add(role, { kind: "service", account: accountOf(g.of), subject: g.subject, to: g.as })
          break
        case "announce":
          for (const to of g.to) {
            if (!present.has(to)) continue
            exportTo(account, { kind: "stream", subject: g.subject }, accountOf(to))
            add(to, { kind: "stream", account, subject: g.subject })
          }
          break
        case "answer":
          break
      }
    }
  }
  return ROLES.filter((r) => present.has(r)).map((role) => ({
    name: accountOf(role),
    jetstream: role === "admin",
    roles: [role],
    imports: imports.get(role) ?? [],
    exports: exports.get(accountOf(role)) ?? [],
  }))
}

/** The config variable holding a role's permissions, e.g. `POLICY_PERMS`. */
export const permsVariable = (role: Role): string => `${role.toUpperCase()}_PERMS`
/** The config variable holding a role's nkey public key in a per-install users file, e.g. `POLICY_NKEY`. */
export const nkeyVariable = (role: Role): string => `${role.toUpperCase()}_NKEY`
