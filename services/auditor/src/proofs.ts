import { existsSync, readFileSync, realpathSync, statSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { join, normalize, sep } from "node:path"
import type { AuditCore } from "@vigil/auditlog"
import type { PROOF_SUBJECTS } from "@vigil/events"

/**
 * Read-only answers about the log, shared by the NATS request/reply subjects (`vigil.proof.*`) and the HTTP
 * endpoint. Proofs are for the latest signed checkpoint unless the caller names a size, because a proof is only
 * useful against a root the caller can check a signature on.
 */

export type ProofAnswer =
  | { readonly ok: true; readonly [k: string]: unknown }
  | { readonly ok: false; readonly error: string }

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64")
const bad = (error: string): ProofAnswer => ({ ok: false, error })

/** The parameters each kind of question takes; any other is refused by name. */
export const PROOF_PARAMS: Readonly<Record<keyof typeof PROOF_SUBJECTS, ReadonlyArray<string>>> = {
  checkpoint: [],
  inclusion: ["id", "index", "size"],
  consistency: ["from", "to"],
  entry: ["index"],
}

/** A value a caller gave, quoted for an error message and cut to a readable length. */
const given = (v: unknown): string => {
  const text = JSON.stringify(v ?? null) ?? String(v)
  return text.length > 80 ? `${text.slice(0, 80)}…` : text
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v)

/** `[lo, hi]`, or what to say when no value fits (an empty log). */
const range = (lo: number, hi: number) => (hi < lo ? "[] (the log has no leaves yet)" : `[${lo}, ${hi}]`)

const sizeFor = (core: AuditCore, name: string, requested: unknown): number | ProofAnswer => {
  const signed = core.lastCheckpoint
  if (requested === undefined || requested === null) {
    return signed === undefined ? bad("no checkpoint has been signed yet") : signed.size
  }
  if (!isInt(requested) || requested < 1 || requested > core.size) {
    return bad(`${name} must be an integer in ${range(1, core.size)}, got ${given(requested)}`)
  }
  return requested
}

export const answer = (
  core: AuditCore,
  kind: keyof typeof PROOF_SUBJECTS,
  req: Record<string, unknown>,
): ProofAnswer => {
  if (typeof req !== "object" || req === null || Array.isArray(req)) return bad("request must be a JSON object")
  const allowed = PROOF_PARAMS[kind]
  const unknown = Object.keys(req).filter((k) => !allowed.includes(k))
  if (unknown.length > 0) {
    const takes = allowed.length === 0 ? "takes no parameters" : `takes ${allowed.join(", ")}`
    return bad(`unknown parameter ${unknown.map(given).join(", ")}: ${kind} ${takes}`)
  }
  switch (kind) {
    case "checkpoint": {
      const signed = core.lastCheckpoint
      return signed === undefined
        ? bad("no checkpoint has been signed yet")
        : { ok: true, size: signed.size, note: signed.note }
    }
    case "inclusion": {
      if (req.id !== undefined && req.index !== undefined) return bad("give an id or an index, not both")
      if (req.id !== undefined && (typeof req.id !== "string" || req.id === "")) {
        return bad(`id must be an event id (a string), got ${given(req.id)}`)
      }
      if (req.id === undefined && req.index === undefined) return bad("give an id or an index")
      const size = sizeFor(core, "size", req.size)
      if (typeof size !== "number") return size
      let index: number
      if (typeof req.id === "string") {
        const found = core.indexOf(req.id)
        if (found === undefined) return bad(`no event ${given(req.id)} in the log`)
        index = found
        if (index >= size)
          return bad(`event ${given(req.id)} is leaf ${index}, which is not in the tree of size ${size}`)
      } else {
        if (!isInt(req.index) || req.index < 0 || req.index >= size) {
          return bad(
            `index must be an integer in ${range(0, size - 1)} (the tree of size ${size}), got ${given(req.index)}`,
          )
        }
        index = req.index
      }
      return {
        ok: true,
        index,
        size,
        leaf: b64(core.log.entry(index)),
        proof: core.log.inclusionProof(index, size).map(b64),
        root: b64(core.log.rootAt(size)),
        ...(core.lastCheckpoint?.size === size ? { checkpoint: core.lastCheckpoint.note } : {}),
      }
    }
    case "consistency": {
      const to = sizeFor(core, "to", req.to)
      if (typeof to !== "number") return to
      const from = req.from
      if (!isInt(from) || from < 1 || from > to) {
        return bad(`from must be an integer in ${range(1, to)}, got ${given(from)}`)
      }
      return { ok: true, from, to, proof: core.log.consistencyProof(from, to).map(b64), root: b64(core.log.rootAt(to)) }
    }
    case "entry": {
      const index = req.index
      if (!isInt(index) || index < 0 || index >= core.size) {
        return bad(`index must be an integer in ${range(0, core.size - 1)}, got ${given(index)}`)
      }
      return { ok: true, index, leaf: b64(core.log.entry(index)) }
    }
  }
}

/**
 * An HTTP query as a request for {@link answer}: `id` as given, every other value a number when it is a whole
 * decimal number (a safe integer), else the text as given, which `answer` then refuses naming the parameter. A
 * parameter given twice is refused here.
 */
export const queryParams = (
  params: URLSearchParams,
): { readonly ok: true; readonly req: Record<string, unknown> } | { readonly ok: false; readonly error: string } => {
  const req: Record<string, unknown> = {}
  for (const [k, v] of params) {
    if (Object.hasOwn(req, k)) return { ok: false, error: `parameter ${JSON.stringify(k)} is given more than once` }
    req[k] = k !== "id" && /^[0-9]+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : v
  }
  return { ok: true, req }
}

/**
 * HTTP on 127.0.0.1: `/checkpoint` and the tile files as stored (tlog-tiles layout, immutable, cacheable), plus
 * `/proof/inclusion?id=…|index=…[&size=…]`, `/proof/consistency?from=…[&to=…]`, `/proof/entry?index=…`. A proof
 * question that cannot be answered is a 400 with `{ ok: false, error }`, the error naming the parameter at fault.
 */
export const startProofHttp = (core: AuditCore, port: number): Promise<Server> => {
  const root = realpathSync(core.log.dir)
  const server = createServer((req, res) => {
    const send = (status: number, body: string | Uint8Array, type: string, extra: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": type, "x-content-type-options": "nosniff", ...extra })
      res.end(body)
    }
    if (req.method !== "GET") return send(405, "read-only\n", "text/plain")
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    if (url.pathname === "/checkpoint") {
      const note = core.lastCheckpoint?.note
      return note === undefined
        ? send(404, "no checkpoint yet\n", "text/plain")
        : send(200, note, "text/plain; charset=utf-8")
    }
    const proof = /^\/proof\/(inclusion|consistency|entry)$/.exec(url.pathname)
    if (proof !== null) {
      const q = queryParams(url.searchParams)
      const a = q.ok ? answer(core, proof[1] as "inclusion" | "consistency" | "entry", q.req) : q
      return send(a.ok ? 200 : 400, `${JSON.stringify(a)}\n`, "application/json")
    }
    // Static tiles and entry bundles: only paths inside the log dir, only the tlog-tiles path shapes.
    if (/^\/(tile|entries-u32)\/[0-9a-z./x-]+$/.test(url.pathname)) {
      const path = normalize(join(root, url.pathname))
      if (path.startsWith(root + sep) && existsSync(path) && statSync(path).isFile()) {
        return send(200, readFileSync(path), "application/octet-stream", {
          "cache-control": url.pathname.includes(".p/") ? "no-cache" : "public, max-age=31536000, immutable",
        })
      }
    }
    return send(404, "not found\n", "text/plain")
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => resolve(server))
  })
}
