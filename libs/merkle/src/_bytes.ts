/** Byte-wise equality. Roots and proofs are public, so this need not be constant-time. */
export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** A copy that owns its bytes. Not `x.slice()`: on a Buffer that is a view of the same memory. */
export const copyBytes = (x: Uint8Array): Uint8Array => new Uint8Array(x)
