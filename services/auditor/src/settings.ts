import { readFileSync } from "node:fs"
import { join } from "node:path"
import { ServiceIdentity, ServiceSettings, ServiceStartError, setting } from "@vigil/runtime"
import { Config, Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { type AlertRule, DEFAULT_ALERT_RULES, loadAlertRules } from "./alerts.ts"

/** The query connection's credentials (NATS user `prover`, the only one with allow_responses). */
export interface ProverCredentials {
  readonly url: string
  readonly seed: Redacted.Redacted<string>
}

/** The auditor's settings (environment, through `Config`; refused at start with the variable named). */
export interface AuditorSettingsShape {
  /** The tile log's directory: `<home>/data/auditor/log`. */
  readonly dir: string
  /** A checkpoint is signed once this many leaves are new (VIGIL_CHECKPOINT_LEAVES). */
  readonly checkpointEveryLeaves: number
  /** ...and at least this often while any are (VIGIL_CHECKPOINT_MS). */
  readonly checkpointEveryMs: number
  /** Proof HTTP on 127.0.0.1 (VIGIL_AUDIT_HTTP_PORT; 0: any free port); none: no HTTP endpoint. */
  readonly httpPort: Option.Option<number>
  /** Threshold alert rules (VIGIL_ALERT_RULES, a JSON file; unset: the defaults). */
  readonly rules: ReadonlyArray<AlertRule>
  /** Most events appended (and fsync'd) in one commit (VIGIL_AUDIT_MAX_BATCH). */
  readonly maxBatch: number
  /** Longest a partial batch waits for more events (VIGIL_AUDIT_MAX_WAIT_MS). */
  readonly maxWaitMs: number
  /** Messages requested per pull, and verified ahead of the handler (VIGIL_AUDIT_PULL_BATCH). */
  readonly pullBatch: number
  /** The query connection; none (no `prover.nk` in the home): no NATS proof API, HTTP still serves proofs. */
  readonly prover: Option.Option<ProverCredentials>
}

/** A whole number in [minimum, maximum], `fallback` when unset; refused naming the variable otherwise. */
const whole = (name: string, what: string, minimum: number, maximum: number, fallback: number) =>
  setting(
    name,
    what,
    Config.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })), name).pipe(Config.withDefault(fallback)),
  )

const MAX_COUNT = 10_000_000
const DAY_MS = 86_400_000

/** Rules from the file VIGIL_ALERT_RULES names, schema-checked: a bad file stops the start. */
const alertRules: Effect.Effect<ReadonlyArray<AlertRule>, ServiceStartError> = Effect.gen(function* () {
  const path = yield* setting("VIGIL_ALERT_RULES", "a path", Config.option(Config.String("VIGIL_ALERT_RULES")))
  if (Option.isNone(path)) return DEFAULT_ALERT_RULES
  return yield* Effect.try({
    try: () => loadAlertRules(path.value),
    catch: (cause) =>
      new ServiceStartError({
        message: `VIGIL_ALERT_RULES must be a JSON file of alert rules, got ${JSON.stringify(path.value)}: ${
          cause instanceof Error ? cause.message : String(cause)
        }`,
        cause,
      }),
  })
})

/**
 * The prover's nkey seed from `<home>/nats/prover.nk`. Without it the NATS proof API is off, which is said (a
 * warning), as is any other reason the file could not be read; the auditor itself runs on.
 */
const proverCredentials = (natsDir: string, url: string): Effect.Effect<Option.Option<ProverCredentials>> => {
  const path = join(natsDir, "prover.nk")
  return Effect.try({
    try: () => readFileSync(path, "utf8").trim(),
    catch: (cause) => cause,
  }).pipe(
    Effect.map((seed) => Option.some({ url, seed: Redacted.make(seed) })),
    Effect.catch((cause) =>
      (cause as { code?: unknown }).code === "ENOENT"
        ? Effect.logWarning("no prover credentials: the NATS proof API is off (HTTP still serves proofs)").pipe(
            Effect.annotateLogs({ path }),
            Effect.as(Option.none()),
          )
        : Effect.logWarning(
            "cannot read the prover credentials: the NATS proof API is off (HTTP still serves proofs)",
          ).pipe(
            Effect.annotateLogs({ path, err: cause instanceof Error ? cause.message : String(cause) }),
            Effect.as(Option.none()),
          ),
    ),
  )
}

export class AuditorSettings extends Context.Service<AuditorSettings, AuditorSettingsShape>()(
  "@vigil/service-auditor/AuditorSettings",
) {
  /** The settings read from the environment (names and defaults as `vigil up` and the tests set them). */
  static readonly config = Effect.all({
    checkpointEveryLeaves: whole(
      "VIGIL_CHECKPOINT_LEAVES",
      "a whole number of leaves (at least 1)",
      1,
      MAX_COUNT,
      1000,
    ),
    checkpointEveryMs: whole("VIGIL_CHECKPOINT_MS", "a whole number of milliseconds (at least 1)", 1, DAY_MS, 1000),
    httpPort: setting(
      "VIGIL_AUDIT_HTTP_PORT",
      "a TCP port (0 to 65535)",
      Config.option(
        Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65_535 })), "VIGIL_AUDIT_HTTP_PORT"),
      ),
    ),
    rules: alertRules,
    // Each commit costs a handful of fsyncs on the event loop, so larger batches are cheaper per event (the audit
    // benchmark in test/bench/audit.ts compares these with the former 1,000 / 20 ms / 256). A quiet bus waits at
    // most 100 ms for its leaf.
    maxBatch: whole("VIGIL_AUDIT_MAX_BATCH", "a whole number of events (at least 1)", 1, MAX_COUNT, 2_000),
    maxWaitMs: whole("VIGIL_AUDIT_MAX_WAIT_MS", "a whole number of milliseconds", 0, DAY_MS, 100),
    pullBatch: whole("VIGIL_AUDIT_PULL_BATCH", "a whole number of messages (at least 1)", 1, MAX_COUNT, 1_000),
  })

  /** From the environment, with the log's directory and the prover's credentials from the home. */
  static readonly layer = Layer.effect(
    AuditorSettings,
    Effect.gen(function* () {
      const settings = yield* AuditorSettings.config
      const { home } = yield* ServiceIdentity
      const { natsUrl } = yield* ServiceSettings
      const prover = yield* proverCredentials(home.nats, natsUrl)
      return AuditorSettings.of({ ...settings, dir: join(home.data("auditor"), "log"), prover })
    }),
  )
}
