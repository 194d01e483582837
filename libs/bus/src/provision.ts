import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import { Objm } from "@nats-io/obj"
import type { NatsConnection } from "@nats-io/transport-node"
import { allDurables, kvStream } from "@vigil/events"
import { Effect } from "effect"
import { DEFAULTS } from "./config.ts"
import { ProvisionError } from "./errors.ts"
import { KV_BUCKETS, OBJECT_STORES, STREAMS } from "./topology.ts"

export interface ProvisionOptions {
  /** 1 on a desktop, 3 in a cluster. */
  readonly replicas?: number
  readonly duplicateWindowMs?: number
  /** Largest message the streams store; must not exceed the server's max_payload. */
  readonly maxMsgBytes?: number
  /** Redelivery bound per message; the bus dead-letters on the last attempt. */
  readonly maxDeliver?: number
  readonly ackWaitMs?: number
}

export interface ProvisionReport {
  readonly created: ReadonlyArray<string>
  readonly updated: ReadonlyArray<string>
  readonly unchanged: ReadonlyArray<string>
}

export const CONSUMER_DEFAULTS = { maxDeliver: 10, ackWaitMs: 30_000, maxAckPending: 2_048 } as const

const ms = (n: number) => n * 1_000_000

/**
 * Create or update the streams, durables, KV buckets and object store of the deployment. Safe to run at every
 * start: what exists with the right settings is left alone; drift in the settings we own is corrected.
 * Needs the `admin` user (`$JS.API.>`); services never provision.
 */
export const provision = (
  nc: NatsConnection,
  opts: ProvisionOptions = {},
): Effect.Effect<ProvisionReport, ProvisionError> =>
  Effect.tryPromise({
    try: async () => {
      const jsm = await jetstreamManager(nc)
      const report = { created: [] as string[], updated: [] as string[], unchanged: [] as string[] }
      const replicas = opts.replicas ?? 1
      for (const s of STREAMS) {
        const want: Partial<StreamConfig> & { name: string } = {
          name: s.name,
          description: s.description,
          subjects: [...s.subjects],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          discard: DiscardPolicy.Old,
          num_replicas: replicas,
          duplicate_window: ms(opts.duplicateWindowMs ?? DEFAULTS.duplicateWindowMs),
          max_msg_size: opts.maxMsgBytes ?? 1024 * 1024,
          allow_direct: true,
        }
        await ensureStream(jsm, want, report)
      }
      for (const d of allDurables()) {
        const name = `${d.stream}/${d.durable}`
        const want = {
          durable_name: d.durable,
          filter_subject: d.filter,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: ms(opts.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs),
          max_deliver: opts.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver,
          max_ack_pending: d.maxAckPending ?? CONSUMER_DEFAULTS.maxAckPending,
        }
        const info = await jsm.consumers.info(d.stream, d.durable).catch(() => undefined)
        if (info === undefined) {
          await jsm.consumers.add(d.stream, want)
          report.created.push(name)
        } else if (
          info.config.filter_subject !== want.filter_subject ||
          info.config.max_deliver !== want.max_deliver ||
          info.config.ack_wait !== want.ack_wait ||
          info.config.max_ack_pending !== want.max_ack_pending
        ) {
          await jsm.consumers.update(d.stream, d.durable, want)
          report.updated.push(name)
        } else report.unchanged.push(name)
      }
      const kvm = new Kvm(nc)
      for (const b of KV_BUCKETS) {
        const existed = await jsm.streams.info(kvStream(b.name)).then(
          () => true,
          () => false,
        )
        await kvm.create(b.name, {
          history: b.history,
          description: b.description,
          replicas,
          storage: StorageType.File,
        })
        ;(existed ? report.unchanged : report.created).push(`kv/${b.name}`)
      }
      const objm = new Objm(nc)
      for (const o of OBJECT_STORES) {
        const existed = await jsm.streams.info(`OBJ_${o.name}`).then(
          () => true,
          () => false,
        )
        await objm.create(o.name, { description: o.description, replicas, storage: StorageType.File })
        ;(existed ? report.unchanged : report.created).push(`obj/${o.name}`)
      }
      return report
    },
    catch: (cause) => new ProvisionError({ what: "jetstream topology", cause }),
  })

const ensureStream = async (
  jsm: JetStreamManager,
  want: Partial<StreamConfig> & { name: string },
  report: { created: string[]; updated: string[]; unchanged: string[] },
) => {
  const info = await jsm.streams.info(want.name).catch(() => undefined)
  if (info === undefined) {
    await jsm.streams.add(want)
    report.created.push(want.name)
    return
  }
  const c = info.config
  const drift =
    JSON.stringify(c.subjects) !== JSON.stringify(want.subjects) ||
    c.duplicate_window !== want.duplicate_window ||
    c.max_msg_size !== want.max_msg_size ||
    c.allow_direct !== want.allow_direct
  if (drift) {
    await jsm.streams.update(want.name, { ...c, ...want })
    report.updated.push(want.name)
  } else report.unchanged.push(want.name)
}
