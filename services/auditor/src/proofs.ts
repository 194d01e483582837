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

const sizeFor = (core: AuditCore, requested: unknown): number | ProofAnswer => {
  const signed = core.lastCheckpoint
  if (requested === undefined || requested === null) {
    return signed === undefined ? bad("no checkpoint has been signed yet") : signed.size
  }
  if (typeof requested !== "number" || !Number.isSafeInteger(requested) || requested < 1 || requested > core.size) {
    return bad(`size must be an integer in [1, ${core.size}]`)
  }
  return requested
}

export const answer = (
  core: AuditCore,
  kind: keyof typeof PROOF_SUBJECTS,
  req: Record<string, unknown>,
): ProofAnswer => {
  switch (kind) {
    case "checkpoint": {
      const signed = core.lastCheckpoint
      return signed === undefined
        ? bad("no checkpoint has been signed yet")
        : { ok: true, size: signed.size, note: signed.note }
    }
    case "inclusion": {
      const size = sizeFor(core, req.size)
      if (typeof size !== "number") return size
      let index: number | undefined
      if (typeof req.id === "string") index = core.indexOf(req.id)
      else if (typeof req.index === "number" && Number.isSafeInteger(req.index)) index = req.index
      if (index === undefined)
        return bad(typeof req.id === "string" ? `no event ${req.id} in the log` : "give an id or an index")
      if (index < 0 || index >= size) return bad(`leaf ${index} is not in the tree of size ${size}`)
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
      const to = sizeFor(core, req.to)
      if (typeof to !== "number") return to
      const from = req.from
      if (typeof from !== "number" || !Number.isSafeInteger(from) || from < 1 || from > to) {
        return bad(`from must be an integer in [1, ${to}]`)
      }
      return { ok: true, from, to, proof: core.log.consistencyProof(from, to).map(b64), root: b64(core.log.rootAt(to)) }
    }
    case "entry": {
      const index = req.index
      if (typeof index !== "number" || !Number.isSafeInteger(index) || index < 0 || index >= core.size) {
        return bad(`index must be an integer in [0, ${core.size - 1}]`)
      }
      return { ok: true, index, leaf: b64(core.log.entry(index)) }
    }
  }
}

/**
 * HTTP on 127.0.0.1: `/checkpoint` and the tile files as stored (tlog-tiles layout, immutable, cacheable), plus
 * `/proof/inclusion?id=…|index=…[&size=…]`, `/proof/consistency?from=…[&to=…]`, `/proof/entry?index=…`.
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
      const q: Record<string, unknown> = {}
      for (const [k, v] of url.searchParams) q[k] = k === "id" ? v : Number(v)
      const a = answer(core, proof[1] as "inclusion" | "consistency" | "entry", q)
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
