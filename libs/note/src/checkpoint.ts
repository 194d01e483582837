import { decodeBase64, encodeBase64 } from "@vigil/bytes"
import { isNoteCharacters } from "./encoding.ts"
import { NoteError, type NoteSignature } from "./errors.ts"
import type { SignerKey, VerifierKey } from "./keys.ts"
import { type NoteOptions, openNote, signNote } from "./note.ts"

/** A c2sp.org/tlog-checkpoint body: origin, tree size, RFC 6962 root hash, optional extension lines. */
export interface Checkpoint {
  readonly origin: string
  /** Number of leaves, 0 to 2^64 - 1. */
  readonly size: bigint
  /** The RFC 6962 / 9162 Merkle tree hash at `size`, 32 bytes. */
  readonly rootHash: Uint8Array
  /** Opaque, non-empty lines after the root hash ("NOT RECOMMENDED": monitors cannot audit them). */
  readonly extensions: ReadonlyArray<string>
}

export interface CheckpointInput {
  readonly origin: string
  /** A bigint, or a number that is a safe integer. */
  readonly size: bigint | number
  readonly rootHash: Uint8Array
  readonly extensions?: ReadonlyArray<string>
}

const MAX_TREE_SIZE = 2n ** 64n - 1n
/** ASCII decimal, no leading zeros unless the tree is empty; 2^64 - 1 has 20 digits. */
const TREE_SIZE = /^(?:0|[1-9][0-9]{0,19})$/
const HASH_SIZE = 32

const malformed = (why: string): NoteError => new NoteError("MALFORMED_CHECKPOINT", `malformed checkpoint: ${why}`)

/** A non-empty line of note text: no newline, no other control character, well-formed. */
const isLine = (s: string): boolean => typeof s === "string" && s !== "" && !s.includes("\n") && isNoteCharacters(s)

/** The checkpoint note text: `<origin>\n<size>\n<base64 root>\n` then one `<extension>\n` per extension line. */
export const formatCheckpoint = (checkpoint: CheckpointInput): string => {
  const { origin, size, rootHash, extensions = [] } = checkpoint
  if (!isLine(origin)) throw malformed("origin must be one non-empty line")
  const treeSize = typeof size === "bigint" ? size : Number.isSafeInteger(size) ? BigInt(size) : -1n
  if (treeSize < 0n || treeSize > MAX_TREE_SIZE) throw malformed("tree size must be an integer from 0 to 2^64 - 1")
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== HASH_SIZE) throw malformed("root hash must be 32 bytes")
  for (const line of extensions) if (!isLine(line)) throw malformed("extension lines must be non-empty lines")
  return `${origin}\n${treeSize}\n${encodeBase64(rootHash)}\n${extensions.map((line) => `${line}\n`).join("")}`
}

/** Parses a checkpoint note text strictly: every line ends in "\n", at least three, none empty. */
export const parseCheckpoint = (text: string): Checkpoint => {
  if (!text.endsWith("\n")) throw malformed("must end with a newline")
  if (!isNoteCharacters(text)) throw malformed("ill-formed text or a control character other than newline")
  const [origin, size, root, ...extensions] = text.slice(0, -1).split("\n")
  if (origin === undefined || size === undefined || root === undefined) throw malformed("fewer than three lines")
  if (origin === "") throw malformed("empty origin")
  if (!TREE_SIZE.test(size) || BigInt(size) > MAX_TREE_SIZE) throw malformed(`bad tree size ${JSON.stringify(size)}`)
  const rootHash = decodeBase64(root)
  if (rootHash === undefined || rootHash.length !== HASH_SIZE) throw malformed("root hash must be base64 of 32 bytes")
  if (extensions.includes("")) throw malformed("empty extension line")
  return { origin, size: BigInt(size), rootHash, extensions }
}

/** `signNote(formatCheckpoint(checkpoint), signers)`. C2SP: the log's key name SHOULD be the origin. */
export const signCheckpoint = (
  checkpoint: CheckpointInput,
  signers: ReadonlyArray<SignerKey>,
  options: NoteOptions = {},
): string => signNote(formatCheckpoint(checkpoint), signers, options)

export interface OpenCheckpointOptions extends NoteOptions {
  /** Refuse (`ORIGIN_MISMATCH`) a checkpoint whose origin line is not exactly this. */
  readonly origin?: string
}

export interface OpenedCheckpoint {
  readonly checkpoint: Checkpoint
  readonly verified: ReadonlyArray<NoteSignature>
  readonly unverified: ReadonlyArray<NoteSignature>
}

/**
 * `openNote` then `parseCheckpoint` on its text (and the origin check when asked). Any known key's signature
 * suffices, as in `openNote`: to require the log's own key, pass only it, or check `verified`.
 */
export const openCheckpoint = (
  note: string | Uint8Array,
  verifiers: ReadonlyArray<VerifierKey>,
  options: OpenCheckpointOptions = {},
): OpenedCheckpoint => {
  const { text, verified, unverified } = openNote(note, verifiers, options)
  const checkpoint = parseCheckpoint(text)
  if (options.origin !== undefined && checkpoint.origin !== options.origin) {
    throw new NoteError(
      "ORIGIN_MISMATCH",
      `checkpoint origin ${JSON.stringify(checkpoint.origin)} is not the expected one`,
    )
  }
  return { checkpoint, verified, unverified }
}
