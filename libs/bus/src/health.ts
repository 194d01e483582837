import { healthSubject, type Service } from "@vigil/events"
import { Effect, Schedule, type Scope } from "effect"
import { Nats } from "./connection.ts"

export interface HealthReport {
  readonly service: string
  readonly ok: boolean
  readonly pid: number
  readonly startedAt: string
  readonly uptimeMs: number
  /** When this heartbeat was sent; a reader treats a report older than a few intervals as "not answering". */
  readonly at: string
  readonly [k: string]: unknown
}

export const HEARTBEAT_MS = 1_000

/**
 * Publish a heartbeat on `vigil.health.<service>` now and every {@link HEARTBEAT_MS} until the scope closes.
 * A heartbeat rather than request/reply: answering requests needs `allow_responses`, which makes nats-server track
 * the reply subject of every message the user pulls (see libs/natsconf roles) and costs the consumer most of its
 * throughput. Plain publishes, not JetStream: health is not part of the record.
 */
export const publishHealth = (
  service: Service,
  report: () => Record<string, unknown> & { ok: boolean },
): Effect.Effect<void, never, Nats | Scope.Scope> =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const startedAt = new Date()
    const beat = Effect.sync(() => {
      const now = new Date()
      const body: HealthReport = {
        service,
        pid: process.pid,
        startedAt: startedAt.toISOString(),
        uptimeMs: now.getTime() - startedAt.getTime(),
        at: now.toISOString(),
        ...report(),
      }
      nc.publish(healthSubject(service), JSON.stringify(body))
    })
    yield* beat.pipe(Effect.repeat(Schedule.spaced(`${HEARTBEAT_MS} millis`)), Effect.forkScoped)
  })
