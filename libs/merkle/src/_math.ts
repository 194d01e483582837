// Tree arithmetic on sizes and indices up to 2^53 - 1. JavaScript's bitwise operators truncate to 32 bits, so
// anything that may exceed 2^32 goes through these helpers instead of `>>`, `&` or `Math.log2`.

const TWO_32 = 2 ** 32

/** True for integers in `[0, 2^53)`: the sizes and indices these helpers are exact for. */
export const isUint = (x: number): boolean => Number.isSafeInteger(x) && x >= 0

/** Number of bits needed to write `x` (0 for 0). */
export const bitLength = (x: number): number => {
  if (x < TWO_32) return 32 - Math.clz32(x)
  return 64 - Math.clz32(Math.floor(x / TWO_32))
}

export const isPowerOfTwo = (x: number): boolean => x > 0 && x === 2 ** (bitLength(x) - 1)

/** `log2(x)` for `x` a power of two: the level at which a perfect subtree of `x` leaves sits. */
export const levelOf = (x: number): number => bitLength(x) - 1

/** RFC 9162 2.1.1's `k`: the largest power of two smaller than `n`, for `n > 1`. */
export const splitPoint = (n: number): number => 2 ** (bitLength(n - 1) - 1)

/** RFC 9162's `LSB(x)`: whether the least significant bit is set. */
export const lsb = (x: number): boolean => x % 2 === 1

/** One right shift, exact beyond 32 bits. */
export const shr = (x: number): number => Math.floor(x / 2)
