import { Schema } from "effect"
import { CATALOG, EVENT_TYPES, type EventType } from "./catalog.ts"
import { ENVELOPE_VERSION, Envelope } from "./envelope.ts"

/**
 * JSON Schemas (draft 2020-12) of Vigil events for SIEM consumers, generated from the catalog and checked in under
 * schemas/ (`npm run schemas:gen`; CI runs `npm run schemas:check` and a test, so they cannot drift).
 *
 * One schema per event type: the envelope with `type` fixed to that type, `data` replaced by the type's data
 * schema, and the blob roles the type must reference required. Plus `envelope.schema.json` (any event, `data`
 * unchecked) and `index.json` (types with producers, consumers, blob roles and doc).
 *
 * The schemas are for preliminary validation and documentation; the Effect decoder in verify.ts stays the authority
 * (it also checks what JSON Schema cannot: calendar-valid timestamps, UTF-16 lengths, signatures, key grants).
 */

export const SCHEMA_BASE_URI = "https://vigil.local/schemas/"
const DIALECT = "https://json-schema.org/draft/2020-12/schema"

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [k: string]: Json }
type JsonObject = { readonly [k: string]: Json }

export const schemaFileName = (type: EventType): string => `${type}.schema.json`
export const ENVELOPE_FILE = "envelope.schema.json"
export const INDEX_FILE = "index.json"

/** Descriptions of the envelope fields (BRIEF.md, "Event model"). */
const FIELD_DOCS: Readonly<Record<string, string>> = {
  v: "Envelope version.",
  id: "Unique, sortable event id (ULID); also the NATS message id used for de-duplication.",
  type: "Event type from the catalog.",
  time: "When the producer created the event (RFC 3339 UTC with milliseconds).",
  source: "Principal that signed the event; must own the key `kid`.",
  session: "Session id; the event is published on vigil.ev.<session>.<type>.",
  causation: "Id of the event that caused this one, or null for a root event.",
  correlation: "Task id; with causation it makes the session a DAG.",
  trace: "W3C traceparent, or empty when the producer was not traced.",
  data: "Type-specific payload.",
  blobs: "Content kept out of the event, by role, referenced by SHA-256 (stored in the blob object store).",
  kid: "Key id: hex of the first 8 bytes of SHA-256 of the signer's Ed25519 public key.",
  sig: "Ed25519 signature (base64url, no padding) over 'vigil/event/v1\\n' followed by the RFC 8785 canonical JSON of every other field.",
}

const options = { onExcessProperty: "error" } as const

interface Generated {
  readonly schema: JsonObject
  readonly defs: JsonObject
}

const generate = (schema: Schema.Top): Generated => {
  const doc = Schema.toJsonSchemaDocument(schema, options)
  return { schema: doc.schema as JsonObject, defs: doc.definitions as JsonObject }
}

const asObject = (j: Json | undefined, what: string): JsonObject => {
  if (typeof j !== "object" || j === null || Array.isArray(j)) throw new Error(`expected an object at ${what}`)
  return j as JsonObject
}

/** Merge `$defs` tables; the same name must mean the same schema. */
const mergeDefs = (...tables: ReadonlyArray<JsonObject>): JsonObject => {
  const out: Record<string, Json> = {}
  for (const table of tables) {
    for (const [name, def] of Object.entries(table)) {
      if (name in out && JSON.stringify(out[name]) !== JSON.stringify(def)) {
        throw new Error(`conflicting JSON Schema definitions named ${name}`)
      }
      out[name] = def
    }
  }
  return out
}

/** Order of keywords in an emitted schema object; anything else follows alphabetically. */
const KEYWORD_ORDER = [
  "$schema",
  "$id",
  "$ref",
  "title",
  "description",
  "$comment",
  "type",
  "const",
  "enum",
  "pattern",
  "minLength",
  "maxLength",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "items",
  "minItems",
  "maxItems",
  "uniqueItems",
  "properties",
  "patternProperties",
  "propertyNames",
  "required",
  "additionalProperties",
  "anyOf",
  "oneOf",
  "allOf",
  "not",
  "$defs",
]
const rank = (k: string): number => {
  const i = KEYWORD_ORDER.indexOf(k)
  return i === -1 ? KEYWORD_ORDER.length : i
}
/** Keywords whose value maps names to schemas: their keys are names, kept in definition order. */
const NAME_MAPS = new Set(["properties", "patternProperties", "$defs"])

/**
 * Rebuild a schema with a fixed key order, so the text does not depend on how the object happened to be assembled:
 * keywords in {@link KEYWORD_ORDER}, property names in the order the Effect schema declares them.
 */
const stable = (j: Json, isNameMap = false): Json => {
  if (Array.isArray(j)) return j.map((x) => stable(x))
  if (typeof j !== "object" || j === null) return j
  const obj = j as JsonObject
  const keys = isNameMap
    ? Object.keys(obj)
    : Object.keys(obj).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0))
  const out: Record<string, Json> = {}
  for (const k of keys) out[k] = isNameMap ? stable(obj[k] as Json) : stable(obj[k] as Json, NAME_MAPS.has(k))
  return out
}

const withFieldDocs = (properties: JsonObject): Record<string, Json> => {
  const out: Record<string, Json> = {}
  for (const [name, schema] of Object.entries(properties)) {
    const doc = FIELD_DOCS[name]
    out[name] = doc === undefined ? schema : { ...asObject(schema, `properties.${name}`), description: doc }
  }
  return out
}

const withDefs = (schema: Record<string, Json>, defs: JsonObject): Record<string, Json> =>
  Object.keys(defs).length === 0 ? schema : { ...schema, $defs: defs }

const envelopeSchema = (): JsonObject => {
  const env = generate(Envelope)
  const properties = withFieldDocs(asObject(env.schema.properties, "envelope.properties"))
  properties.data = { description: "Type-specific payload; each type's schema defines it." }
  return withDefs(
    {
      $schema: DIALECT,
      $id: `${SCHEMA_BASE_URI}${ENVELOPE_FILE}`,
      title: "Vigil event envelope",
      description: `A signed Vigil event of any type (envelope version ${ENVELOPE_VERSION}); \`data\` is checked by the schema of its type, listed in ${INDEX_FILE}.`,
      ...env.schema,
      properties,
    },
    env.defs,
  )
}

const eventSchema = (type: EventType): JsonObject => {
  const entry = CATALOG[type]
  const env = generate(Envelope)
  const data = generate(entry.data)
  const envProps = asObject(env.schema.properties, "envelope.properties")
  const properties = withFieldDocs(envProps)
  properties.type = { description: FIELD_DOCS.type as string, const: type }
  properties.data = { ...data.schema, description: FIELD_DOCS.data as string }
  const required = [...(env.schema.required as ReadonlyArray<string>)]
  if (entry.blobs.length > 0) {
    const blobs = asObject(properties.blobs, "envelope.properties.blobs")
    properties.blobs = { ...blobs, required: [...entry.blobs] }
    // `blobs` is optional in the envelope but required for types that must reference content; keep envelope order.
    const order = Object.keys(envProps)
    required.push("blobs")
    required.sort((a, b) => order.indexOf(a) - order.indexOf(b))
  }
  return withDefs(
    {
      $schema: DIALECT,
      $id: `${SCHEMA_BASE_URI}${schemaFileName(type)}`,
      title: type,
      description: entry.doc,
      ...env.schema,
      properties,
      required,
    },
    mergeDefs(env.defs, data.defs),
  )
}

const indexDocument = (): JsonObject => ({
  $comment: "Generated from libs/events/src/catalog.ts by `npm run schemas:gen`; do not edit.",
  envelopeVersion: ENVELOPE_VERSION,
  envelope: ENVELOPE_FILE,
  types: EVENT_TYPES.map((type) => {
    const e = CATALOG[type]
    return {
      type,
      schema: schemaFileName(type),
      $id: `${SCHEMA_BASE_URI}${schemaFileName(type)}`,
      doc: e.doc,
      producers: [...e.producers],
      consumers: [...e.consumers],
      blobs: [...e.blobs],
    }
  }),
})

const text = (j: Json): string => `${JSON.stringify(j, null, 2)}\n`

/**
 * File name → pretty JSON text (with a trailing newline) of every file that belongs in schemas/, in a stable order.
 * Pure and deterministic: the same catalog always gives byte-identical text.
 */
export const generateJsonSchemas = (): Map<string, string> => {
  const files = new Map<string, string>()
  files.set(INDEX_FILE, text(indexDocument()))
  files.set(ENVELOPE_FILE, text(stable(envelopeSchema())))
  for (const type of EVENT_TYPES) files.set(schemaFileName(type), text(stable(eventSchema(type))))
  return files
}
