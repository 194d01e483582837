import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { connect, type NatsConnection, type NodeConnectionOptions, nkeyAuthenticator } from "@nats-io/transport-node"
import { inboxPrefix } from "@vigil/events"
import { generateUserNkeys, publicKeyOfSeed, ROLES, type Role } from "@vigil/natsconf"
import type { Home } from "@vigil/runtime"

/** Path of a NATS user's nkey seed in a Vigil home (`SU…`, mode 0600). */
export const seedPath = (home: Home, role: Role | string): string => join(home.nats, `${role}.nk`)

/**
 * One NATS user per service and client, with nkeys made on first use and kept: re-running `vigil up` keeps the
 * same users, so a running deployment's credentials stay valid.
 */
export const ensureNatsUsers = (home: Home): Record<Role, { seed: string; publicKey: string }> => {
  const out = {} as Record<Role, { seed: string; publicKey: string }>
  for (const role of ROLES) {
    const p = seedPath(home, role)
    let seed: string
    if (existsSync(p)) seed = readFileSync(p, "utf8").trim()
    else {
      seed = generateUserNkeys([role])[role].seed
      writeFileSync(p, `${seed}\n`, { mode: 0o600, flag: "wx" })
    }
    out[role] = { seed, publicKey: publicKeyOfSeed(seed) }
  }
  return out
}

export const readSeed = (home: Home, role: Role | string): string => readFileSync(seedPath(home, role), "utf8").trim()

/**
 * A connection as `role` of a Vigil home: that user's nkey seed and its own inbox prefix (its subscribe permission
 * allows no other). Throws when the seed cannot be read or the server refuses.
 */
export const connectRole = (
  url: string,
  home: Home,
  role: Role | string,
  extra: Partial<NodeConnectionOptions> = {},
): Promise<NatsConnection> =>
  connect({
    servers: url,
    name: `vigil-${role}-${process.pid}`,
    inboxPrefix: inboxPrefix(role),
    authenticator: nkeyAuthenticator(new TextEncoder().encode(readSeed(home, role))),
    timeout: 5_000,
    ...extra,
  })
