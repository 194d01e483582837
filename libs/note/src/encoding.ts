/** Key names (c2sp.org/signed-note): non-empty, well-formed, no Unicode spaces, no plus (Go `isValidName`). */
export const isValidKeyName = (name: string): boolean =>
  name !== "" && name.isWellFormed() && !/[\p{White_Space}+]/u.test(name)

/**
 * Signed notes "MUST be valid UTF-8 and MUST NOT contain any ASCII control characters (those below U+0020) other
 * than newline". A JS string is UTF-16: ill-formed means a lone surrogate, which has no UTF-8 encoding.
 */
export const isNoteCharacters = (s: string): boolean => {
  if (!s.isWellFormed()) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 && c !== 0x0a) return false
  }
  return true
}

/** `%08x` of a uint32 key id. */
export const hex8 = (keyId: number): string => keyId.toString(16).padStart(8, "0")

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
