import { inlineChecker, type SignatureChecker, SignaturePool, type SignaturePoolOptions } from "@vigil/crypto"
import { Context, Effect, Layer } from "effect"

/**
 * Where consumers check event signatures. `layer` runs a {@link SignaturePool} (libsodium on worker threads) for
 * the life of the scope, so verification uses every core; `inline` checks on the event loop (one-off tools, tests
 * that count threads).
 */
export class Verifier extends Context.Service<Verifier, { readonly signatures: SignatureChecker }>()(
  "@vigil/bus/Verifier",
) {
  static readonly layer = (options?: SignaturePoolOptions) =>
    Layer.effect(
      Verifier,
      Effect.acquireRelease(
        Effect.sync(() => new SignaturePool(options)),
        (pool) => Effect.promise(() => pool.close()),
      ).pipe(Effect.map((pool) => Verifier.of({ signatures: pool }))),
    )

  static readonly inline = Layer.succeed(Verifier, Verifier.of({ signatures: inlineChecker }))
}
