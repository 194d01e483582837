// Conformance against the RFC 6962/9162 proof vectors of transparency-dev/merkle `testdata/` (commit 417fb0c,
// Apache-2.0), vendored unedited in testdata/rfc9162/ (provenance: testdata/README.md): a happy path per case plus
// mutations, each with `wantErr`. Every file is its own test, so a failure names the file.
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join, relative, resolve, sep } from "node:path"
import { describe, expect, it } from "vitest"
import type { MerkleErrorCode, VerifyResult } from "./errors.ts"
import { verifyConsistency, verifyInclusion } from "./verify.ts"

const repoRoot = resolve(import.meta.dirname, "..", "..", "..")
const vectorRoot = join(repoRoot, "testdata", "rfc9162")
if (!existsSync(vectorRoot)) {
  throw new Error(`RFC 9162 test vectors not found at ${vectorRoot}: the vendored testdata/ folder is missing`)
}

/**
 * Where this library is deliberately stricter than the vectors, with the code it returns instead. Each entry is
 * checked below to still exist and still expect success, so it cannot outlive a vector update unnoticed.
 */
const STRICTER: Record<string, { readonly code: MerkleErrorCode; readonly why: string }> = {
  "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": {
    code: "BAD_HASH_SIZE",
    why:
      'its equal roots are 12-byte placeholders (base64 of "don\'t care 2"); upstream compares them without a ' +
      "length check, but every root must be exactly 32 bytes (testdata/README.md)",
  },
}

const listFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? listFiles(join(dir, d.name)) : [join(dir, d.name)]))
    .sort()

const files = listFiles(vectorRoot).map((f) => relative(vectorRoot, f).split(sep).join("/"))

const b64 = (s: unknown): Uint8Array => {
  if (typeof s !== "string") throw new Error(`expected a base64 string, got ${JSON.stringify(s)}`)
  return new Uint8Array(Buffer.from(s, "base64"))
}
const b64List = (v: unknown): Uint8Array[] => {
  if (v === null) return [] // Go's nil slice: no proof elements
  if (!Array.isArray(v)) throw new Error(`expected a proof array or null, got ${JSON.stringify(v)}`)
  return v.map(b64)
}
// JSON numbers past 2^53 (the uint64 `leafIdx` of 2^64 - 1 in "leafIdx-sub-@1") are not exact in JavaScript. The
// verifiers refuse any unsafe integer, which is right for every such vector as long as none of them expects success.
const int = (v: unknown, wantErr: boolean): number => {
  if (typeof v !== "number" || !Number.isInteger(v)) throw new Error(`expected an integer, got ${JSON.stringify(v)}`)
  if (!Number.isSafeInteger(v) && !wantErr) throw new Error(`unsupported: a valid proof with integer ${v} > 2^53`)
  return v
}

const run = (file: string): VerifyResult => {
  const v = JSON.parse(readFileSync(join(vectorRoot, file), "utf8")) as Record<string, unknown>
  const wantErr = v.wantErr === true
  if (file.startsWith("inclusion/")) {
    return verifyInclusion(
      int(v.leafIdx, wantErr),
      int(v.treeSize, wantErr),
      b64(v.leafHash),
      b64List(v.proof),
      b64(v.root),
    )
  }
  if (file.startsWith("consistency/")) {
    return verifyConsistency(int(v.size1, wantErr), int(v.size2, wantErr), b64List(v.proof), b64(v.root1), b64(v.root2))
  }
  throw new Error(`${file}: not under inclusion/ or consistency/`)
}

const wantErrOf = (file: string): boolean => {
  const v = JSON.parse(readFileSync(join(vectorRoot, file), "utf8")) as { wantErr?: unknown }
  if (typeof v.wantErr !== "boolean") throw new Error(`${file}: wantErr is not a boolean`)
  return v.wantErr
}

describe("RFC 9162 vectors", () => {
  it("has both proof kinds, with a happy path each", () => {
    const happy = (kind: string) => files.filter((f) => f.startsWith(`${kind}/`) && !wantErrOf(f)).length
    expect(happy("inclusion")).toBeGreaterThan(0)
    expect(happy("consistency")).toBeGreaterThan(0)
  })

  it.each(Object.entries(STRICTER))("stricter than %s", (file) => {
    expect(files).toContain(file)
    expect(wantErrOf(file)).toBe(false)
  })

  it.each(files)("%s", (file) => {
    const result = run(file)
    const stricter = STRICTER[file]
    if (stricter !== undefined) {
      expect(result).toMatchObject({ ok: false, code: stricter.code })
      return
    }
    if (wantErrOf(file)) expect(result.ok, "should be refused").toBe(false)
    else expect(result).toEqual({ ok: true })
  })
})
