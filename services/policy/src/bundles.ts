import { readFileSync } from "node:fs"
import { join } from "node:path"
import { jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { KV_POLICY, POLICY_BUNDLE_KEY, POLICY_BUNDLE_SUBJECT } from "@vigil/events"
import { type PolicyEngine, verifyBundle } from "@vigil/policy"
import type { Home } from "@vigil/runtime"

/** Why a bundle was not taken; the previous bundle (if any) keeps deciding. */
export interface BundleRefusal {
  readonly reason: string
  readonly detail: string
}

/**
 * The policy bundle in force: only a root-signed bundle whose policies validate against its schema is ever
 * swapped in. `current` is undefined until the first good bundle arrives, and every decision is then a deny.
 */
export class BundleHolder {
  current: PolicyEngine | undefined
  readonly #rootPublicKey: Uint8Array

  constructor(home: Home) {
    this.#rootPublicKey = new Uint8Array(
      Buffer.from(readFileSync(join(home.keys, "root.pub"), "utf8").trim(), "base64url"),
    )
  }

  /** Verify and take a signed bundle document; returns the refusal when it is not taken. */
  offer(
    doc: unknown,
  ):
    | { readonly ok: true; readonly digest: string; readonly changed: boolean }
    | ({ readonly ok: false } & BundleRefusal) {
    const verdict = verifyBundle(this.#rootPublicKey, doc)
    if (!verdict.ok) return { ok: false, reason: verdict.reason, detail: verdict.detail }
    const changed = this.current?.digest !== verdict.digest
    if (changed) this.current = verdict.engine
    return { ok: true, digest: verdict.digest, changed }
  }
}

/** The active bundle as stored in KV (direct get of the last value of its key), or undefined when there is none. */
export const readStoredBundle = async (nc: NatsConnection): Promise<unknown> => {
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  const m = await jsm.direct
    .getMessage(`KV_${KV_POLICY}`, { last_by_subj: `$KV.${KV_POLICY}.${POLICY_BUNDLE_KEY}` })
    .catch(() => null)
  if (m === null || m.data.length === 0) return undefined
  try {
    return m.json()
  } catch {
    return { malformed: true }
  }
}

export { POLICY_BUNDLE_SUBJECT }
