import { classByUid, OCSF_VERSION, SEVERITY } from "./schema.ts"

/**
 * A small hand-written OCSF validator for the five classes Vigil emits, targeting OCSF 1.5.0 (see schema.ts for the
 * sources). It checks the base-event required attributes, each class's required attributes and the required
 * attributes / `at_least_one` constraints of the objects inside them, enum membership and caption siblings, the
 * `type_uid` arithmetic, and that the record is plain JSON (finite numbers, no `undefined`). With `vigil` (the
 * default) it also checks the Vigil profile: the fields a SIEM needs to tie a record back to the signed event and
 * its Merkle leaf.
 *
 * Two requirement flags changed within 1.x; the table asks for the union, which Vigil always emits:
 * - `metadata.product`: `vendor_name` is required in 1.0–1.x releases (e.g. prowler-cloud/py-ocsf-models),
 *   `name` in the current OCSF source; both are required here.
 * - `finding_info.title`: required in early 1.x, recommended in 1.5.0; only `uid` is an OCSF requirement here,
 *   `title` is a Vigil-profile requirement.
 *
 * Not checked: attributes outside this table (a record may carry other OCSF attributes), recommended attributes,
 * and the profile-specific requirements of profiles Vigil does not declare (`metadata.profiles` is empty).
 */

/** Required attributes of every event class (OCSF `base_event`). */
export const BASE_REQUIRED = [
  "activity_id",
  "category_uid",
  "class_uid",
  "metadata",
  "severity_id",
  "time",
  "type_uid",
] as const

interface Child {
  readonly type: string
  readonly array?: boolean
}

interface Rule {
  readonly required?: ReadonlyArray<string>
  readonly atLeastOne?: ReadonlyArray<string>
  readonly ints?: ReadonlyArray<string>
  readonly strings?: ReadonlyArray<string>
  readonly children?: Readonly<Record<string, Child>>
}

/** Required attributes (and nested objects) per class uid, OCSF 1.5.0. */
export const CLASS_RULES: Readonly<Record<number, Rule>> = {
  // API Activity: actor, api, src_endpoint (events/application/api_activity.json).
  6003: {
    required: ["actor", "api", "src_endpoint"],
    children: {
      actor: { type: "actor" },
      api: { type: "api" },
      src_endpoint: { type: "network_endpoint" },
      dst_endpoint: { type: "network_endpoint" },
    },
  },
  // File System Activity: actor, device (System category), file (events/system/{system,file_activity}.json).
  1001: {
    required: ["actor", "device", "file"],
    children: {
      actor: { type: "actor" },
      device: { type: "device" },
      file: { type: "file" },
      file_result: { type: "file" },
    },
  },
  // Process Activity: actor, device (System category), process (events/system/process_activity.json).
  1007: {
    required: ["actor", "device", "process"],
    ints: ["exit_code"],
    children: { actor: { type: "actor" }, device: { type: "device" }, process: { type: "process" } },
  },
  // Network Activity: no single endpoint is required; the Network category demands at least one of them
  // (events/network/network.json `constraints.at_least_one`).
  4001: {
    atLeastOne: ["src_endpoint", "dst_endpoint"],
    children: {
      actor: { type: "actor" },
      src_endpoint: { type: "network_endpoint" },
      dst_endpoint: { type: "network_endpoint" },
      connection_info: { type: "network_connection_info" },
    },
  },
  // Detection Finding: finding_info (events/findings/finding.json).
  2004: { required: ["finding_info"], children: { finding_info: { type: "finding_info" } } },
}

/** Object rules (required attributes and `at_least_one` constraints from objects/*.json). */
export const OBJECT_RULES: Readonly<Record<string, Rule>> = {
  metadata: {
    required: ["product", "version"],
    strings: ["version", "uid", "correlation_uid", "event_code", "original_time", "log_name", "log_provider"],
    ints: ["sequence", "logged_time"],
    children: { product: { type: "product" } },
  },
  product: { required: ["name", "vendor_name"], strings: ["name", "vendor_name", "version", "uid"] },
  actor: {
    atLeastOne: ["process", "user", "invoked_by", "session", "app_name", "app_uid"],
    strings: ["app_name", "app_uid"],
    children: { process: { type: "process" }, session: { type: "session" } },
  },
  session: { strings: ["uid"] },
  api: {
    required: ["operation"],
    strings: ["operation", "version"],
    children: { request: { type: "request" }, service: { type: "service" } },
  },
  service: { strings: ["name", "uid"] },
  request: { required: ["uid"], strings: ["uid"] },
  network_endpoint: {
    atLeastOne: ["ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name"],
    strings: ["ip", "uid", "name", "hostname", "svc_name"],
    ints: ["port"],
  },
  device: { required: ["type_id"], ints: ["type_id"], strings: ["name", "hostname"] },
  file: {
    required: ["name", "type_id"],
    ints: ["type_id", "size"],
    strings: ["name", "path", "parent_folder", "mime_type"],
    children: { hashes: { type: "fingerprint", array: true } },
  },
  fingerprint: { required: ["algorithm_id", "value"], ints: ["algorithm_id"], strings: ["value"] },
  process: {
    atLeastOne: ["pid", "uid"],
    ints: ["pid", "created_time"],
    strings: ["uid", "name"],
    children: { file: { type: "file" } },
  },
  finding_info: {
    required: ["uid"],
    strings: ["uid", "title", "desc"],
    ints: ["created_time", "related_events_count"],
    children: { related_events: { type: "related_event", array: true } },
  },
  related_event: { required: ["uid"], strings: ["uid"] },
  network_connection_info: { required: ["direction_id"], ints: ["direction_id"], strings: ["uid"] },
}

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v)
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v)
const join = (path: string, key: string) => (path === "" ? key : `${path}.${key}`)

const checkRule = (obj: Obj, rule: Rule, path: string, issues: string[]): void => {
  for (const key of rule.required ?? []) {
    if (obj[key] === undefined || obj[key] === null) issues.push(`missing: ${join(path, key)}`)
  }
  if (rule.atLeastOne !== undefined && !rule.atLeastOne.some((k) => obj[k] !== undefined && obj[k] !== null)) {
    issues.push(`missing: ${path === "" ? "" : `${path}.`}one of ${rule.atLeastOne.join(" | ")}`)
  }
  for (const key of rule.ints ?? []) {
    if (obj[key] !== undefined && !isInt(obj[key])) issues.push(`invalid: ${join(path, key)}: not an integer`)
  }
  for (const key of rule.strings ?? []) {
    if (obj[key] !== undefined && typeof obj[key] !== "string") issues.push(`invalid: ${join(path, key)}: not a string`)
  }
  for (const [key, child] of Object.entries(rule.children ?? {})) {
    const value = obj[key]
    if (value === undefined) continue
    const childRule = OBJECT_RULES[child.type] ?? {}
    if (child.array === true) {
      if (!Array.isArray(value)) {
        issues.push(`invalid: ${join(path, key)}: not an array`)
        continue
      }
      value.forEach((item, i) => {
        if (isObj(item)) checkRule(item, childRule, `${join(path, key)}[${i}]`, issues)
        else issues.push(`invalid: ${join(path, key)}[${i}]: not an object`)
      })
    } else if (isObj(value)) {
      checkRule(value, childRule, join(path, key), issues)
    } else {
      issues.push(`invalid: ${join(path, key)}: not an object`)
    }
  }
}

/** JSON only: finite numbers, no undefined / functions / symbols / bigints. */
const checkJson = (value: unknown, path: string, issues: string[]): void => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return
    case "number":
      if (!Number.isFinite(value)) issues.push(`invalid: ${path || "record"}: not a finite number`)
      return
    case "object":
      if (value === null) return
      if (Array.isArray(value)) {
        for (const [i, v] of value.entries()) checkJson(v, `${path}[${i}]`, issues)
      } else for (const [k, v] of Object.entries(value)) checkJson(v, join(path, k), issues)
      return
    default:
      issues.push(`invalid: ${path || "record"}: not JSON (${typeof value})`)
  }
}

const caption = (table: Readonly<Record<number, string>>, id: unknown): string | undefined =>
  isInt(id) ? table[id] : undefined

const checkSibling = (
  record: Obj,
  idKey: string,
  nameKey: string,
  table: Readonly<Record<number, string>>,
  issues: string[],
): void => {
  const id = record[idKey]
  if (id === undefined) return
  if (!isInt(id) || table[id] === undefined) {
    issues.push(`invalid: ${idKey}: ${JSON.stringify(id)} is not in the enum`)
    return
  }
  const name = record[nameKey]
  if (name === undefined) return
  if (typeof name !== "string") issues.push(`invalid: ${nameKey}: not a string`)
  // With 99 (Other) the label is source-specific; otherwise it must be the enum caption.
  else if (id !== 99 && name !== table[id]) issues.push(`invalid: ${nameKey}: expected "${table[id]}", got "${name}"`)
}

const VIGIL_KID = /^[0-9a-f]{16}$/u
const VIGIL_SIG = /^[A-Za-z0-9_-]{85}[AQgw]$/u

const checkVigil = (record: Obj, issues: string[]): void => {
  const metadata = isObj(record.metadata) ? record.metadata : {}
  if (typeof metadata.uid !== "string" || metadata.uid === "") issues.push("missing: metadata.uid (vigil event id)")
  if (typeof metadata.correlation_uid !== "string" || metadata.correlation_uid === "") {
    issues.push("missing: metadata.correlation_uid (vigil correlation)")
  }
  const vigil = isObj(record.unmapped) && isObj(record.unmapped.vigil) ? record.unmapped.vigil : undefined
  if (vigil === undefined) {
    issues.push("missing: unmapped.vigil")
    return
  }
  if (vigil.event_id !== metadata.uid) issues.push("invalid: unmapped.vigil.event_id: differs from metadata.uid")
  if (!isInt(vigil.leaf_index) || vigil.leaf_index < 0) issues.push("missing: unmapped.vigil.leaf_index")
  else if (metadata.sequence !== vigil.leaf_index) issues.push("invalid: metadata.sequence: differs from leaf_index")
  if (!isInt(vigil.stream_seq) || vigil.stream_seq < 0) issues.push("missing: unmapped.vigil.stream_seq")
  for (const key of ["event_type", "source", "session", "correlation"]) {
    if (typeof vigil[key] !== "string" || vigil[key] === "") issues.push(`missing: unmapped.vigil.${key}`)
  }
  if (typeof vigil.kid !== "string" || !VIGIL_KID.test(vigil.kid)) issues.push("missing: unmapped.vigil.kid")
  if (typeof vigil.sig !== "string" || !VIGIL_SIG.test(vigil.sig)) issues.push("missing: unmapped.vigil.sig")
  if (!isObj(vigil.data)) issues.push("missing: unmapped.vigil.data")
  if (record.class_uid === 2004) {
    const info = isObj(record.finding_info) ? record.finding_info : {}
    if (typeof info.title !== "string" || info.title === "") issues.push("missing: finding_info.title (vigil)")
  }
}

export interface ValidateOptions {
  /** Also check the Vigil profile (event id, correlation, leaf index, signature and key id). Default true. */
  readonly vigil?: boolean
}

/**
 * Check one OCSF record; returns the problems found ("missing: <path>" / "invalid: <path>: <why>"), empty when the
 * record is valid.
 */
export const validateOcsf = (record: unknown, options: ValidateOptions = {}): string[] => {
  const issues: string[] = []
  if (!isObj(record)) return ["invalid: record: not an object"]
  checkJson(record, "", issues)
  for (const key of BASE_REQUIRED) {
    if (record[key] === undefined || record[key] === null) issues.push(`missing: ${key}`)
  }
  for (const key of ["activity_id", "category_uid", "class_uid", "time", "type_uid"]) {
    if (record[key] !== undefined && !isInt(record[key])) issues.push(`invalid: ${key}: not an integer`)
  }
  if (isInt(record.time) && record.time < 0) issues.push("invalid: time: negative")
  checkSibling(record, "severity_id", "severity", SEVERITY, issues)
  if (record.unmapped !== undefined && !isObj(record.unmapped)) issues.push("invalid: unmapped: not an object")

  if (isObj(record.metadata)) {
    checkRule(record.metadata, OBJECT_RULES.metadata ?? {}, "metadata", issues)
    const version = record.metadata.version
    if (typeof version === "string" && version !== OCSF_VERSION) {
      issues.push(`invalid: metadata.version: expected "${OCSF_VERSION}", got "${version}"`)
    }
  } else if (record.metadata !== undefined) {
    issues.push("invalid: metadata: not an object")
  }

  const cls = isInt(record.class_uid) ? classByUid(record.class_uid) : undefined
  if (cls === undefined) {
    if (isInt(record.class_uid))
      issues.push(`invalid: class_uid: ${record.class_uid} is not a class this validator knows`)
  } else {
    if (record.category_uid !== undefined && record.category_uid !== cls.categoryUid) {
      issues.push(`invalid: category_uid: expected ${cls.categoryUid} for class ${cls.uid}`)
    }
    if (record.class_name !== undefined && record.class_name !== cls.caption) {
      issues.push(`invalid: class_name: expected "${cls.caption}"`)
    }
    if (record.category_name !== undefined && record.category_name !== cls.categoryName) {
      issues.push(`invalid: category_name: expected "${cls.categoryName}"`)
    }
    checkSibling(record, "activity_id", "activity_name", cls.activities, issues)
    checkSibling(record, "status_id", "status", cls.statuses, issues)
    if (isInt(record.activity_id) && isInt(record.type_uid)) {
      const expected = cls.uid * 100 + record.activity_id
      if (record.type_uid !== expected) issues.push(`invalid: type_uid: expected ${expected}, got ${record.type_uid}`)
    }
    const activityCaption = caption(cls.activities, record.activity_id)
    if (record.type_name !== undefined && activityCaption !== undefined) {
      const expected = `${cls.caption}: ${activityCaption}`
      if (record.type_name !== expected) issues.push(`invalid: type_name: expected "${expected}"`)
    }
    checkRule(record, CLASS_RULES[cls.uid] ?? {}, "", issues)
  }

  if (options.vigil !== false) checkVigil(record, issues)
  return issues
}
