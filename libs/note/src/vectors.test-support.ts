// Test support, not exported: loads testdata/signed-note.json (relative to the repository root; provenance in
// testdata/README.md) and fails loudly when it is missing or not the shape the tests read.
import { readFileSync } from "node:fs"
import { resolve } from "node:path"

export interface SignedNoteVectors {
  readonly source: string
  readonly format: string
  /** `PRIVATE+KEY+name+hex8(keyid)+base64(0x01 || seed)` of the key that signed `signedByPeter`. */
  readonly signerKey: string
  /** Verifier keys by key name. */
  readonly verifierKeys: Readonly<Record<string, string>>
  /** The note text, final newline included. */
  readonly text: string
  /** `text`, a blank line, PeterNeumann's signature line. */
  readonly signedByPeter: string
  /** EnochRoot's signature line over `text` (a second signer), final newline included. */
  readonly enochSignatureLine: string
  /** Descriptions (not notes) of the shapes a verifier must refuse. */
  readonly malformed: ReadonlyArray<string>
}

export const VECTORS_PATH = resolve(import.meta.dirname, "..", "..", "..", "testdata", "signed-note.json")

const load = (): SignedNoteVectors => {
  let raw: string
  try {
    raw = readFileSync(VECTORS_PATH, "utf8")
  } catch (cause) {
    throw new Error(`signed-note test vectors missing: cannot read ${VECTORS_PATH}`, { cause })
  }
  const v: unknown = JSON.parse(raw)
  const isString = (x: unknown): x is string => typeof x === "string" && x !== ""
  if (typeof v !== "object" || v === null) throw new Error(`${VECTORS_PATH}: not a JSON object`)
  const o = v as Record<string, unknown>
  for (const field of ["source", "format", "signerKey", "text", "signedByPeter", "enochSignatureLine"]) {
    if (!isString(o[field])) throw new Error(`${VECTORS_PATH}: "${field}" must be a non-empty string`)
  }
  const keys = o.verifierKeys
  if (typeof keys !== "object" || keys === null || !Object.values(keys).every(isString)) {
    throw new Error(`${VECTORS_PATH}: "verifierKeys" must map names to key strings`)
  }
  if (!Array.isArray(o.malformed) || o.malformed.length === 0 || !o.malformed.every(isString)) {
    throw new Error(`${VECTORS_PATH}: "malformed" must be a non-empty list of descriptions`)
  }
  return v as SignedNoteVectors
}

export const vectors: SignedNoteVectors = load()
