import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { canonicalBytes } from "@vigil/events"
import { Schema } from "effect"

/**
 * A policy bundle's contents: the Cedar schema, the policy files (the default set plus, when a role is selected,
 * that role's files), the data-class rules and the role name. The same contents give the same digest whether they
 * were read from policies/ or from a signed bundle document.
 */

export const BUNDLE_VERSION = 1

/** File names inside a policies/ directory. */
export const SCHEMA_FILE = "schema.cedarschema"
export const DATA_CLASSES_FILE = "data-classes.json"
export const DEFAULT_DIR = "default"
export const ROLES_DIR = "roles"

const ROLE_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/u
/** Policy file keys: "default/<name>.cedar" or "roles/<role>/<name>.cedar". */
const POLICY_KEY_PATTERN = /^(?:default|roles\/[a-z0-9][a-z0-9-]{0,63})\/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.cedar$/u

const MAX_TEXT = 1 << 20

export const Role = Schema.String.pipe(Schema.check(Schema.isPattern(ROLE_PATTERN)))
const PolicyKey = Schema.String.pipe(Schema.check(Schema.isPattern(POLICY_KEY_PATTERN)))
const BoundedText = Schema.String.pipe(Schema.check(Schema.isMaxLength(MAX_TEXT)))

export const bundleContentFields = {
  v: Schema.Literal(BUNDLE_VERSION),
  /** The role bundle layered on the default policies, or null for the default policies alone. */
  role: Schema.NullOr(Role),
  /** Cedar schema, in the Cedar (human-readable) schema format. */
  schema: BoundedText,
  /** Policy file key → Cedar policy text. */
  policies: Schema.Record(PolicyKey, BoundedText).pipe(Schema.check(Schema.isMaxProperties(1024))),
  /** The data-class configuration (checked when the bundle is compiled, see classify.ts). */
  dataClasses: Schema.Json,
}

export const BundleContents = Schema.Struct(bundleContentFields).pipe(
  Schema.check(
    Schema.makeFilter((b) => {
      for (const key of Object.keys(b.policies)) {
        if (key.startsWith(`${ROLES_DIR}/`) && key.split("/")[1] !== b.role) {
          return { path: ["policies", key], issue: `policy file ${key} is not part of role ${b.role ?? "(none)"}` }
        }
      }
      return undefined
    }),
  ),
)
export type BundleContents = typeof BundleContents.Type

/** SHA-256 (hex) of the bundle contents' RFC 8785 canonical bytes: the digest every decision names. */
export const bundleDigest = (contents: BundleContents): string =>
  createHash("sha256")
    .update(
      canonicalBytes({
        v: contents.v,
        role: contents.role,
        schema: contents.schema,
        policies: contents.policies,
        dataClasses: contents.dataClasses,
      }),
    )
    .digest("hex")

export class BundleLoadError extends Error {
  override readonly name = "BundleLoadError"
}

const cedarFiles = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".cedar") && statSync(join(dir, f)).isFile())
    .sort()

/** Roles that have a bundle under `<policiesDir>/roles/`. */
export const listRoles = (policiesDir: string): string[] => {
  const dir = join(policiesDir, ROLES_DIR)
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((d) => ROLE_PATTERN.test(d) && statSync(join(dir, d)).isDirectory())
    .sort()
}

/**
 * Read a bundle from a policies/ directory: schema.cedarschema, default/*.cedar, roles/<role>/*.cedar when `role`
 * is given (the role must exist), and data-classes.json. Throws {@link BundleLoadError} when a file is missing or
 * data-classes.json is not JSON; the contents are checked when compiled (see engine.ts).
 */
export const loadBundleDir = (policiesDir: string, role: string | null = null): BundleContents => {
  const read = (rel: string): string => {
    const p = join(policiesDir, rel)
    if (!existsSync(p)) throw new BundleLoadError(`${p}: missing`)
    return readFileSync(p, "utf8")
  }
  const policies: Record<string, string> = {}
  const defaultDir = join(policiesDir, DEFAULT_DIR)
  if (!existsSync(defaultDir)) throw new BundleLoadError(`${defaultDir}: missing`)
  for (const f of cedarFiles(defaultDir)) policies[`${DEFAULT_DIR}/${f}`] = read(join(DEFAULT_DIR, f))
  if (role !== null) {
    if (!ROLE_PATTERN.test(role)) throw new BundleLoadError(`"${role}" is not a role name (${ROLE_PATTERN.source})`)
    const roleDir = join(policiesDir, ROLES_DIR, role)
    if (!existsSync(roleDir)) {
      throw new BundleLoadError(
        `no bundle for role "${role}" under ${join(policiesDir, ROLES_DIR)} (roles: ${listRoles(policiesDir).join(", ") || "none"})`,
      )
    }
    for (const f of cedarFiles(roleDir)) policies[`${ROLES_DIR}/${role}/${f}`] = read(join(ROLES_DIR, role, f))
  }
  let dataClasses: Schema.Json
  try {
    dataClasses = JSON.parse(read(DATA_CLASSES_FILE)) as Schema.Json
  } catch (e) {
    if (e instanceof BundleLoadError) throw e
    throw new BundleLoadError(`${join(policiesDir, DATA_CLASSES_FILE)}: ${(e as Error).message}`)
  }
  return { v: BUNDLE_VERSION, role, schema: read(SCHEMA_FILE), policies, dataClasses }
}
