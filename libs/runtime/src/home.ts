import { mkdirSync } from "node:fs"
import { join, resolve } from "node:path"

/**
 * Layout of a Vigil data directory (`VIGIL_HOME`). Secrets (signing keys, NATS nkey seeds) are 0600 files in
 * 0700 directories; everything else is readable state.
 */
export interface Home {
  readonly root: string
  /** Keystore: `root.key`, one `<principal>.key` per signer. */
  readonly keys: string
  /** Signed key manifest versions, `<version>.json`, append-only. */
  readonly manifests: string
  /** nats-server config, users with nkeys, and the nkey seeds `<role>.nk`. */
  readonly nats: string
  /** JetStream store of the embedded server. */
  readonly jetstream: string
  readonly logs: string
  readonly run: string
  /** A service's own state directory. */
  readonly data: (service: string) => string
}

export const homeAt = (dir: string): Home => {
  const root = resolve(dir)
  return {
    root,
    keys: join(root, "keys"),
    manifests: join(root, "keys", "manifest"),
    nats: join(root, "nats"),
    jetstream: join(root, "nats", "jetstream"),
    logs: join(root, "logs"),
    run: join(root, "run"),
    data: (service) => join(root, "data", service),
  }
}

export const ensureHome = (home: Home): Home => {
  mkdirSync(home.root, { recursive: true, mode: 0o700 })
  for (const d of [home.keys, home.nats]) mkdirSync(d, { recursive: true, mode: 0o700 })
  for (const d of [home.manifests, home.jetstream, home.logs, home.run]) mkdirSync(d, { recursive: true })
  return home
}
