import { Config, Context, Effect, Layer, Option, type Redacted, Schema } from "effect"

/** How a process reaches the bus and what it accepts from it. */
export interface BusSettings {
  readonly url: string
  /** NATS user (role) this process connects as; also names its inbox prefix and DLQ subject. */
  readonly user: string
  /** NKey seed (the `SU…` string) for that user; absent for an unsecured development server. */
  readonly nkeySeed: Option.Option<Redacted.Redacted<string>>
  /**
   * Largest signed event (canonical bytes) a publisher sends and a consumer accepts; larger ones are refused at
   * publish and dead-lettered as `oversized`. At most {@link MAX_EVENT_BYTES}.
   */
  readonly maxEventBytes: number
  /** JetStream de-duplication window; also the freshness bound consumers enforce (`replayed`). */
  readonly duplicateWindowMs: number
  readonly publishTimeoutMs: number
  readonly publishAttempts: number
}

/**
 * The largest event the audit log can hold as one leaf: C2SP tlog-tiles frames each entry of a bundle with a 16-bit
 * length. Content lives in blobs, so events stay far below it.
 */
export const MAX_EVENT_BYTES = 0xffff

export const DEFAULTS = {
  maxEventBytes: MAX_EVENT_BYTES,
  duplicateWindowMs: 120_000,
  publishTimeoutMs: 5_000,
  publishAttempts: 6,
} as const

export class BusConfig extends Context.Service<BusConfig, BusSettings>()("@vigil/bus/BusConfig") {
  static readonly layer = (settings: Partial<BusSettings> & Pick<BusSettings, "url" | "user">) =>
    Layer.succeed(BusConfig, BusConfig.of({ ...DEFAULTS, nkeySeed: Option.none(), ...settings }))

  /** From the environment: VIGIL_NATS_URL, VIGIL_NATS_USER, VIGIL_NATS_SEED (secret), VIGIL_MAX_EVENT_BYTES. */
  static readonly layerConfig = Layer.effect(
    BusConfig,
    Effect.gen(function* () {
      const url = yield* Config.String("VIGIL_NATS_URL")
      const user = yield* Config.String("VIGIL_NATS_USER")
      const nkeySeed = yield* Config.option(Config.Redacted("VIGIL_NATS_SEED"))
      const maxEventBytes = yield* Config.schema(
        Schema.Int.check(Schema.isBetween({ minimum: 1_024, maximum: MAX_EVENT_BYTES })),
        "VIGIL_MAX_EVENT_BYTES",
      ).pipe(Config.withDefault(DEFAULTS.maxEventBytes))
      return BusConfig.of({ ...DEFAULTS, url, user, nkeySeed, maxEventBytes })
    }),
  )
}
