import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { appendFile, replaceFile, writeFileAtomic } from "./durable.ts"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vigil-durable-"))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("durable file writes", () => {
  it("replaceFile replaces the whole file and leaves no temp file", () => {
    const file = path.join(dir, "state.json")
    replaceFile(file, "one")
    replaceFile(file, new Uint8Array(Buffer.from("two")))
    expect(fs.readFileSync(file, "utf8")).toBe("two")
    expect(fs.readdirSync(dir)).toEqual(["state.json"])
  })

  it("appendFile appends", () => {
    const file = path.join(dir, "history")
    appendFile(file, "a\n")
    appendFile(file, "b\n")
    expect(fs.readFileSync(file, "utf8")).toBe("a\nb\n")
  })

  it("writeFileAtomic sets the mode exactly, creates only once, replaces on demand, and cleans up", () => {
    const umask = process.umask(0o077)
    try {
      expect(writeFileAtomic(dir, "k", "one", { mode: 0o644, how: "create" })).toBe(true)
    } finally {
      process.umask(umask)
    }
    expect(fs.statSync(path.join(dir, "k")).mode & 0o777).toBe(0o644)
    expect(writeFileAtomic(dir, "k", "two", { mode: 0o600, how: "create" })).toBe(false)
    expect(fs.readFileSync(path.join(dir, "k"), "utf8")).toBe("one")
    expect(writeFileAtomic(dir, "k", "three", { mode: 0o600, how: "replace" })).toBe(true)
    expect(fs.readFileSync(path.join(dir, "k"), "utf8")).toBe("three")
    expect(fs.statSync(path.join(dir, "k")).mode & 0o777).toBe(0o600)
    expect(fs.readdirSync(dir)).toEqual(["k"])
  })
})
