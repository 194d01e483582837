import { type JetStreamClient, jetstream } from "@nats-io/jetstream"
import { connect, type NatsConnection, nkeyAuthenticator } from "@nats-io/transport-node"
import { inboxPrefix, jsApiPrefix } from "@vigil/events"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { BusConfig } from "./config.ts"
import { BusConnectError } from "./errors.ts"

/** One NATS connection per process, opened with its own user and inbox prefix, drained on shutdown. */
export class Nats extends Context.Service<
  Nats,
  { readonly nc: NatsConnection; readonly js: JetStreamClient; readonly user: string }
>()("@vigil/bus/Nats") {
  static readonly layer = Layer.effect(
    Nats,
    Effect.gen(function* () {
      const cfg = yield* BusConfig
      const nc = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () =>
            connect({
              servers: cfg.url,
              name: `vigil-${cfg.user}-${process.pid}`,
              // Per-user prefix: with the shared `_INBOX.>` a user could read others' pulled events (NATS-NOTES).
              inboxPrefix: inboxPrefix(cfg.user),
              maxReconnectAttempts: -1,
              reconnectTimeWait: 250,
              ...Option.match(cfg.nkeySeed, {
                onNone: () => ({}),
                onSome: (seed) => ({
                  authenticator: nkeyAuthenticator(new TextEncoder().encode(Redacted.value(seed))),
                }),
              }),
            }),
          catch: (cause) => new BusConnectError({ url: cfg.url, cause }),
        }),
        // Drain flushes pending acks and publishes before closing, so a clean shutdown loses nothing.
        (nc) => Effect.promise(() => nc.drain().catch(() => nc.close())),
      )
      // Without credentials there are no accounts (a server without authorization, for tests of non-security
      // behaviour and benchmarks): the API is the server's own.
      const js = jetstream(nc, Option.isSome(cfg.nkeySeed) ? jetStreamOptions(cfg.user) : { checkAPI: false })
      return Nats.of({ nc, js, user: cfg.user })
    }),
  )
}

/**
 * JetStream context options for a NATS user: its API prefix (the store account's API as imported into the user's
 * own account, ADR 0017), and `checkAPI: false` since no user but the provisioner may call `$JS.API.INFO` (none
 * needs it to publish with acks).
 */
export const jetStreamOptions = (user: string) => ({ checkAPI: false, apiPrefix: jsApiPrefix(user) }) as const
