import {
  AUDIT_ALL,
  DLQ_ALL,
  EVENTS_ALL,
  KV_KEYS,
  KV_POLICY,
  OBJ_BLOBS,
  STREAM_AUDIT,
  STREAM_DLQ,
  STREAM_EVENTS,
} from "@vigil/events"

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
