import { posix } from "node:path"
import { TOOLS } from "@vigil/events"
import type { CedarValue, EntityJson, EntityUid } from "./cedar.ts"
import { type Classifier, type DataClass, type Finding, maxClass } from "./classify.ts"

/**
 * From an `intent.proposed` (tool + args) and what Vigil knows around it (granted folders, data-class rules, DLP
 * findings, role, device, consent) to a Cedar request: principal, action, resource, context and entities, shaped
 * exactly as policies/schema.cedarschema declares them. Cedar then only compares facts; everything that needs
 * parsing (paths, URLs) or judgement (data classes, allowlists) happens here, once, in code with tests.
 */

export type Tool = (typeof TOOLS)[number]
export const isTool = (s: string): s is Tool => (TOOLS as ReadonlyArray<string>).includes(s)

export interface DeviceInfo {
  readonly id: string
  /** Enrolled in the organisation's device management. */
  readonly managed: boolean
  /** "linux", "darwin", "win32", … */
  readonly os: string
}

export interface RequestOptions {
  /** Folders the user granted to the agent (absolute paths). Nothing outside them is "in a granted folder". */
  readonly grantedFolders: ReadonlyArray<string>
  /** The data-class rules (the bundle's classifier). */
  readonly dataClasses: Classifier
  /** DLP findings on the intent's arguments (`intent.screened`). */
  readonly dlpFindings?: ReadonlyArray<Finding>
  /** The principal's role (e.g. "staff", "business", "engineering-canary"). */
  readonly role: string
  readonly device: DeviceInfo
  /** User id; default "local". */
  readonly user?: string
  /** The user already agreed to this exact intent. */
  readonly consent?: boolean
  /** Egress allowlist: host names, or "*.example.org" for every subdomain of example.org. Default: empty. */
  readonly egressAllowlist?: ReadonlyArray<string>
  /** URL of the remote model server, used by model.remote when the intent names no `endpoint`. */
  readonly remoteModelUrl?: string
  /** Base for relative paths in the arguments; without it a relative path is refused. */
  readonly cwd?: string
  /**
   * Bytes the action would write or send when the caller knows more than the arguments say (e.g. the size of a
   * file to upload); the larger of this and the arguments' own size counts.
   */
  readonly bytes?: number
  /** Rate the data at least this class (e.g. when another component already knows more than the rules). */
  readonly dataClassFloor?: DataClass
}

/** The tool call of an `intent.proposed`. */
export interface IntentInput {
  readonly tool: string
  readonly args: Readonly<Record<string, unknown>>
}

export interface PolicyRequest {
  readonly tool: Tool
  readonly principal: EntityUid
  readonly action: EntityUid
  readonly resource: EntityUid
  readonly context: Record<string, CedarValue>
  readonly entities: EntityJson[]
  /** The highest class of data involved (also `context.dataClass`). */
  readonly dataClass: DataClass
  /** Data-class rules that matched. */
  readonly classification: ReadonlyArray<string>
  readonly consent: boolean
}

/** The intent cannot be turned into a request (unknown tool, missing or malformed argument). */
export class RequestError extends Error {
  override readonly name = "RequestError"
}

const MAX_PATH = 4096

/** Normalised absolute "/"-separated path without a trailing slash; throws RequestError for anything else. */
export const normalisePath = (p: unknown, cwd?: string, what = "path"): string => {
  if (typeof p !== "string" || p.length === 0) throw new RequestError(`${what} must be a non-empty string`)
  if (p.length > MAX_PATH) throw new RequestError(`${what} is longer than ${MAX_PATH} characters`)
  if (p.includes("\0")) throw new RequestError(`${what} contains a NUL character`)
  let abs: string
  if (posix.isAbsolute(p)) abs = posix.normalize(p)
  else if (cwd !== undefined && posix.isAbsolute(cwd)) abs = posix.resolve(cwd, p)
  else throw new RequestError(`${what} "${p}" is not absolute and there is no working directory to resolve it`)
  return abs.length > 1 && abs.endsWith("/") ? abs.slice(0, -1) : abs
}

const isInside = (path: string, folder: string): boolean =>
  folder === "/" || path === folder || path.startsWith(`${folder}/`)

const entity = (type: string, id: string): { __entity: { type: string; id: string } } => ({ __entity: { type, id } })
const uid = (type: string, id: string): EntityUid => ({ type, id })

const stringArg = (args: IntentInput["args"], key: string, tool: string): string => {
  const v = args[key]
  if (typeof v !== "string" || v.length === 0) throw new RequestError(`${tool} needs a string \`${key}\` argument`)
  return v
}

const optionalString = (args: IntentInput["args"], key: string, tool: string): string | undefined => {
  const v = args[key]
  if (v === undefined) return undefined
  if (typeof v !== "string") throw new RequestError(`${tool}: \`${key}\` must be a string`)
  return v
}

const byteLength = (v: unknown): number => {
  if (v === undefined || v === null) return 0
  if (typeof v === "string") return Buffer.byteLength(v, "utf8")
  return Buffer.byteLength(JSON.stringify(v) ?? "", "utf8")
}

interface ParsedUrl {
  readonly host: string
  readonly scheme: string
}
const parseUrl = (raw: string, what: string): ParsedUrl => {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new RequestError(`${what} is not a valid URL`)
  }
  return { host: u.hostname.toLowerCase(), scheme: u.protocol.replace(/:$/u, "").toLowerCase() }
}

/** Whether `host` is on the allowlist: exact names, or "*.example.org" for any subdomain of example.org. */
export const hostAllowlisted = (host: string, allowlist: ReadonlyArray<string>): boolean => {
  if (host === "") return false
  for (const raw of allowlist) {
    const pattern = raw.trim().toLowerCase()
    if (pattern.startsWith("*.")) {
      if (host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1) return true
    } else if (host === pattern) return true
  }
  return false
}

/** What DLP found, as the schema's `Dlp` record. */
export const dlpSummary = (findings: ReadonlyArray<Finding>): Record<string, CedarValue> => {
  const kinds = [...new Set(findings.map((f) => f.kind))].sort()
  return {
    secretsFound: findings.some((f) => f.kind === "secret" || f.kind === "credential"),
    piiFound: findings.some((f) => f.kind === "pii"),
    kinds,
    count: findings.reduce((n, f) => n + f.count, 0),
  }
}

/**
 * Map an intent to a Cedar request. Argument conventions (as the inference service proposes them):
 * fs.list/fs.search/fs.read/sheet.summarize `{ path }` (fs.search also `query`); fs.write `{ path, content }`;
 * fs.move `{ path, to }`; fs.delete `{ path, recursive? }`; net.fetch `{ url, method?, body? }`; model.remote
 * `{ model, prompt, endpoint?, files? }`; plugin.run `{ plugin, input? }`; shell.exec `{ cmd, cwd? }`.
 * Throws {@link RequestError} when the intent does not fit (the engine turns that into a deny).
 */
export const buildRequest = (intent: IntentInput, options: RequestOptions): PolicyRequest => {
  const { tool, args } = intent
  if (typeof tool !== "string" || !isTool(tool)) throw new RequestError(`unknown tool "${String(tool)}"`)
  if (typeof args !== "object" || args === null) throw new RequestError("args must be an object")
  if (options.bytes !== undefined && !(Number.isSafeInteger(options.bytes) && options.bytes >= 0)) {
    throw new RequestError("bytes must be a non-negative integer")
  }
  const classifier = options.dataClasses
  const findings = options.dlpFindings ?? []
  const floor: DataClass = options.dataClassFloor ?? "public"
  const granted = options.grantedFolders.map((g) => normalisePath(g, undefined, "granted folder"))
  const inGranted = (p: string) => granted.some((g) => isInside(p, g))
  // A file tool classifies its path twice (the resource's own class, then with the intent's DLP findings); without
  // findings both are the same call, so the path's rules run once.
  const byPath = new Map<string, ReturnType<typeof classifier.classify>>()
  const pathClass = (p: string) => {
    let c = byPath.get(p)
    if (c === undefined) {
      c = classifier.classify({ path: p })
      byPath.set(p, c)
    }
    return c
  }
  const classOf = (p: string): DataClass => maxClass(pathClass(p).dataClass, floor)

  const entities: EntityJson[] = []
  const role = options.role
  const user = options.user ?? "local"
  entities.push(
    {
      uid: uid("User", user),
      attrs: { role: entity("Role", role), device: entity("Device", options.device.id) },
      parents: [uid("Role", role)],
    },
    {
      uid: uid("Device", options.device.id),
      attrs: { managed: options.device.managed, os: options.device.os },
      parents: [],
    },
  )

  /**
   * Every ancestor folder of `p`, nearest first, as the resource's direct parents: `resource in Folder::"/home/ana"`
   * holds for anything below /home/ana. The ancestors are not sent as entities themselves (no policy reads their
   * attributes, and every entity crossing into the wasm engine costs more than evaluating the policies does).
   */
  const ancestors = (p: string): EntityUid[] => {
    const out: EntityUid[] = []
    if (p === "/") return out
    for (let d = posix.dirname(p); ; d = posix.dirname(d)) {
      out.push(uid("Folder", d))
      if (d === "/") return out
    }
  }

  const fileResource = (p: string, type: "File" | "Folder"): EntityUid => {
    const name = posix.basename(p)
    const dot = name.lastIndexOf(".")
    const attrs: Record<string, CedarValue> =
      type === "File"
        ? {
            path: p,
            name,
            ext: dot > 0 ? name.slice(dot + 1).toLowerCase() : "",
            inGrantedFolder: inGranted(p),
            dataClass: entity("DataClass", classOf(p)),
          }
        : { path: p, inGrantedFolder: inGranted(p), dataClass: entity("DataClass", classOf(p)) }
    entities.push({ uid: uid(type, p), attrs, parents: ancestors(p) })
    return uid(type, p)
  }

  let resource: EntityUid
  let dataClass: DataClass
  let classification: ReadonlyArray<string>
  let bytes = 0
  const extra: Record<string, CedarValue> = {}

  const classifyFile = (p: string): [DataClass, ReadonlyArray<string>] => {
    const c = findings.length === 0 ? pathClass(p) : classifier.classify({ path: p, findings })
    return [maxClass(c.dataClass, floor), c.rules]
  }

  switch (tool) {
    case "fs.list":
    case "fs.search": {
      const p = normalisePath(args.path, options.cwd)
      if (tool === "fs.search") optionalString(args, "query", tool)
      resource = fileResource(p, "Folder")
      ;[dataClass, classification] = classifyFile(p)
      break
    }
    case "fs.read":
    case "sheet.summarize": {
      const p = normalisePath(args.path, options.cwd)
      resource = fileResource(p, "File")
      ;[dataClass, classification] = classifyFile(p)
      break
    }
    case "fs.write": {
      const p = normalisePath(args.path, options.cwd)
      const content = args.content
      if (content !== undefined && typeof content !== "string")
        throw new RequestError("fs.write: `content` must be a string")
      resource = fileResource(p, "File")
      ;[dataClass, classification] = classifyFile(p)
      bytes = byteLength(content)
      break
    }
    case "fs.move": {
      const p = normalisePath(args.path, options.cwd)
      const to = normalisePath(args.to, options.cwd, "to")
      resource = fileResource(p, args.recursive === true ? "Folder" : "File")
      ;[dataClass, classification] = classifyFile(p)
      extra.target = { path: to, inGrantedFolder: inGranted(to), dataClass: entity("DataClass", classOf(to)) }
      break
    }
    case "fs.delete": {
      const p = normalisePath(args.path, options.cwd)
      resource = fileResource(p, args.recursive === true ? "Folder" : "File")
      ;[dataClass, classification] = classifyFile(p)
      break
    }
    case "net.fetch":
    case "model.remote": {
      let dest: ParsedUrl
      const files: string[] = []
      if (tool === "net.fetch") {
        dest = parseUrl(stringArg(args, "url", tool), "net.fetch: `url`")
        bytes = byteLength(args.url) + byteLength(args.body)
      } else {
        stringArg(args, "model", tool)
        const endpoint = optionalString(args, "endpoint", tool) ?? options.remoteModelUrl
        if (endpoint === undefined) throw new RequestError("model.remote: no `endpoint` and no remote model configured")
        dest = parseUrl(endpoint, "model.remote: endpoint")
        bytes = byteLength(args.prompt)
        const attached = args.files
        if (attached !== undefined) {
          if (!Array.isArray(attached)) throw new RequestError("model.remote: `files` must be an array of paths")
          for (const f of attached) files.push(normalisePath(f, options.cwd, "model.remote: file"))
        }
      }
      // What would leave: its DLP findings, and the classes of attached files.
      const c = classifier.classify({ findings })
      let cls = maxClass(c.dataClass, floor)
      const rules = [...c.rules]
      for (const f of files) {
        const fc = classifier.classify({ path: f })
        cls = maxClass(cls, fc.dataClass)
        for (const r of fc.rules) if (!rules.includes(r)) rules.push(r)
      }
      dataClass = cls
      classification = rules
      const id = dest.host === "" ? "(none)" : dest.host
      entities.push({
        uid: uid("Destination", id),
        attrs: {
          host: dest.host,
          scheme: dest.scheme,
          allowlisted: hostAllowlisted(dest.host, options.egressAllowlist ?? []),
        },
        parents: [],
      })
      resource = uid("Destination", id)
      break
    }
    case "plugin.run": {
      const name = stringArg(args, "plugin", tool)
      entities.push({ uid: uid("Plugin", name), attrs: { name }, parents: [] })
      resource = uid("Plugin", name)
      const c = classifier.classify({ findings })
      dataClass = maxClass(c.dataClass, floor)
      classification = c.rules
      bytes = byteLength(args.input)
      break
    }
    case "shell.exec": {
      const line = optionalString(args, "cmd", tool) ?? stringArg(args, "command", tool)
      const program = line.trim().split(/\s+/u)[0] ?? ""
      entities.push({ uid: uid("Command", line), attrs: { program }, parents: [] })
      resource = uid("Command", line)
      const c = classifier.classify({ findings })
      dataClass = maxClass(c.dataClass, floor)
      classification = c.rules
      break
    }
  }
  const consent = options.consent === true
  return {
    tool,
    principal: uid("User", user),
    action: uid("Action", tool),
    resource,
    context: {
      dataClass: entity("DataClass", dataClass),
      dlp: dlpSummary(findings),
      bytes: Math.max(bytes, options.bytes ?? 0),
      consent,
      ...extra,
    },
    entities,
    dataClass,
    classification,
    consent,
  }
}
