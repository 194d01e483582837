import { healthSubject, type Service } from "@vigil/events"
import { Effect, type Scope } from "effect"
import { Nats } from "./connection.ts"

export interface HealthReport {
  readonly service: string
  readonly ok: boolean
  readonly pid: number
  readonly startedAt: string
  readonly uptimeMs: number
  readonly [k: string]: unknown
}

/** Answer `vigil.health.<service>` requests until the scope closes. */
export const serveHealth = (
  service: Service,
  report: () => Record<string, unknown> & { ok: boolean },
): Effect.Effect<void, never, Nats | Scope.Scope> =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const startedAt = new Date()
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nc.subscribe(healthSubject(service), {
          callback: (_err, msg) => {
            const body: HealthReport = {
              service,
              pid: process.pid,
              startedAt: startedAt.toISOString(),
              uptimeMs: Date.now() - startedAt.getTime(),
              ...report(),
            }
            msg.respond(JSON.stringify(body))
          },
        }),
      ),
      (sub) => Effect.sync(() => sub.unsubscribe()),
    )
  })
