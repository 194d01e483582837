import canonicalize from "canonicalize"

/**
 * UTF-8 bytes of `text` as a plain Uint8Array. `Buffer.from` copies into Node's shared allocation pool;
 * `TextEncoder.encode` allocates a fresh ArrayBuffer per call, ~1 µs each on these machines plus the GC work to
 * free it, which every event paid two or three times. A view, not the Buffer itself, so callers and tests see the
 * same type as before.
 */
const utf8 = (text: string): Uint8Array => {
  const b = Buffer.from(text, "utf8")
  return new Uint8Array(b.buffer, b.byteOffset, b.length)
}

/**
 * RFC 8785 (JCS) canonical JSON text of a JSON value.
 * Signatures, Merkle leaves and content hashes are all computed over these exact bytes, so two services that
 * serialise the same event with different key orders still agree on one byte string.
 * @example canonicalJson({ b: 1, a: "é" }) // '{"a":"é","b":1}'
 */
export const canonicalJson = (value: unknown): string => {
  const text = canonicalize(value)
  // canonicalize returns undefined for values JSON cannot represent (undefined, functions, symbols).
  if (text === undefined) throw new TypeError("value has no JSON representation")
  return text
}

/** UTF-8 bytes of {@link canonicalJson}. */
export const canonicalBytes = (value: unknown): Uint8Array => utf8(canonicalJson(value))

/**
 * `context` (one line naming the structure and its version) followed by the canonical bytes of `value`: what Vigil
 * signs. The prefix separates domains, so a signature over one kind of structure (an event, a key manifest) can
 * never be presented as a signature over another.
 */
export const contextBytes = (context: string, value: unknown): Uint8Array => utf8(`${context}\n${canonicalJson(value)}`)
