/**
 * Byte-string helpers shared by every lib. A leaf: it depends on nothing but Node's `Buffer`, so the lowest libs
 * (merkle, note) can use it without a cycle.
 */

/** Above this length `Buffer.equals` (memcmp) beats a JS loop; below it, making the two Buffer views costs more. */
const NATIVE_COMPARE_FROM = 256

/** Byte-wise equality. Not constant-time: for hashes, roots, proofs and encodings, never for secrets. */
export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  if (a.length >= NATIVE_COMPARE_FROM) {
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** A copy that owns its bytes. Not `x.slice()`: on a Buffer that is a view of the same memory. */
export const copyBytes = (x: Uint8Array): Uint8Array => new Uint8Array(x)

/** Lower-case hex, two digits a byte. */
export const toHex = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex")

/** The bytes of a hex string (either case). Lenient like `Buffer`: for test vectors and constants, not for input. */
export const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, "hex"))

/** RFC 4648 section 4 base64, padded. */
export const encodeBase64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

const BASE64_STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * RFC 4648 section 4 base64, canonical only: padded, no whitespace, zero pad bits; `undefined` for anything else.
 * Go's `StdEncoding` would also take non-zero pad bits (and skip CR/LF); refusing them keeps one byte string per
 * encoding, so a flipped character can never decode to the same bytes (a signature, a root).
 */
export const decodeBase64 = (s: string): Uint8Array | undefined => {
  if (!BASE64_STD.test(s)) return undefined
  const bytes = Buffer.from(s, "base64")
  if (bytes.toString("base64") !== s) return undefined
  return new Uint8Array(bytes)
}
