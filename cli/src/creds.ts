import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
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
