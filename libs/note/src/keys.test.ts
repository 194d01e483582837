import { createHash } from "node:crypto"
import { type Ed25519, nobleEd25519, nodeEd25519 } from "@vigil/crypto"
import { describe, expect, it } from "vitest"
import { NoteError, type NoteErrorCode } from "./errors.ts"
import {
  encodeSignerKey,
  encodeVerifierKey,
  generateSignerKey,
  keyId,
  parseSignerKey,
  parseVerifierKey,
} from "./keys.ts"
import { openNote, signNote } from "./note.ts"
import { vectors } from "./vectors.test-support.ts"

const IMPLEMENTATIONS: ReadonlyArray<readonly [string, Ed25519]> = [
  ["node", nodeEd25519],
  ["noble", nobleEd25519],
]

const codeOf = (f: () => unknown): NoteErrorCode | "none" => {
  try {
    f()
    return "none"
  } catch (e) {
    if (e instanceof NoteError) return e.code
    throw e
  }
}

/** The key id written in a key string, read with no help from the code under test. */
const writtenKeyId = (key: string): number =>
  Number.parseInt(key.split("+")[key.startsWith("PRIVATE+KEY+") ? 3 : 1] as string, 16)

/** SHA-256(name || 0x0A || 0x01 || publicKey)[:4] with node:crypto, independent of keys.ts. */
const referenceKeyId = (name: string, publicKey: Uint8Array): number =>
  createHash("sha256")
    .update(name)
    .update(Buffer.from([0x0a, 0x01]))
    .update(publicKey)
    .digest()
    .readUInt32BE(0)

/** golang/mod note_test.go: every proper substring and every single-byte increment of a good key must be refused. */
const manglings = (key: string): string[] => {
  const b = Buffer.from(key, "latin1")
  const out: string[] = []
  for (let i = 0; i <= b.length; i++) {
    for (let j = i + 1; j <= b.length; j++) if (i !== 0 || j !== b.length) out.push(b.subarray(i, j).toString("latin1"))
  }
  for (let i = 0; i < b.length; i++) {
    const c = Buffer.from(b)
    c[i] = ((c[i] as number) + 1) & 0xff
    out.push(c.toString("latin1"))
  }
  return out
}

describe.each(Object.entries(vectors.verifierKeys))("signed-note.json verifierKeys.%s", (name, vkey) => {
  it("parses to its name, written key id and a 32-byte Ed25519 key", () => {
    const v = parseVerifierKey(vkey)
    expect(v.name).toBe(name)
    expect(v.publicKey).toHaveLength(32)
    expect(v.keyId).toBe(writtenKeyId(vkey))
  })

  it("key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]", () => {
    const v = parseVerifierKey(vkey)
    expect(keyId(name, v.publicKey)).toBe(referenceKeyId(name, v.publicKey))
    expect(keyId(name, v.publicKey)).toBe(writtenKeyId(vkey))
  })

  it("re-encodes to the same string", () => {
    expect(encodeVerifierKey(name, parseVerifierKey(vkey).publicKey)).toBe(vkey)
  })

  it("refuses every proper substring and every single-byte increment", () => {
    const accepted = manglings(vkey).filter((k) => codeOf(() => parseVerifierKey(k)) === "none")
    expect(accepted).toEqual([])
  })
})

describe("signed-note.json signerKey", () => {
  it.each(IMPLEMENTATIONS)("parses (%s) to PeterNeumann's verifier key", (_impl, ed25519) => {
    const signer = parseSignerKey(vectors.signerKey, ed25519)
    const peter = parseVerifierKey(vectors.verifierKeys.PeterNeumann as string)
    expect(signer.name).toBe("PeterNeumann")
    expect(signer.keyId).toBe(writtenKeyId(vectors.signerKey))
    expect(signer.keyId).toBe(peter.keyId)
    expect(signer.publicKey).toEqual(peter.publicKey)
    expect(signer.seed).toHaveLength(32)
  })

  it.each(IMPLEMENTATIONS)("re-encodes (%s) to the same string", (_impl, ed25519) => {
    const signer = parseSignerKey(vectors.signerKey, ed25519)
    expect(encodeSignerKey(signer.name, signer.seed, ed25519)).toBe(vectors.signerKey)
  })

  it("refuses every proper substring and every single-byte increment", () => {
    const accepted = manglings(vectors.signerKey).filter((k) => codeOf(() => parseSignerKey(k)) === "none")
    expect(accepted).toEqual([])
  })
})

describe("key strings: which refusal", () => {
  const peter = vectors.verifierKeys.PeterNeumann as string
  const [, hash, key64] = peter.split("+") as [string, string, string]

  // golang/mod note_test.go TestNewVerifier: the key id is checked before the length and the type byte.
  const cases: ReadonlyArray<readonly [what: string, code: NoteErrorCode, key: string]> = [
    [
      "33-byte key with its key id adjusted",
      "MALFORMED_KEY",
      "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    ],
    [
      "type byte 0x65 with its key id adjusted",
      "UNKNOWN_ALGORITHM",
      "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
    ["another key id", "KEY_ID_MISMATCH", `PeterNeumann+c74f20a4+${key64}`],
    ["another name", "KEY_ID_MISMATCH", `PeterNeumanm+${hash}+${key64}`],
    ["no key id", "MALFORMED_KEY", `PeterNeumann+${key64}`],
    ["7-digit key id", "MALFORMED_KEY", `PeterNeumann+${hash.slice(1)}+${key64}`],
    ["a space in the name", "MALFORMED_KEY", `Peter Neumann+${hash}+${key64}`],
    ["base64 of a bad length", "MALFORMED_KEY", `PeterNeumann+${hash}+${key64}A`],
    ["base64 with a newline", "MALFORMED_KEY", `PeterNeumann+${hash}+${key64.slice(0, 4)}\n${key64.slice(4)}`],
    ["empty", "MALFORMED_KEY", ""],
  ]
  it.each(cases)("%s → %s", (_what, code, key) => {
    expect(codeOf(() => parseVerifierKey(key))).toBe(code)
  })

  it("accepts an upper-case key id (Go strconv.ParseUint base 16)", () => {
    expect(parseVerifierKey(`PeterNeumann+${hash.toUpperCase()}+${key64}`).keyId).toBe(0xc74f20a3)
  })

  it("signer key: a public key that is not the seed's → KEY_ID_MISMATCH", () => {
    const enochId = (vectors.verifierKeys.EnochRoot as string).split("+")[1] as string
    const skey = vectors.signerKey.replace(hash, enochId).replace("PeterNeumann", "EnochRoot")
    expect(codeOf(() => parseSignerKey(skey))).toBe("KEY_ID_MISMATCH")
  })

  it.each([
    ["", "empty"],
    ["a b", "space"],
    ["a+b", "plus"],
    ["a\u00a0b", "no-break space"],
    ["a\u0085b", "next line"],
    ["a\u3000b", "ideographic space"],
    ["a\ud800b", "lone surrogate"],
  ])("refuses key name %j (%s) when encoding", (name) => {
    const pub = parseVerifierKey(vectors.verifierKeys.PeterNeumann as string).publicKey
    expect(codeOf(() => encodeVerifierKey(name, pub))).toBe("MALFORMED_KEY")
    expect(codeOf(() => encodeSignerKey(name, new Uint8Array(32)))).toBe("MALFORMED_KEY")
  })

  it("refuses public keys and seeds that are not 32 bytes", () => {
    expect(codeOf(() => keyId("a", new Uint8Array(31)))).toBe("MALFORMED_KEY")
    expect(codeOf(() => encodeVerifierKey("a", new Uint8Array(33)))).toBe("MALFORMED_KEY")
    expect(codeOf(() => encodeSignerKey("a", new Uint8Array(31)))).toBe("MALFORMED_KEY")
  })
})

describe("generateSignerKey", () => {
  it.each(IMPLEMENTATIONS)("gives a pair that parses, agrees and signs (%s)", (_impl, ed25519) => {
    const { signerKey, verifierKey } = generateSignerKey("example.com/log", ed25519)
    const signer = parseSignerKey(signerKey, ed25519)
    const verifier = parseVerifierKey(verifierKey)
    expect(signer.name).toBe("example.com/log")
    expect(verifier.keyId).toBe(signer.keyId)
    expect(verifier.keyId).toBe(referenceKeyId("example.com/log", verifier.publicKey))
    expect(verifier.publicKey).toEqual(signer.publicKey)
    expect(openNote(signNote("hi\n", [signer], { ed25519 }), [verifier], { ed25519 }).verified).toHaveLength(1)
  })

  it("refuses an invalid name", () => {
    expect(codeOf(() => generateSignerKey("bad name"))).toBe("MALFORMED_KEY")
  })
})
