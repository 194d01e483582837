import {
  AUDIT_ALL,
  DLQ_ALL,
  durableName,
  EVENTS_ALL,
  type EventType,
  eventTypeFilter,
  KV_KEYS,
  KV_POLICY,
  OBJ_BLOBS,
  SERVICES,
  type Service,
  STREAM_AUDIT,
  STREAM_DLQ,
  STREAM_EVENTS,
  typesConsumedBy,
} from "@vigil/events"

/** A durable pull consumer on VIGIL_EVENTS owned by one service. */
export interface DurableSpec {
  readonly stream: string
  readonly durable: string
  readonly filter: string
  readonly owner: Service | "siem"
  /** The input type, when the durable carries one type (nats-server 2.9: one filter subject per consumer). */
  readonly type?: EventType
}

/**
 * Every durable of the deployment, derived from the catalog: one per (service, consumed type), one `auditor` over
 * all events (leaf order is stream order) and the SIEM's read-only `siem` over the audit stream.
 */
export const durables = (): ReadonlyArray<DurableSpec> => [
  ...SERVICES.filter((s) => s !== "auditor").flatMap((service) =>
    typesConsumedBy(service).map((type) => ({
      stream: STREAM_EVENTS,
      durable: durableName(service, type),
      filter: eventTypeFilter(type),
      owner: service,
      type,
    })),
  ),
  { stream: STREAM_EVENTS, durable: "auditor", filter: EVENTS_ALL, owner: "auditor" },
  { stream: STREAM_AUDIT, durable: "siem", filter: AUDIT_ALL, owner: "siem" },
]

export const durablesOf = (service: Service): ReadonlyArray<DurableSpec> =>
  durables().filter((d) => d.owner === service)

export interface StreamSpec {
  readonly name: string
  readonly subjects: ReadonlyArray<string>
  readonly description: string
}

export const STREAMS: ReadonlyArray<StreamSpec> = [
  { name: STREAM_EVENTS, subjects: [EVENTS_ALL], description: "Every signed Vigil event (the record)." },
  { name: STREAM_AUDIT, subjects: [AUDIT_ALL], description: "OCSF records and signed checkpoints for SIEMs." },
  { name: STREAM_DLQ, subjects: [DLQ_ALL], description: "Refused input, with a machine-readable reason." },
]

export const KV_BUCKETS = [
  { name: KV_KEYS, history: 64, description: "Signed key manifest versions (public)." },
  { name: KV_POLICY, history: 16, description: "Signed policy bundles." },
] as const

export const OBJECT_STORES = [
  { name: OBJ_BLOBS, description: "Content-addressed blobs (prompts, files, output)." },
] as const
