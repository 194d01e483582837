import { type Ed25519, nobleEd25519, nodeEd25519 } from "@vigil/crypto"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { NoteError, type NoteErrorCode } from "./errors.ts"
import { encodeVerifierKey, parseSignerKey, parseVerifierKey, type SignerKey, type VerifierKey } from "./keys.ts"
import { MAX_SIGNATURES, openNote, signNote } from "./note.ts"
import { vectors } from "./vectors.test-support.ts"

const IMPLEMENTATIONS: ReadonlyArray<readonly [string, Ed25519]> = [
  ["node", nodeEd25519],
  ["noble", nobleEd25519],
]

const { text, signedByPeter, enochSignatureLine: enochLine } = vectors
const peterLine = signedByPeter.slice(text.length + 1)
const peterSigner: SignerKey = parseSignerKey(vectors.signerKey)
const peter: VerifierKey = parseVerifierKey(vectors.verifierKeys.PeterNeumann as string)
const enoch: VerifierKey = parseVerifierKey(vectors.verifierKeys.EnochRoot as string)
const base64Of = (line: string): string => line.slice(line.lastIndexOf(" ") + 1, -1)
const PETER = { name: "PeterNeumann", keyId: 0xc74f20a3, base64: base64Of(peterLine) }
const ENOCH = { name: "EnochRoot", keyId: 0xaf0cfe78, base64: base64Of(enochLine) }

const errorOf = (f: () => unknown): NoteError => {
  try {
    f()
  } catch (e) {
    if (e instanceof NoteError) return e
    throw e
  }
  throw new Error("expected a NoteError, nothing was thrown")
}
const codeOf = (f: () => unknown): NoteErrorCode | "none" => {
  try {
    f()
    return "none"
  } catch (e) {
    if (e instanceof NoteError) return e.code
    throw e
  }
}

/** Go slices strings by byte: `peterSig[:60] + "ABCD" + peterSig[60:]`. */
const insertAtByte = (s: string, at: number, insert: string): string => {
  const b = Buffer.from(s, "utf8")
  return Buffer.concat([b.subarray(0, at), Buffer.from(insert, "utf8"), b.subarray(at)]).toString("utf8")
}

describe("signed-note.json text", () => {
  it.each(IMPLEMENTATIONS)("signed with signerKey (%s) is signedByPeter, byte for byte", (_impl, ed25519) => {
    expect(signNote(text, [peterSigner], { ed25519 })).toBe(signedByPeter)
  })
})

describe("signed-note.json signedByPeter", () => {
  it("is text, a blank line, one signature line", () => {
    expect(signedByPeter).toBe(`${text}\n${peterLine}`)
    expect(peterLine.startsWith("\u2014 PeterNeumann ")).toBe(true)
  })

  it.each(IMPLEMENTATIONS)("opens (%s) with verifierKeys.PeterNeumann, as a string and as bytes", (_impl, ed25519) => {
    for (const note of [signedByPeter, new TextEncoder().encode(signedByPeter)]) {
      expect(openNote(note, [peter], { ed25519 })).toEqual({ text, verified: [PETER], unverified: [] })
    }
  })

  it("opens with verifierKeys in any order (EnochRoot known but absent)", () => {
    expect(openNote(signedByPeter, [enoch, peter])).toEqual({ text, verified: [PETER], unverified: [] })
  })

  it("with no verifiers → UNVERIFIED, the parsed note on the error", () => {
    const e = errorOf(() => openNote(signedByPeter, []))
    expect(e.code).toBe("UNVERIFIED")
    expect(e.note).toEqual({ text, unverified: [PETER] })
  })

  it("with only verifierKeys.EnochRoot → UNVERIFIED", () => {
    expect(codeOf(() => openNote(signedByPeter, [enoch]))).toBe("UNVERIFIED")
  })
})

describe("signed-note.json enochSignatureLine", () => {
  const both = `${text}\n${peterLine}${enochLine}`

  it("verifies text under verifierKeys.EnochRoot", () => {
    expect(openNote(`${text}\n${enochLine}`, [enoch])).toEqual({ text, verified: [ENOCH], unverified: [] })
  })

  it("is tolerated as unverified next to PeterNeumann's signature", () => {
    expect(openNote(both, [peter])).toEqual({ text, verified: [PETER], unverified: [ENOCH] })
    expect(openNote(`${text}\n${enochLine}${peterLine}`, [peter])).toEqual({
      text,
      verified: [PETER],
      unverified: [ENOCH],
    })
  })

  it("both known → both verified, in note order", () => {
    expect(openNote(both, [peter, enoch])).toEqual({ text, verified: [PETER, ENOCH], unverified: [] })
    expect(openNote(`${text}\n${enochLine}${peterLine}`, [enoch, peter]).verified).toEqual([ENOCH, PETER])
  })

  it("neither known → UNVERIFIED carrying both", () => {
    const e = errorOf(() => openNote(both, []))
    expect(e.code).toBe("UNVERIFIED")
    expect(e.note?.unverified).toEqual([PETER, ENOCH])
  })

  it("a duplicated known verifier is ambiguous only when a signature names it (Go VerifierList)", () => {
    expect(errorOf(() => openNote(`${text}\n${enochLine}`, [enoch, peter, enoch])).message).toBe(
      "ambiguous key EnochRoot+af0cfe78",
    )
    expect(codeOf(() => openNote(`${text}\n${enochLine}`, [enoch, peter, enoch]))).toBe("AMBIGUOUS_KEY")
    expect(openNote(signedByPeter, [enoch, peter, enoch]).verified).toEqual([PETER])
  })

  it("repeated lines are listed once; a different unknown signature by the same key is kept (Go TestOpen)", () => {
    const enochABCD = insertAtByte(enochLine, 60, "ABCD")
    const note = `${text}\n${peterLine}${peterLine}${enochLine}${enochLine}${enochABCD}`
    expect(openNote(note, [peter])).toEqual({
      text,
      verified: [PETER],
      unverified: [ENOCH, { ...ENOCH, base64: base64Of(enochABCD) }],
    })
  })
})

/** How each refusal the vector file describes is built from its own text and signature lines. */
const MALFORMED_SHAPES: Readonly<Record<string, ReadonlyArray<string>>> = {
  "note text without the blank line and signature block": [text, `${text}\n`, `${text}${peterLine}`, `${text}\n\n`],
  "a signature line with a space or '+' in the key name": [
    `${text}\n${peterLine.replace("PeterNeumann", "Bad Name")}`,
    `${text}\n${peterLine.replace("PeterNeumann", "Bad Name").slice(0, -1)}`,
    `${text}\n${peterLine.replace("PeterNeumann", "Peter+Neumann")}`,
    `${text}\n${peterLine.replace("PeterNeumann", "Peter\u00a0Neumann")}`,
    `${text}\n${peterLine.replace("PeterNeumann", "Peter\u2003Neumann")}`,
    `${text}\n${peterLine}${enochLine.replace("EnochRoot", "Enoch+Root")}`,
  ],
  "an unexpected line after the signature lines": [
    `${signedByPeter}Unexpected line.\n`,
    `${signedByPeter}Unexpected line.`,
    `${signedByPeter}\n`,
    `${signedByPeter}\u2014\n`,
  ],
  "more than 100 signature lines": [
    `${text}\n${peterLine.repeat(MAX_SIGNATURES + 1)}`,
    `${text}\n${peterLine.repeat(MAX_SIGNATURES)}${enochLine}`,
  ],
}

describe("signed-note.json malformed", () => {
  it.each(vectors.malformed)("%s → MALFORMED", (description) => {
    const notes = MALFORMED_SHAPES[description]
    if (notes === undefined) throw new Error(`no construction for the vector entry ${JSON.stringify(description)}`)
    for (const note of notes) {
      for (const verifiers of [[peter], [peter, enoch], []]) {
        const e = errorOf(() => openNote(note, verifiers))
        expect({ note, code: e.code }).toEqual({ note, code: "MALFORMED" })
      }
    }
  })

  it("every construction above answers a vector entry", () => {
    expect(Object.keys(MALFORMED_SHAPES).sort()).toEqual([...vectors.malformed].sort())
  })

  it(`exactly ${MAX_SIGNATURES} signature lines are accepted`, () => {
    expect(openNote(`${text}\n${peterLine.repeat(MAX_SIGNATURES)}`, [peter]).verified).toEqual([PETER])
    expect(openNote(`${text}\n${peterLine.repeat(MAX_SIGNATURES - 1)}${enochLine}`, [peter]).unverified).toEqual([
      ENOCH,
    ])
  })
})

describe("more malformed shapes, built from signedByPeter", () => {
  const bytes = (prefix: number[], s: string): Uint8Array => new Uint8Array([...prefix, ...new TextEncoder().encode(s)])
  const cases: ReadonlyArray<readonly [string, string | Uint8Array]> = [
    ["no final newline", signedByPeter.slice(0, -1)],
    ["0x01 before the text (Go TestOpen)", `\x01${signedByPeter}`],
    ["0xff before the text: invalid UTF-8 (Go TestOpen)", bytes([0xff], signedByPeter)],
    ["overlong UTF-8 '/'", bytes([0xc0, 0xaf], signedByPeter)],
    ["UTF-8 of a surrogate", bytes([0xed, 0xa0, 0x80], signedByPeter)],
    ["a lone surrogate in a string", `\ud800${signedByPeter}`],
    ["Windows line endings", signedByPeter.replaceAll("\n", "\r\n")],
    ["a tab in the text", `\t${signedByPeter}`],
    ["a NUL in the text", `\0${signedByPeter}`],
    ["a hyphen instead of the em dash", signedByPeter.replace("\u2014", "-")],
    ["an en dash instead of the em dash", signedByPeter.replace("\u2014", "\u2013")],
    ["no space after the em dash", signedByPeter.replace("\u2014 ", "\u2014")],
    ["empty key name", signedByPeter.replace("PeterNeumann", "")],
    ["no signature after the name", `${text}\n\u2014 PeterNeumann\n`],
    ["empty signature", `${text}\n\u2014 PeterNeumann \n`],
    ["two spaces before the signature", signedByPeter.replace("PeterNeumann ", "PeterNeumann  ")],
    ["a trailing space", `${signedByPeter.slice(0, -1)} \n`],
    ["signature under 5 bytes", `${text}\n\u2014 PeterNeumann x08gow==\n`],
    ["non-canonical base64 (non-zero pad bits)", signedByPeter.replace("AM=\n", "AN=\n")],
    ["base64 without its padding", signedByPeter.replace("=\n", "\n")],
    ["base64url alphabet", signedByPeter.replace("/", "_")],
  ]
  it.each(cases)("%s → MALFORMED", (_what, note) => {
    expect(codeOf(() => openNote(note, [peter]))).toBe("MALFORMED")
  })

  it("maxNoteBytes refuses a note one byte too long", () => {
    const size = Buffer.byteLength(signedByPeter)
    expect(openNote(signedByPeter, [peter], { maxNoteBytes: size }).verified).toEqual([PETER])
    expect(codeOf(() => openNote(signedByPeter, [peter], { maxNoteBytes: size - 1 }))).toBe("MALFORMED")
    expect(codeOf(() => openNote(Buffer.from(signedByPeter), [peter], { maxNoteBytes: size - 1 }))).toBe("MALFORMED")
  })
})

describe("signatures by known keys must verify", () => {
  it("Go TestOpen: 'ABCD' inserted at byte 60 of the signature line → INVALID_SIGNATURE", () => {
    const e = errorOf(() => openNote(`${text}\n${insertAtByte(peterLine, 60, "ABCD")}`, [peter]))
    expect(e.code).toBe("INVALID_SIGNATURE")
    expect(e.message).toBe("invalid signature for key PeterNeumann+c74f20a3")
  })

  it("a bad signature after a good one by the same key → INVALID_SIGNATURE (Go would drop it unchecked)", () => {
    const bad = `${text}\n${peterLine}${insertAtByte(peterLine, 60, "ABCD")}`
    expect(codeOf(() => openNote(bad, [peter]))).toBe("INVALID_SIGNATURE")
  })

  it("a known name and key id with another public key → INVALID_SIGNATURE", () => {
    const impostor: VerifierKey = { name: peter.name, keyId: peter.keyId, publicKey: enoch.publicKey }
    expect(codeOf(() => openNote(signedByPeter, [impostor]))).toBe("INVALID_SIGNATURE")
  })

  it("same name, other key id → the signature is unknown, not invalid (C2SP)", () => {
    const renamed = parseVerifierKey(encodeVerifierKey("PeterNeumann", enoch.publicKey))
    expect(renamed.keyId).not.toBe(peter.keyId)
    expect(codeOf(() => openNote(signedByPeter, [renamed]))).toBe("UNVERIFIED")
    const otherName: VerifierKey = { ...peter, name: "PeterNeumannJr" }
    expect(codeOf(() => openNote(signedByPeter, [otherName]))).toBe("UNVERIFIED")
  })

  it.each(IMPLEMENTATIONS)("every single-bit flip anywhere in signedByPeter is refused (%s)", (_impl, ed25519) => {
    const good = Buffer.from(signedByPeter, "utf8")
    const accepted: string[] = []
    const codes = new Set<string>()
    for (let i = 0; i < good.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Uint8Array.from(good)
        bad[i] = (bad[i] as number) ^ (1 << bit)
        const code = codeOf(() => openNote(bad, [peter, enoch], { ed25519 }))
        if (code === "none") accepted.push(`byte ${i} bit ${bit}`)
        codes.add(code)
      }
    }
    expect(accepted).toEqual([])
    expect([...codes].sort()).toEqual(["INVALID_SIGNATURE", "MALFORMED", "UNVERIFIED"])
  })
})

describe("signNote refuses what a verifier would refuse", () => {
  it.each([
    ["no final newline (Go TestSign)", "abc"],
    ["empty", ""],
    ["a carriage return", "a\r\n"],
    ["a NUL", "a\0\n"],
    ["a lone surrogate", "\udc00\n"],
  ])("text with %s → MALFORMED", (_what, t) => {
    expect(codeOf(() => signNote(t, [peterSigner]))).toBe("MALFORMED")
  })

  it("a signer with an invalid name, or no signer → INVALID_SIGNER (Go TestSign)", () => {
    expect(codeOf(() => signNote(text, [{ ...peterSigner, name: "bad name" }]))).toBe("INVALID_SIGNER")
    expect(codeOf(() => signNote(text, [{ ...peterSigner, name: "bad\x01name" }]))).toBe("INVALID_SIGNER")
    expect(codeOf(() => signNote(text, []))).toBe("INVALID_SIGNER")
  })
})

const keyNameArb = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 24 })
  .filter((s) => s.isWellFormed() && !/[\p{White_Space}+\p{Cc}]/u.test(s))
const seedArb = fc.uint8Array({ minLength: 32, maxLength: 32 })
/** Note texts: lines, blank ones included, each ending in "\n", no control characters. */
const textArb = fc
  .array(
    fc.string({ unit: "grapheme", maxLength: 40 }).map((s) => s.replace(/\p{Cc}/gu, "")),
    { minLength: 1, maxLength: 6 },
  )
  .map((lines) => lines.map((l) => `${l}\n`).join(""))
const signerFrom = ([name, seed]: [string, Uint8Array]): SignerKey => {
  const publicKey = nodeEd25519.publicKey(seed)
  const v = parseVerifierKey(encodeVerifierKey(name, publicKey))
  return { ...v, seed }
}

describe("properties", () => {
  it("noble and node:crypto sign identically and accept each other's notes", () => {
    fc.assert(
      fc.property(textArb, keyNameArb, seedArb, (t, name, seed) => {
        const signer = signerFrom([name, seed])
        const byNode = signNote(t, [signer], { ed25519: nodeEd25519 })
        const byNoble = signNote(t, [signer], { ed25519: nobleEd25519 })
        expect(byNoble).toBe(byNode)
        expect(openNote(byNode, [signer], { ed25519: nobleEd25519 }).text).toBe(t)
        expect(openNote(byNoble, [signer], { ed25519: nodeEd25519 }).text).toBe(t)
      }),
      { numRuns: 100 },
    )
  })

  it("signNote then openNote: the text back, known signers verified in order, the rest unverified", () => {
    fc.assert(
      fc.property(
        textArb,
        fc.uniqueArray(fc.tuple(keyNameArb, seedArb), { minLength: 1, maxLength: 4, selector: ([n]) => n }),
        fc.nat(),
        (t, keys, pick) => {
          const signers = keys.map(signerFrom)
          const note = signNote(t, signers)
          const known = signers.filter((_, i) => i === pick % signers.length || (pick >> (i + 2)) % 2 === 1)
          const opened = openNote(note, known)
          expect(opened.text).toBe(t)
          expect(opened.verified.map((s) => s.name)).toEqual(known.map((s) => s.name))
          expect(opened.unverified.map((s) => s.name)).toEqual(
            signers.filter((s) => !known.includes(s)).map((s) => s.name),
          )
        },
      ),
      { numRuns: 100 },
    )
  })
})
