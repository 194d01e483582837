import { createUser, fromSeed } from "@nats-io/nkeys"
import { inboxPrefix } from "@vigil/events"
import type { Role } from "./roles.ts"
import { ROLES } from "./roles.ts"

/** A NATS user's credentials: the seed (secret, `SU…`) stays with the user; the public key (`U…`) goes in the config. */
export interface UserNkey {
  readonly seed: string
  readonly publicKey: string
  /** The inbox prefix this user must connect with (its subscribe permissions allow nothing else). */
  readonly inboxPrefix: string
}

const decoder = new TextDecoder()

/** Fresh user nkeys for each role (all roles by default). */
export function generateUserNkeys(): Record<Role, UserNkey>
export function generateUserNkeys<R extends Role>(roles: ReadonlyArray<R>): Record<R, UserNkey>
export function generateUserNkeys(roles: ReadonlyArray<Role> = ROLES): Partial<Record<Role, UserNkey>> {
  const out: Partial<Record<Role, UserNkey>> = {}
  for (const role of roles) {
    const kp = createUser()
    out[role] = { seed: decoder.decode(kp.getSeed()), publicKey: kp.getPublicKey(), inboxPrefix: inboxPrefix(role) }
  }
  return out
}

/** The public key of a user seed (`SU…`). */
export const publicKeyOfSeed = (seed: string): string => fromSeed(new TextEncoder().encode(seed)).getPublicKey()

/** Public keys only, as `renderServerConf({ users })` and `renderUsersConf` take them. */
export const publicKeys = <R extends Role>(creds: Record<R, UserNkey>): Record<R, string> => {
  const out = {} as Record<R, string>
  for (const role of Object.keys(creds) as Array<R>) out[role] = creds[role].publicKey
  return out
}
