import { Cause, type Effect, Exit, Runtime } from "effect"
import type { Log } from "./logger.ts"

/**
 * The process entry of a service, as `NodeRuntime.runMain` is for Effect programs: SIGTERM or SIGINT interrupts the
 * main fiber, so every scope closes (consumers drain, the connection flushes) before the process exits. Exit code 0
 * after a stop by signal or a clean end, 1 after a failure, which is logged once as fatal with its cause.
 */
export const runMain = (log: Log, name: string) =>
  Runtime.makeRunMain(({ fiber, teardown }) => {
    let signal: string | undefined
    const onSignal = (s: NodeJS.Signals) => {
      if (signal !== undefined) return
      signal = s
      log.info({ signal: s }, `${name} stopping`)
      fiber.interruptUnsafe(fiber.id)
    }
    process.once("SIGTERM", onSignal)
    process.once("SIGINT", onSignal)
    fiber.addObserver((exit) => {
      process.off("SIGTERM", onSignal)
      process.off("SIGINT", onSignal)
      const stopped = Exit.isSuccess(exit) || (signal !== undefined && Cause.hasInterruptsOnly(exit.cause))
      if (stopped) log.info(`${name} stopped`)
      else log.fatal({ cause: Cause.pretty(exit.cause) }, `${name} failed`)
      log.flush()
      teardown(stopped ? Exit.void : exit, (code) => {
        process.exitCode = code
        // Give pino's async destination a moment, then leave even if a stray handle would keep the loop alive.
        setTimeout(() => process.exit(), 200).unref()
      })
    })
  })

/** Run `program` as the process's main fiber (see {@link runMain}); its failures are logged there, not again. */
export const runMainWith = <E, A>(log: Log, name: string, program: Effect.Effect<A, E>): void =>
  runMain(log, name)(program, { disableErrorReporting: true })
