import { EVENT_TYPES, type EventType, SERVICES, type Service, typesConsumedBy } from "./catalog.ts"
import { AUDIT_ALL, durableName, EVENTS_ALL, eventTypeFilter, STREAM_AUDIT, STREAM_EVENTS } from "./subjects.ts"

/** The auditor reads every event through one durable (filter `vigil.ev.>`): leaf order is stream order. */
export const AUDITOR_DURABLE = "auditor"
/** The SIEM reader's pre-created durable on VIGIL_AUDIT. */
export const SIEM_DURABLE = "siem"

/**
 * A durable pull consumer, pre-created by the provisioner and only bound by its owner (never created by it).
 * nats-server 2.9 allows one filter subject per consumer, so a service gets one durable per input type.
 */
export interface DurableSpec {
  readonly stream: string
  readonly durable: string
  readonly filter: string
  readonly owner: Service | "siem"
  /** The event types it delivers (every type for the auditor's). */
  readonly types: ReadonlyArray<EventType>
  /** Unacked messages the server lets the owner hold; absent: the bus default. */
  readonly maxAckPending?: number
}

/**
 * The auditor commits in batches of up to a few thousand events and acks a batch only after its commit: room for
 * about four batches lets the next ones be delivered and verified while one is committed.
 */
export const AUDITOR_MAX_ACK_PENDING = 8_192

/** The durables a service consumes VIGIL_EVENTS through. */
export const durablesFor = (service: Service): ReadonlyArray<DurableSpec> =>
  service === "auditor"
    ? [
        {
          stream: STREAM_EVENTS,
          durable: AUDITOR_DURABLE,
          filter: EVENTS_ALL,
          owner: service,
          types: EVENT_TYPES,
          maxAckPending: AUDITOR_MAX_ACK_PENDING,
        },
      ]
    : typesConsumedBy(service).map((type) => ({
        stream: STREAM_EVENTS,
        durable: durableName(service, type),
        filter: eventTypeFilter(type),
        owner: service,
        types: [type],
      }))

/** Every durable of a deployment: each service's, and the SIEM reader's over the audit stream. */
export const allDurables = (): ReadonlyArray<DurableSpec> => [
  ...SERVICES.flatMap(durablesFor),
  { stream: STREAM_AUDIT, durable: SIEM_DURABLE, filter: AUDIT_ALL, owner: "siem", types: [] },
]
