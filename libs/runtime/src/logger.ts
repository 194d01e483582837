import { Cause, type Layer, Logger, References } from "effect"
import pino from "pino"

/**
 * Services log JSON lines through pino (one line per record on stdout, which the supervisor files per service).
 * Effect's `Effect.log*` calls are routed to the same pino instance, so there is one log format.
 */
export const makePino = (service: string, level = process.env.VIGIL_LOG_LEVEL ?? "info") =>
  pino({ level, base: { service, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime })

export type Log = ReturnType<typeof makePino>

const LEVELS: Record<string, "trace" | "debug" | "info" | "warn" | "error" | "fatal"> = {
  Trace: "trace",
  Debug: "debug",
  Info: "info",
  Warn: "warn",
  Warning: "warn",
  Error: "error",
  Fatal: "fatal",
}

export const pinoLoggerLayer = (log: Log) =>
  Logger.layer([
    Logger.make(({ message, logLevel, cause, fiber }) => {
      const level = LEVELS[logLevel] ?? "info"
      const parts = Array.isArray(message) ? message : [message]
      const msg = parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ")
      // `Effect.annotateLogs` fields become the line's fields, as pino's own `log.info({ … }, msg)` would write them.
      const fields: Record<string, unknown> = { ...fiber.getRef(References.CurrentLogAnnotations) }
      if (Cause.hasFails(cause) || Cause.hasDies(cause)) fields.cause = Cause.pretty(cause)
      log[level](fields, msg)
    }),
  ]) as Layer.Layer<never>
