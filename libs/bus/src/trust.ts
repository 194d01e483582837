import type { KeyLookup, KeyResolver, SigningKey } from "@vigil/events"
import { Context, Layer } from "effect"

/**
 * The key manifest as this process currently trusts it. Verification reads `resolver` on every event, so a
 * rotated manifest (hot reload) takes effect for the next message without restarting consumers.
 */
export interface TrustShape {
  readonly resolver: KeyResolver
  /** Swap in a newer verified manifest chain. */
  readonly replace: (next: TrustedChain) => void
  readonly latestVersion: () => number
}

/** A verified manifest history (libs/keys `ManifestChain`). */
export type TrustedChain = KeyResolver & { readonly latest: { readonly version: number } }

export class Trust extends Context.Service<Trust, TrustShape>()("@vigil/bus/Trust") {
  static readonly make = (initial: TrustedChain): TrustShape => {
    let current = initial
    return {
      resolver: { resolve: (kid: string, at: number): KeyLookup => current.resolve(kid, at) },
      replace: (next) => {
        // Never go back to an older manifest version (a rolled-back KV must not re-enable revoked keys).
        if (next.latest.version >= current.latest.version) current = next
      },
      latestVersion: () => current.latest.version,
    }
  }

  static readonly layerStatic = (resolver: TrustedChain) => Layer.succeed(Trust, Trust.of(Trust.make(resolver)))
}

/** This process's own signing key (loaded from the keystore by the service's layer). */
export class Signer extends Context.Service<Signer, { readonly key: SigningKey }>()("@vigil/bus/Signer") {
  static readonly layer = (key: SigningKey) => Layer.succeed(Signer, Signer.of({ key }))
}
