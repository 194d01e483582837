import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { canonicalBytes, canonicalJson } from "./canonical.ts"

/** The IEEE 754 binary64 value with these 16 hex digits (big-endian bit pattern, as RFC 8785 Appendix B writes them). */
const ieee754 = (hex: string): number => {
  const view = new DataView(new ArrayBuffer(8))
  view.setBigUint64(0, BigInt(`0x${hex}`))
  return view.getFloat64(0)
}

/** Rebuild a JSON value with every object's keys inserted in a pseudo-random order (seeded, so shrinking works). */
const shuffleKeys = (value: unknown, seed: number): unknown => {
  let state = seed >>> 0 || 1
  const next = () => {
    // xorshift32
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 2 ** 32
  }
  const go = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(go)
    if (typeof v !== "object" || v === null) return v
    const entries = Object.entries(v)
    for (let i = entries.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1))
      ;[entries[i], entries[j]] = [entries[j] as [string, unknown], entries[i] as [string, unknown]]
    }
    const out: Record<string, unknown> = {}
    for (const [k, x] of entries) Object.defineProperty(out, k, { value: go(x), enumerable: true, writable: true })
    return out
  }
  return go(value)
}

// Well-formed Unicode keys and strings (lone surrogates are not I-JSON; see the string tests below).
const jsonObject = fc.dictionary(
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.jsonValue({ stringUnit: "grapheme" }),
  {
    maxKeys: 8,
  },
)

describe("canonicalJson: RFC 8785 property ordering (section 3.2.3)", () => {
  it("gives identical bytes for every key-order permutation of a random JSON object", () => {
    fc.assert(
      fc.property(jsonObject, fc.integer(), fc.integer(), (value, s1, s2) => {
        const a = canonicalBytes(shuffleKeys(value, s1))
        const b = canonicalBytes(shuffleKeys(value, s2))
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true)
        expect(Buffer.from(a).equals(Buffer.from(canonicalBytes(value)))).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it("round-trips: parsing canonical text gives the same value, and canonicalising again is the identity", () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: "grapheme" }), (value) => {
        const text = canonicalJson(value)
        expect(JSON.parse(text)).toStrictEqual(JSON.parse(JSON.stringify(value)))
        expect(canonicalJson(JSON.parse(text))).toBe(text)
      }),
      { numRuns: 300 },
    )
  })

  it("emits no insignificant whitespace (section 3.2.1)", () => {
    expect(canonicalJson({ b: [1, 2, { c: null }], a: { " ": " " } })).toBe('{"a":{" ":" "},"b":[1,2,{"c":null}]}')
  })

  it("sorts keys by UTF-16 code units: the section 3.2.3 example", () => {
    // RFC 8785 section 3.2.3: property names sorted as arrays of UTF-16 code units, so "\ud83d\ude00" (U+1F600, high
    // surrogate 0xD83D) sorts before "\ufb33" although its code point is larger.
    const input = JSON.parse(`{
      "\\u20ac": "Euro Sign",
      "\\r": "Carriage Return",
      "\\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\\ud83d\\ude00": "Emoji: Grinning Face",
      "\\u0080": "Control",
      "\\u00f6": "Latin Small Letter O With Diaeresis"
    }`)
    // Read the order from the text: re-parsing would move the integer-like key "1" first.
    const order = [...canonicalJson(input).matchAll(/":"([^"]+)"/gu)].map((m) => m[1])
    expect(order).toEqual([
      "Carriage Return",
      "One",
      "Control",
      "Latin Small Letter O With Diaeresis",
      "Euro Sign",
      "Emoji: Grinning Face",
      "Hebrew Letter Dalet With Dagesh",
    ])
    expect(canonicalJson(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    )
  })

  it("sorts nested objects too, but never reorders arrays", () => {
    expect(canonicalJson({ z: [{ b: 1, a: 2 }, 3], a: { y: 1, x: 2 } })).toBe(
      '{"a":{"x":2,"y":1},"z":[{"a":2,"b":1},3]}',
    )
  })
})

describe("canonicalJson: RFC 8785 number serialisation (section 3.2.2.3, ECMAScript Number.prototype.toString)", () => {
  it.each([
    [1e30, "1e+30"],
    [4.5, "4.5"],
    [2e-3, "0.002"],
    [0.000001, "0.000001"],
    [1e-7, "1e-7"],
    [1e-27, "1e-27"],
    [1e21, "1e+21"],
    [1e20, "100000000000000000000"],
    [-0, "0"],
    [0, "0"],
    [-1, "-1"],
  ])("%s → %s", (value, text) => {
    expect(canonicalJson(value)).toBe(text)
  })

  it("parses number literals as IEEE 754 doubles first (4.50 and 4.5 are one value)", () => {
    expect(canonicalJson(JSON.parse("[4.50, 1E30, 2e-3, -0.0, 10.0]"))).toBe("[4.5,1e+30,0.002,0,10]")
    // The section 3.2.2 sample's 333333333.33333329 has more digits than a double keeps.
    expect(canonicalJson(JSON.parse("333333333.33333329"))).toBe("333333333.3333333")
  })

  // RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
  it.each([
    ["0000000000000000", "0"], // zero
    ["8000000000000000", "0"], // minus zero
    ["0000000000000001", "5e-324"], // min pos number
    ["8000000000000001", "-5e-324"], // min neg number
    ["7fefffffffffffff", "1.7976931348623157e+308"], // max pos number
    ["ffefffffffffffff", "-1.7976931348623157e+308"], // max neg number
    ["4340000000000000", "9007199254740992"], // max pos int
    ["c340000000000000", "-9007199254740992"], // max neg int
    ["4430000000000000", "295147905179352830000"], // ~2**68
    ["44b52d02c7e14af5", "9.999999999999997e+22"],
    ["44b52d02c7e14af6", "1e+23"],
    ["44b52d02c7e14af7", "1.0000000000000001e+23"],
    ["444b1ae4d6e2ef4e", "999999999999999700000"],
    ["444b1ae4d6e2ef4f", "999999999999999900000"],
    ["444b1ae4d6e2ef50", "1e+21"],
    ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
    ["3eb0c6f7a0b5ed8d", "0.000001"],
    ["41b3de4355555553", "333333333.3333332"],
    ["41b3de4355555554", "333333333.33333325"],
    ["41b3de4355555555", "333333333.3333333"],
    ["41b3de4355555556", "333333333.3333334"],
    ["41b3de4355555557", "333333333.33333343"],
    ["becbf647612f3696", "-0.0000033333333333333333"],
    ["43143ff3c1cb0959", "1424953923781206.2"], // round to even
  ])("Appendix B: %s → %s", (hex, text) => {
    expect(canonicalJson(ieee754(hex))).toBe(text)
    expect(canonicalJson([ieee754(hex)])).toBe(`[${text}]`)
  })

  it("refuses NaN and Infinity, which JSON cannot represent (Appendix B notes 3; section 3.2.2.3)", () => {
    expect(() => canonicalJson(ieee754("7fffffffffffffff"))).toThrow()
    expect(() => canonicalJson(ieee754("7ff0000000000000"))).toThrow()
    expect(() => canonicalJson({ a: Number.NEGATIVE_INFINITY })).toThrow()
  })
})

describe("canonicalJson: RFC 8785 string serialisation (section 3.2.2.2)", () => {
  it("keeps non-ASCII characters literal and UTF-8 encodes them", () => {
    expect(canonicalJson("\u20ac")).toBe('"€"')
    expect(Buffer.from(canonicalBytes("\u20ac")).toString("hex")).toBe("22e282ac22")
    expect(Buffer.from(canonicalBytes("\ud83d\ude00")).toString("hex")).toBe("22f09f988022")
    // Outside the U+0000..U+001F range everything is "as is", including DEL, U+2028 and U+2029.
    expect(canonicalJson("\u007f\u0080\u2028\u2029")).toBe('"\u007f\u0080\u2028\u2029"')
  })

  it("writes the five short escapes and lowercase \\u00hh for the other control characters", () => {
    expect(canonicalJson("\b\t\n\f\r")).toBe('"\\b\\t\\n\\f\\r"')
    expect(canonicalJson("\u000f")).toBe('"\\u000f"')
    expect(canonicalJson("\u001f")).toBe('"\\u001f"')
    expect(canonicalJson("\u0000")).toBe('"\\u0000"')
    expect(canonicalJson("\u000b")).toBe('"\\u000b"')
    for (let c = 0; c < 0x20; c++) {
      const out = canonicalJson(String.fromCharCode(c))
      const short = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" }[c]
      expect(out).toBe(`"${short ?? `\\u${c.toString(16).padStart(4, "0")}`}"`)
    }
  })

  it('escapes only " and \\ among printable ASCII; "/" stays as is', () => {
    expect(canonicalJson('a"b\\c/d')).toBe('"a\\"b\\\\c/d"')
  })

  it("matches the section 3.2.2 sample's string and numbers", () => {
    // RFC 8785 section 3.2.2 (sample input) and 3.2.4 (its canonical output).
    const input = JSON.parse(`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\"\\/",
      "literals": [null, true, false]
    }`)
    expect(canonicalJson(input)).toBe(
      `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA'B\\"\\\\\\\\\\"/"}`,
    )
  })

  it("refuses lone surrogates, which are not I-JSON (RFC 8785 section 3.1 via RFC 7493 section 2.1)", () => {
    expect(() => canonicalJson("\ud800")).toThrow()
    expect(() => canonicalJson("a\udc00b")).toThrow()
    expect(() => canonicalJson({ "\ude00": 1 })).toThrow()
    expect(() => canonicalJson(["\ud83d"])).toThrow()
    // A proper pair is fine.
    expect(canonicalJson("\ud83d\ude00")).toBe('"😀"')
  })

  it("refuses values with no JSON representation", () => {
    expect(() => canonicalJson(undefined)).toThrow(TypeError)
    expect(() => canonicalJson(() => 1)).toThrow(TypeError)
  })
})
