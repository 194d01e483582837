import { nobleEd25519, nodeEd25519 } from "@vigil/crypto"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  type CheckpointInput,
  formatCheckpoint,
  openCheckpoint,
  parseCheckpoint,
  signCheckpoint,
} from "./checkpoint.ts"
import { NoteError, type NoteErrorCode } from "./errors.ts"
import { encodeVerifierKey, parseSignerKey, parseVerifierKey, type SignerKey } from "./keys.ts"
import { vectors } from "./vectors.test-support.ts"

const codeOf = (f: () => unknown): NoteErrorCode | "none" => {
  try {
    f()
    return "none"
  } catch (e) {
    if (e instanceof NoteError) return e.code
    throw e
  }
}

const peterSigner = parseSignerKey(vectors.signerKey)
const peter = parseVerifierKey(vectors.verifierKeys.PeterNeumann as string)
const enoch = parseVerifierKey(vectors.verifierKeys.EnochRoot as string)
const ROOT = new Uint8Array(32).map((_, i) => i)
const ROOT64 = Buffer.from(ROOT).toString("base64")
const MAX = 2n ** 64n - 1n

describe("formatCheckpoint / parseCheckpoint", () => {
  it("origin, size, base64 root, extension lines, each ending in a newline", () => {
    const text = formatCheckpoint({ origin: "example.com/log", size: 20852163, rootHash: ROOT, extensions: ["x y"] })
    expect(text).toBe(`example.com/log\n20852163\n${ROOT64}\nx y\n`)
    expect(parseCheckpoint(text)).toEqual({
      origin: "example.com/log",
      size: 20852163n,
      rootHash: ROOT,
      extensions: ["x y"],
    })
  })

  it("size 0 and size 2^64 - 1", () => {
    expect(parseCheckpoint(formatCheckpoint({ origin: "o", size: 0, rootHash: ROOT })).size).toBe(0n)
    expect(parseCheckpoint(`o\n${MAX}\n${ROOT64}\n`).size).toBe(MAX)
  })

  it.each([
    ["no final newline", `o\n1\n${ROOT64}`],
    ["two lines", "o\n1\n"],
    ["empty", ""],
    ["empty origin", `\n1\n${ROOT64}\n`],
    ["leading zero", `o\n01\n${ROOT64}\n`],
    ["00", `o\n00\n${ROOT64}\n`],
    ["plus sign", `o\n+1\n${ROOT64}\n`],
    ["minus sign", `o\n-1\n${ROOT64}\n`],
    ["space in size", `o\n 1\n${ROOT64}\n`],
    ["empty size", `o\n\n${ROOT64}\n`],
    ["hex size", `o\n0x10\n${ROOT64}\n`],
    ["size 2^64", `o\n${MAX + 1n}\n${ROOT64}\n`],
    ["size of 21 digits", `o\n100000000000000000000\n${ROOT64}\n`],
    ["31-byte root", `o\n1\n${Buffer.from(ROOT.subarray(1)).toString("base64")}\n`],
    ["33-byte root", `o\n1\n${Buffer.concat([ROOT, Buffer.from([0])]).toString("base64")}\n`],
    ["unpadded root", `o\n1\n${ROOT64.replace("=", "")}\n`],
    [
      "non-canonical root (pad bits)",
      `o\n1\n${ROOT64.replace(/.=$/, (m) => `${String.fromCharCode((m.charCodeAt(0) as number) + 1)}=`)}\n`,
    ],
    ["base64url root", `o\n1\n${Buffer.from(new Uint8Array(32).fill(0xff)).toString("base64url")}=\n`],
    ["empty root", "o\n1\n\n"],
    ["empty extension line", `o\n1\n${ROOT64}\n\n`],
    ["empty line between extensions", `o\n1\n${ROOT64}\na\n\nb\n`],
    ["carriage return", `o\r\n1\r\n${ROOT64}\r\n`],
    ["a control character in the origin", `o\x01\n1\n${ROOT64}\n`],
  ])("parse refuses %s", (_what, text) => {
    expect(codeOf(() => parseCheckpoint(text))).toBe("MALFORMED_CHECKPOINT")
  })

  const good: CheckpointInput = { origin: "o", size: 1, rootHash: ROOT }
  it.each([
    ["empty origin", { ...good, origin: "" }],
    ["newline in origin", { ...good, origin: "a\nb" }],
    ["control character in origin", { ...good, origin: "a\tb" }],
    ["lone surrogate in origin", { ...good, origin: "a\ud800" }],
    ["negative size", { ...good, size: -1 }],
    ["fractional size", { ...good, size: 1.5 }],
    ["NaN size", { ...good, size: Number.NaN }],
    ["unsafe number size", { ...good, size: 2 ** 53 }],
    ["size 2^64", { ...good, size: MAX + 1n }],
    ["31-byte root", { ...good, rootHash: ROOT.subarray(1) }],
    ["empty extension line", { ...good, extensions: [""] }],
    ["newline in an extension line", { ...good, extensions: ["a\n"] }],
  ] as ReadonlyArray<readonly [string, CheckpointInput]>)("format refuses %s", (_what, input) => {
    expect(codeOf(() => formatCheckpoint(input))).toBe("MALFORMED_CHECKPOINT")
  })

  it("the vectors' note text is not a checkpoint", () => {
    expect(codeOf(() => parseCheckpoint(vectors.text))).toBe("MALFORMED_CHECKPOINT")
    expect(codeOf(() => openCheckpoint(vectors.signedByPeter, [peter]))).toBe("MALFORMED_CHECKPOINT")
  })
})

describe("signCheckpoint / openCheckpoint with the vector keys", () => {
  const checkpoint = { origin: "PeterNeumann", size: 42n, rootHash: ROOT, extensions: [] }

  it.each([
    ["node", nodeEd25519],
    ["noble", nobleEd25519],
  ] as const)("signs with signerKey, opens with verifierKeys.PeterNeumann (%s)", (_impl, ed25519) => {
    const note = signCheckpoint(checkpoint, [peterSigner], { ed25519 })
    expect(note.startsWith(`PeterNeumann\n42\n${ROOT64}\n\n\u2014 PeterNeumann `)).toBe(true)
    const opened = openCheckpoint(note, [peter], { ed25519, origin: "PeterNeumann" })
    expect(opened.checkpoint).toEqual(checkpoint)
    expect(opened.verified.map((s) => [s.name, s.keyId])).toEqual([["PeterNeumann", 0xc74f20a3]])
    expect(opened.unverified).toEqual([])
  })

  it("tolerates a second signer's line as unverified", () => {
    const note = signCheckpoint(checkpoint, [peterSigner])
    const cosigned = `${note}${vectors.enochSignatureLine}`
    const opened = openCheckpoint(cosigned, [peter])
    expect(opened.unverified.map((s) => [s.name, s.keyId])).toEqual([["EnochRoot", 0xaf0cfe78]])
    // Known, EnochRoot's line must verify: it signs the vectors' text, not this checkpoint.
    expect(codeOf(() => openCheckpoint(cosigned, [peter, enoch]))).toBe("INVALID_SIGNATURE")
  })

  it("refuses another origin, an unknown signer and a flipped root", () => {
    const note = signCheckpoint(checkpoint, [peterSigner])
    expect(codeOf(() => openCheckpoint(note, [peter], { origin: "example.com/other" }))).toBe("ORIGIN_MISMATCH")
    expect(codeOf(() => openCheckpoint(note, [enoch]))).toBe("UNVERIFIED")
    const flipped = note.replace(`\n42\n${ROOT64[0]}`, `\n42\n${ROOT64[0] === "A" ? "B" : "A"}`)
    expect(flipped).not.toBe(note)
    expect(codeOf(() => openCheckpoint(flipped, [peter]))).toBe("INVALID_SIGNATURE")
    expect(codeOf(() => openCheckpoint(note.replace("\n42\n", "\n43\n"), [peter]))).toBe("INVALID_SIGNATURE")
  })
})

/** One non-empty line of note text: no newline or other control character. */
const lineArb = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 40 })
  .map((s) => s.replace(/\p{Cc}/gu, ""))
  .filter((s) => s !== "")
const checkpointArb = fc.record({
  origin: lineArb,
  size: fc.bigInt({ min: 0n, max: MAX }),
  rootHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  extensions: fc.array(lineArb, { maxLength: 4 }),
})

describe("properties", () => {
  it("parseCheckpoint(formatCheckpoint(c)) is c", () => {
    fc.assert(
      fc.property(checkpointArb, (c) => {
        expect(parseCheckpoint(formatCheckpoint(c))).toEqual(c)
      }),
      { numRuns: 500 },
    )
  })

  it("a number size formats like its bigint", () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        const c = { origin: "o", rootHash: ROOT }
        expect(formatCheckpoint({ ...c, size: n })).toBe(formatCheckpoint({ ...c, size: BigInt(n) }))
      }),
    )
  })

  it("openCheckpoint(signCheckpoint(c)) is c, signed by a random key", () => {
    fc.assert(
      fc.property(checkpointArb, fc.uint8Array({ minLength: 32, maxLength: 32 }), (c, seed) => {
        const verifier = parseVerifierKey(encodeVerifierKey("example.com/log", nodeEd25519.publicKey(seed)))
        const signer: SignerKey = { ...verifier, seed }
        const opened = openCheckpoint(signCheckpoint(c, [signer]), [verifier], { origin: c.origin })
        expect(opened.checkpoint).toEqual(c)
        expect(opened.verified).toHaveLength(1)
      }),
      { numRuns: 200 },
    )
  })
})
