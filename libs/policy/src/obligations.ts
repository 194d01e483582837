import { DATA_CLASSES, type EventData } from "@vigil/events"
import type { DataClass } from "./classify.ts"

/** The catalog's obligation shape (`decision.made` data). */
export type Obligation = EventData<"decision.made">["obligations"][number]

/** Largest max-bytes a policy may state (the value must also be a non-negative integer). */
const MAX_BYTES_LIMIT = Number.MAX_SAFE_INTEGER

export type ObligationParse =
  | { readonly ok: true; readonly obligations: ReadonlyArray<Obligation> }
  | { readonly ok: false; readonly detail: string }

/**
 * Parse an `@obligation("…")` annotation: obligations separated by ";", each `kind` or `kind:argument`.
 *
 * - `read-only`: the sandbox binds what the tool touches read-only;
 * - `redact` or `redact:confidential,restricted`: DLP masks findings (of these data classes) before the model or a
 *   destination sees the content;
 * - `max-bytes:1048576`: the tool reads, writes or sends at most this many bytes.
 *
 * `ask` is not written as an obligation: a policy asks with `@effect("ask")`, and the engine adds the obligation.
 */
export const parseObligations = (text: string): ObligationParse => {
  const out: Obligation[] = []
  for (const raw of text.split(";")) {
    const item = raw.trim()
    if (item === "") continue
    const colon = item.indexOf(":")
    const kind = colon === -1 ? item : item.slice(0, colon).trim()
    const arg = colon === -1 ? undefined : item.slice(colon + 1).trim()
    switch (kind) {
      case "read-only":
        if (arg !== undefined) return { ok: false, detail: `"read-only" takes no argument (got "${item}")` }
        out.push({ kind: "read-only" })
        break
      case "redact": {
        if (arg === undefined) {
          out.push({ kind: "redact" })
          break
        }
        const classes = arg.split(",").map((c) => c.trim())
        for (const c of classes) {
          if (!(DATA_CLASSES as ReadonlyArray<string>).includes(c)) {
            return { ok: false, detail: `"${c}" in "${item}" is not a data class (${DATA_CLASSES.join(", ")})` }
          }
        }
        out.push({ kind: "redact", classes: classes as DataClass[] })
        break
      }
      case "max-bytes": {
        const n = arg === undefined || !/^\d{1,16}$/u.test(arg) ? Number.NaN : Number(arg)
        if (!Number.isSafeInteger(n) || n > MAX_BYTES_LIMIT) {
          return { ok: false, detail: `"${item}" needs a whole number of bytes, e.g. max-bytes:1048576` }
        }
        out.push({ kind: "max-bytes", bytes: n })
        break
      }
      case "ask":
        return { ok: false, detail: 'write @effect("ask") instead of an "ask" obligation' }
      default:
        return { ok: false, detail: `unknown obligation "${kind}" (read-only, redact[:classes], max-bytes:N)` }
    }
  }
  return { ok: true, obligations: out }
}

/**
 * Merge the obligations of several policies into one list, most restrictive first-class: read-only once; redact
 * once, covering every class any policy named (or everything when one policy redacts without classes); the
 * smallest max-bytes; ask when asked. Canonical order: read-only, redact, max-bytes, ask.
 */
export const mergeObligations = (lists: ReadonlyArray<ReadonlyArray<Obligation>>, ask: boolean): Obligation[] => {
  let readOnly = false
  let redact: "none" | "all" | Set<DataClass> = "none"
  let maxBytes: number | undefined
  for (const list of lists) {
    for (const o of list) {
      switch (o.kind) {
        case "read-only":
          readOnly = true
          break
        case "redact":
          if (o.classes === undefined) redact = "all"
          else if (redact !== "all") {
            const set: Set<DataClass> = redact === "none" ? new Set() : redact
            for (const c of o.classes) set.add(c)
            redact = set
          }
          break
        case "max-bytes":
          if (o.bytes !== undefined) maxBytes = maxBytes === undefined ? o.bytes : Math.min(maxBytes, o.bytes)
          break
        case "ask":
          ask = true
          break
      }
    }
  }
  const out: Obligation[] = []
  if (readOnly) out.push({ kind: "read-only" })
  if (redact === "all") out.push({ kind: "redact" })
  else if (redact !== "none") {
    const set = redact
    out.push({ kind: "redact", classes: DATA_CLASSES.filter((c) => set.has(c)) })
  }
  if (maxBytes !== undefined) out.push({ kind: "max-bytes", bytes: maxBytes })
  if (ask) out.push({ kind: "ask" })
  return out
}
