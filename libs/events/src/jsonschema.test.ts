import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { keyIdOf, nodeEd25519 } from "@vigil/crypto"
import { Arbitrary, Effect, type Schema } from "effect"
import { describe, expect, it } from "vitest"
import { blobRefOf } from "./blobs.ts"
import { canonicalJson } from "./canonical.ts"
import { CATALOG, EVENT_TYPES, type EventType, type Principal, typesProducedBy } from "./catalog.ts"
import { type Draft, encodeEvent, type SigningKey, signEvent } from "./envelope.ts"
import { newEventId } from "./ids.ts"
import { ENVELOPE_FILE, generateJsonSchemas, INDEX_FILE, SCHEMA_BASE_URI, schemaFileName } from "./jsonschema.ts"
import { SCHEMAS_DIR, schemaDrift } from "./jsonschema-cli.ts"
import { type KeyResolver, verifyEvent } from "./verify.ts"

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
type JsonSchema = { [k: string]: Json }

/**
 * A deliberately small JSON Schema (2020-12) checker for the keywords the generator emits. Unknown keywords throw, so
 * a generator change that starts emitting something new cannot pass unchecked.
 */
const ANNOTATIONS = new Set(["$schema", "$id", "title", "description", "$comment", "$defs"])
const validate = (schema: JsonSchema, value: Json, root: JsonSchema = schema, path = "$"): string[] => {
  const errors: string[] = []
  const err = (msg: string) => errors.push(`${path}: ${msg}`)
  const isObject = (v: Json): v is { [k: string]: Json } => typeof v === "object" && v !== null && !Array.isArray(v)
  for (const [kw, arg] of Object.entries(schema)) {
    if (ANNOTATIONS.has(kw)) continue
    switch (kw) {
      case "$ref": {
        const name = String(arg).replace(/^#\/\$defs\//u, "")
        const target = (root.$defs as JsonSchema | undefined)?.[name]
        if (target === undefined) throw new Error(`unresolved $ref ${String(arg)}`)
        errors.push(...validate(target as JsonSchema, value, root, path))
        break
      }
      case "type": {
        const types = Array.isArray(arg) ? arg : [arg]
        const ok = types.some((t) =>
          t === "object"
            ? isObject(value)
            : t === "array"
              ? Array.isArray(value)
              : t === "integer"
                ? Number.isInteger(value)
                : t === "null"
                  ? value === null
                  : typeof value === t,
        )
        if (!ok) err(`not of type ${JSON.stringify(arg)}`)
        break
      }
      case "const":
        if (canonicalJson(value) !== canonicalJson(arg)) err(`not the const ${JSON.stringify(arg)}`)
        break
      case "enum":
        if (!(arg as Json[]).some((e) => canonicalJson(e) === canonicalJson(value))) err("not in the enum")
        break
      case "pattern":
        if (typeof value === "string" && !new RegExp(String(arg), "u").test(value)) err(`does not match ${String(arg)}`)
        break
      case "maxLength":
        if (typeof value === "string" && [...value].length > Number(arg)) err(`longer than ${String(arg)}`)
        break
      case "minLength":
        if (typeof value === "string" && [...value].length < Number(arg)) err(`shorter than ${String(arg)}`)
        break
      case "minimum":
        if (typeof value === "number" && value < Number(arg)) err(`below ${String(arg)}`)
        break
      case "maximum":
        if (typeof value === "number" && value > Number(arg)) err(`above ${String(arg)}`)
        break
      case "maxItems":
        if (Array.isArray(value) && value.length > Number(arg)) err(`more than ${String(arg)} items`)
        break
      case "minItems":
        if (Array.isArray(value) && value.length < Number(arg)) err(`fewer than ${String(arg)} items`)
        break
      case "items":
        if (Array.isArray(value)) {
          value.forEach((v, i) => {
            errors.push(...validate(arg as JsonSchema, v, root, `${path}[${i}]`))
          })
        }
        break
      case "required":
        if (isObject(value)) {
          for (const k of arg as string[]) if (!Object.hasOwn(value, k)) err(`missing required ${k}`)
        }
        break
      case "anyOf":
        if (!(arg as JsonSchema[]).some((s) => validate(s, value, root, path).length === 0))
          err("matches no anyOf branch")
        break
      case "properties":
      case "patternProperties":
      case "additionalProperties":
        break // handled together below
      default:
        throw new Error(`the test validator does not know keyword ${kw}`)
    }
  }
  if (
    isObject(value) &&
    ("properties" in schema || "patternProperties" in schema || "additionalProperties" in schema)
  ) {
    const props = (schema.properties ?? {}) as { [k: string]: JsonSchema }
    const patterns = Object.entries((schema.patternProperties ?? {}) as { [k: string]: JsonSchema })
    for (const [k, v] of Object.entries(value)) {
      let matched = false
      if (Object.hasOwn(props, k)) {
        matched = true
        errors.push(...validate(props[k] as JsonSchema, v, root, `${path}.${k}`))
      }
      for (const [p, s] of patterns) {
        if (new RegExp(p, "u").test(k)) {
          matched = true
          errors.push(...validate(s, v, root, `${path}.${k}`))
        }
      }
      if (!matched && "additionalProperties" in schema) {
        const ap = schema.additionalProperties
        if (ap === false) err(`unexpected property ${k}`)
        else if (isObject(ap as Json)) errors.push(...validate(ap as JsonSchema, v, root, `${path}.${k}`))
      }
    }
  }
  return errors
}

const files = generateJsonSchemas()
const schemaOf = (name: string): JsonSchema => JSON.parse(files.get(name) as string) as JsonSchema
const envelopeSchema = schemaOf(ENVELOPE_FILE)

const T0_MS = Date.parse("2025-06-01T12:00:00.000Z")
const keyOf = (principal: Principal): SigningKey => {
  const seed = new Uint8Array(createHash("sha256").update(`vigil-jsonschema/${principal}`).digest())
  const publicKey = nodeEd25519.publicKey(seed)
  return { principal, kid: keyIdOf(publicKey), seed, publicKey }
}
const KEYS = new Map<string, SigningKey>()
for (const t of EVENT_TYPES) for (const p of CATALOG[t].producers) if (!KEYS.has(p)) KEYS.set(p, keyOf(p))
const resolver: KeyResolver = {
  resolve: (kid) => {
    const k = [...KEYS.values()].find((x) => x.kid === kid)
    if (k === undefined) return { ok: false, reason: "unknown_key", detail: kid }
    const types = new Set<string>(typesProducedBy(k.principal))
    return {
      ok: true,
      key: {
        kid,
        principal: k.principal,
        publicKey: k.publicKey,
        types,
        notBefore: 0,
        notAfter: 2 ** 52,
        manifestVersion: 1,
      },
    }
  },
}

const blob = blobRefOf(new TextEncoder().encode("content"), "text/plain")
/** A signed event of `type` with the given data, as plain JSON (what a SIEM receives). */
const signedJson = (type: EventType, data: unknown): { [k: string]: Json } => {
  const entry = CATALOG[type]
  const draft = {
    type,
    session: "sess_schema",
    id: newEventId(T0_MS),
    time: new Date(T0_MS).toISOString(),
    data,
    ...(entry.blobs.length > 0 ? { blobs: Object.fromEntries(entry.blobs.map((r) => [r, blob])) } : {}),
  } as unknown as Draft<EventType>
  const ev = signEvent(KEYS.get(entry.producers[0] as string) as SigningKey, draft)
  return JSON.parse(Buffer.from(encodeEvent(ev)).toString()) as { [k: string]: Json }
}

/** Random valid data for each type, derived from its Effect schema (I-JSON only: lone surrogates cannot be signed). */
const samples = (type: EventType, count: number): unknown[] =>
  Effect.runSync(
    Arbitrary.sampleEffect(Arbitrary.schema(CATALOG[type].data as Schema.Top), { count, seed: type }),
  ).filter((d) => {
    try {
      canonicalJson(d)
      return true
    } catch {
      return false
    }
  })

describe("checked-in schemas/", () => {
  it("match generateJsonSchemas() (run `npm run schemas:gen` after changing the catalog)", () => {
    const drift = schemaDrift(SCHEMAS_DIR, files)
    expect(drift).toEqual({ missing: [], stale: [], different: [] })
  })

  it("pass `schemas:check` through the CLI", () => {
    const cli = fileURLToPath(new URL("./jsonschema-cli.ts", import.meta.url))
    const run = spawnSync(process.execPath, [cli, "--check"], { encoding: "utf8" })
    expect(run.stderr).toBe("")
    expect(run.status).toBe(0)
    expect(run.stdout).toMatch(/^OK: 24 schema files in .*schemas\/ match the event catalog\n$/u)
  })
})

describe("schemaDrift", () => {
  it("lists missing, stale and different files", () => {
    const dir = mkdtempSync(join(tmpdir(), "vigil-schemas-"))
    try {
      for (const [name, text] of files) writeFileSync(join(dir, name), text)
      expect(schemaDrift(dir, files)).toEqual({ missing: [], stale: [], different: [] })
      rmSync(join(dir, ENVELOPE_FILE))
      writeFileSync(join(dir, "retired.type.schema.json"), "{}\n")
      writeFileSync(join(dir, INDEX_FILE), `${files.get(INDEX_FILE)} `)
      writeFileSync(join(dir, "README.md"), "not a schema")
      expect(schemaDrift(dir, files)).toEqual({
        missing: [ENVELOPE_FILE],
        stale: ["retired.type.schema.json"],
        different: [INDEX_FILE],
      })
      expect(schemaDrift(join(dir, "nope"), files).missing).toHaveLength(files.size)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("generateJsonSchemas", () => {
  it("is deterministic and names one file per type plus the envelope and the index", () => {
    const again = generateJsonSchemas()
    expect([...again.entries()]).toEqual([...files.entries()])
    expect([...files.keys()].sort()).toEqual(
      [INDEX_FILE, ENVELOPE_FILE, ...EVENT_TYPES.map((t) => schemaFileName(t))].sort(),
    )
    for (const text of files.values()) {
      expect(text.endsWith("}\n")).toBe(true)
      expect(`${JSON.stringify(JSON.parse(text), null, 2)}\n`).toBe(text)
    }
  })

  it("index.json lists every type with its producers, consumers, blob roles and doc", () => {
    const index = JSON.parse(files.get(INDEX_FILE) as string) as {
      envelope: string
      types: Array<{
        type: string
        schema: string
        doc: string
        producers: string[]
        consumers: string[]
        blobs: string[]
      }>
    }
    expect(index.envelope).toBe(ENVELOPE_FILE)
    expect(index.types.map((t) => t.type)).toEqual([...EVENT_TYPES])
    for (const t of index.types) {
      const entry = CATALOG[t.type as EventType]
      expect(t).toMatchObject({
        schema: schemaFileName(t.type as EventType),
        doc: entry.doc,
        producers: [...entry.producers],
        consumers: [...entry.consumers],
        blobs: [...entry.blobs],
      })
    }
  })

  it.each(EVENT_TYPES.map((t) => [t]))("%s: $id, title, doc, type const, required blob roles", (type) => {
    const s = schemaOf(schemaFileName(type)) as {
      $schema: string
      $id: string
      title: string
      description: string
      required: string[]
      additionalProperties: boolean
      properties: { [k: string]: JsonSchema }
    }
    expect(s.$schema).toBe("https://json-schema.org/draft/2020-12/schema")
    expect(s.$id).toBe(`${SCHEMA_BASE_URI}${type}.schema.json`)
    expect(s.title).toBe(type)
    expect(s.description).toBe(CATALOG[type].doc)
    expect(s.properties.type?.const).toBe(type)
    expect(s.additionalProperties).toBe(false)
    expect(s.properties.data?.type).toBe("object")
    expect(s.properties.data?.additionalProperties).toBe(false)
    const roles = CATALOG[type].blobs
    expect(s.required.includes("blobs")).toBe(roles.length > 0)
    if (roles.length > 0) expect(s.properties.blobs?.required).toEqual([...roles])
    for (const k of [
      "v",
      "id",
      "type",
      "time",
      "source",
      "session",
      "causation",
      "correlation",
      "trace",
      "data",
      "kid",
    ])
      expect(s.required).toContain(k)
    expect(s.required).toContain("sig")
  })

  it("envelope.schema.json leaves data open and lists every type", () => {
    const props = envelopeSchema.properties as { [k: string]: JsonSchema }
    expect(props.type?.enum).toEqual([...EVENT_TYPES])
    expect(props.data?.type).toBeUndefined()
    expect(envelopeSchema.$id).toBe(`${SCHEMA_BASE_URI}${ENVELOPE_FILE}`)
  })
})

describe("signed events validate against their generated schema", () => {
  it.each(EVENT_TYPES.map((t) => [t]))("%s: random valid data, signed, verifies and validates", (type) => {
    const schema = schemaOf(schemaFileName(type))
    const other = schemaOf(
      schemaFileName(EVENT_TYPES[(EVENT_TYPES.indexOf(type) + 1) % EVENT_TYPES.length] as EventType),
    )
    const datas = samples(type, 25)
    expect(datas.length).toBeGreaterThan(5)
    for (const data of datas) {
      const ev = signedJson(type, data)
      const verified = verifyEvent(new TextEncoder().encode(JSON.stringify(ev)), { keys: resolver, maxBytes: 1 << 20 })
      expect(verified.ok ? "ok" : `${verified.reason}: ${verified.detail}`).toBe("ok")
      expect(validate(schema, ev)).toEqual([])
      expect(validate(envelopeSchema, ev)).toEqual([])
      // The `type` const keeps one type's event from passing as another's.
      expect(validate(other, ev)).not.toEqual([])
    }
  })

  it("refuses a missing required key, an extra key, a missing blob role and a wrong type", () => {
    const type = "task.submitted"
    const schema = schemaOf(schemaFileName(type))
    const ev = signedJson(type, { channel: "ui", workspace: "/w", promptChars: 3 })
    expect(validate(schema, ev)).toEqual([])
    for (const k of schema.required as string[]) {
      const { [k]: _gone, ...rest } = ev
      expect(validate(schema, rest).join()).toContain(`missing required ${k}`)
    }
    expect(validate(schema, { ...ev, extra: 1 }).join()).toContain("unexpected property extra")
    expect(validate(schema, { ...ev, blobs: {} }).join()).toContain("missing required prompt")
    expect(validate(schema, { ...ev, type: "task.finished" }).join()).toContain("not the const")
    expect(validate(schema, { ...ev, data: { ...(ev.data as object), more: 1 } }).join()).toContain(
      "unexpected property more",
    )
    expect(validate(schema, { ...ev, id: "x" }).join()).toContain("does not match")
    expect(validate(schema, { ...ev, sig: `${(ev.sig as string).slice(0, -1)}B` }).join()).toContain("does not match")
  })

  it("the checked-in file is what the validator reads (no stale copy)", () => {
    const onDisk = readFileSync(join(SCHEMAS_DIR, schemaFileName("intent.proposed")), "utf8")
    expect(onDisk).toBe(files.get(schemaFileName("intent.proposed")))
  })
})
