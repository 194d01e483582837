import { decodeBase64, encodeBase64 } from "@vigil/bytes"
import { type Ed25519, fastEd25519 } from "@vigil/crypto"
import { hex8, isNoteCharacters, isValidKeyName, utf8 } from "./encoding.ts"
import { NoteError, type NoteSignature } from "./errors.ts"
import type { SignerKey, VerifierKey } from "./keys.ts"

/** Go's limit: "Avoid spending forever parsing a note with many signatures" (C2SP: accept at least 16). */
export const MAX_SIGNATURES = 100

/** Em dash U+2014 and a space open every signature line. */
const SIGNATURE_PREFIX = "\u2014 "

export interface NoteOptions {
  /** Ed25519 implementation; default `fastEd25519` (libsodium); `nobleEd25519` and `nodeEd25519` give the same answers. */
  readonly ed25519?: Ed25519
  /** Refuse (`MALFORMED`) notes longer than this many UTF-8 bytes. Go has no such limit; default none. */
  readonly maxNoteBytes?: number
}

/** An opened note: its text (final newline included) and its signatures by known and unknown keys. */
export interface OpenedNote {
  readonly text: string
  readonly verified: ReadonlyArray<NoteSignature>
  readonly unverified: ReadonlyArray<NoteSignature>
}

const malformed = (why: string): NoteError => new NoteError("MALFORMED", `malformed note: ${why}`)

/**
 * Signs `text` (lines, each ending in "\n") with every signer, in order: text, a blank line, one signature line
 * `— <name> base64(keyid || Ed25519(text))` per signer. Refuses text a verifier would refuse (Go only checks the
 * final newline).
 */
export const signNote = (text: string, signers: ReadonlyArray<SignerKey>, options: NoteOptions = {}): string => {
  if (!text.endsWith("\n")) throw malformed("text must end with a newline")
  if (!isNoteCharacters(text)) throw malformed("text must be well-formed with no control characters but newline")
  if (signers.length === 0 || signers.length > MAX_SIGNATURES) {
    throw new NoteError("INVALID_SIGNER", `need 1 to ${MAX_SIGNATURES} signers, got ${signers.length}`)
  }
  const ed25519 = options.ed25519 ?? fastEd25519
  const message = utf8(text)
  let note = `${text}\n`
  for (const signer of signers) {
    // A valid key name may still hold a control character that no note may carry (Go would sign it anyway).
    if (!isValidKeyName(signer.name) || !isNoteCharacters(signer.name)) {
      throw new NoteError("INVALID_SIGNER", "invalid signer")
    }
    const signature = ed25519.sign(message, signer.seed)
    const raw = new Uint8Array(4 + signature.length)
    new DataView(raw.buffer).setUint32(0, signer.keyId)
    raw.set(signature, 4)
    note += `${SIGNATURE_PREFIX}${signer.name} ${encodeBase64(raw)}\n`
  }
  return note
}

interface SignatureLine extends NoteSignature {
  readonly signature: Uint8Array
}

/** `— <name> <base64(keyid || signature)>`: a valid key name, canonical base64 of at least 5 bytes. */
const parseSignatureLine = (line: string): SignatureLine => {
  if (!line.startsWith(SIGNATURE_PREFIX)) throw malformed("expected a signature line")
  const body = line.slice(SIGNATURE_PREFIX.length)
  const space = body.indexOf(" ")
  const name = space < 0 ? body : body.slice(0, space)
  const base64 = space < 0 ? "" : body.slice(space + 1)
  const raw = decodeBase64(base64)
  if (raw === undefined || !isValidKeyName(name) || raw.length < 5) throw malformed("bad signature line")
  const keyId = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(0)
  return { name, keyId, base64, signature: raw.subarray(4) }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const decodeNote = (note: string | Uint8Array, maxNoteBytes: number | undefined): string => {
  if (typeof note === "string") {
    if (maxNoteBytes !== undefined && Buffer.byteLength(note, "utf8") > maxNoteBytes) throw malformed("too big")
    return note
  }
  if (maxNoteBytes !== undefined && note.length > maxNoteBytes) throw malformed("too big")
  try {
    return strictUtf8.decode(note)
  } catch {
    throw malformed("invalid UTF-8")
  }
}

const identify = (name: string, keyId: number): string => `${hex8(keyId)}${name}`

/**
 * Opens a signed note (Go `note.Open`): checks its shape, verifies every signature whose (name, key id) is a known
 * key, and returns the text with the verified signatures and the unknown ones. Throws `NoteError`: `MALFORMED`,
 * `AMBIGUOUS_KEY` (two known keys share a name and key id that a signature names), `INVALID_SIGNATURE` (a known
 * key's signature does not verify), `UNVERIFIED` (no known key signed; the parsed note rides on the error).
 *
 * Unlike Go, which verifies only the first signature per known key and drops the rest unchecked, every distinct
 * signature by a known key is verified (C2SP: "If the key name and ID match a known key, verifiers MUST verify the
 * signature"); identical lines are listed once, as in Go.
 */
export const openNote = (
  note: string | Uint8Array,
  verifiers: ReadonlyArray<VerifierKey>,
  options: NoteOptions = {},
): OpenedNote => {
  const message = decodeNote(note, options.maxNoteBytes)
  if (!isNoteCharacters(message)) throw malformed("invalid UTF-8 or a control character other than newline")

  // The text ends at the last blank line; what follows must be one or more complete signature lines.
  const split = message.lastIndexOf("\n\n")
  if (split < 0) throw malformed("no blank line before the signatures")
  const text = message.slice(0, split + 1)
  const block = message.slice(split + 2)
  if (block === "" || !block.endsWith("\n")) throw malformed("no signature lines, or no final newline")
  const lines = block.slice(0, -1).split("\n")
  if (lines.length > MAX_SIGNATURES) throw malformed(`more than ${MAX_SIGNATURES} signatures`)
  const signatures = lines.map(parseSignatureLine)

  const known = new Map<string, VerifierKey[]>()
  for (const v of verifiers) {
    const id = identify(v.name, v.keyId)
    known.set(id, [...(known.get(id) ?? []), v])
  }

  const ed25519 = options.ed25519 ?? fastEd25519
  const textBytes = utf8(text)
  const verified: NoteSignature[] = []
  const unverified: NoteSignature[] = []
  const seenKeys = new Set<string>()
  const seenLines = new Set<string>()
  for (const { name, keyId, base64, signature } of signatures) {
    const id = identify(name, keyId)
    const line = `${name} ${base64}`
    const candidates = known.get(id)
    if (candidates === undefined) {
      // C2SP: ignore signatures from unknown keys, even if they share a name or a key id with a known key.
      if (!seenLines.has(line)) unverified.push({ name, keyId, base64 })
      seenLines.add(line)
      continue
    }
    const [key, ...others] = candidates
    if (key === undefined || others.length > 0) {
      throw new NoteError("AMBIGUOUS_KEY", `ambiguous key ${name}+${hex8(keyId)}`)
    }
    if (seenLines.has(line)) continue
    seenLines.add(line)
    if (!ed25519.verify(signature, textBytes, key.publicKey)) {
      throw new NoteError("INVALID_SIGNATURE", `invalid signature for key ${name}+${hex8(keyId)}`)
    }
    if (!seenKeys.has(id)) verified.push({ name, keyId, base64 })
    seenKeys.add(id)
  }
  if (verified.length === 0) {
    throw new NoteError("UNVERIFIED", "note has no verifiable signatures", { text, unverified })
  }
  return { text, verified, unverified }
}
