import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { copyBytes, decodeBase64, encodeBase64, equalBytes, fromHex, toHex } from "./bytes.ts"

describe("equalBytes", () => {
  it("agrees with Buffer.equals on both sides of the native-compare threshold, on views too", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(600), fc.nat(7), (bytes, at, offset) => {
        const backing = new Uint8Array(offset + bytes.length)
        backing.set(bytes, offset)
        const view = backing.subarray(offset)
        expect(equalBytes(bytes, view)).toBe(true)
        if (bytes.length > 0) {
          const other = copyBytes(bytes)
          other[at % bytes.length]! ^= 1
          expect(equalBytes(view, other)).toBe(false)
        }
        expect(equalBytes(bytes, new Uint8Array([...bytes, 0]))).toBe(false)
      }),
    )
  })
})

describe("hex and base64", () => {
  it("round-trip", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(fromHex(toHex(bytes))).toEqual(bytes)
        expect(decodeBase64(encodeBase64(bytes))).toEqual(bytes)
      }),
    )
  })

  it("decodes canonical base64 only: padded, no whitespace, zero pad bits", () => {
    expect(decodeBase64("AAE=")).toEqual(new Uint8Array([0, 1]))
    for (const bad of ["AAE", "AAF=", "AA E=", "AAE=\n", "AA-_", "A"]) expect(decodeBase64(bad), bad).toBeUndefined()
  })
})
