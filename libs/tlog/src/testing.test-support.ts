// Helpers shared by the tests of this package (not a test file itself).
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"

export { entryOf } from "./stream.test-support.ts"

const roots: string[] = []
afterAll(() => {
  for (const dir of roots) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh empty directory, removed after the test file. */
export const tempDir = (prefix = "tlog-"): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  roots.push(dir)
  return dir
}

/** A copy of a (closed) log directory, so each case can ruin its own. */
export const copyLog = (src: string): string => {
  const dir = tempDir("tlog-copy-")
  fs.cpSync(src, dir, { recursive: true })
  fs.rmSync(path.join(dir, "lock"), { force: true })
  return dir
}

/** Byte offsets of each entry's length prefix in a bundle, plus the end offset. */
export const frameOffsets = (bytes: Uint8Array, prefix: 2 | 4): number[] => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const offsets: number[] = []
  let at = 0
  while (at < bytes.length) {
    offsets.push(at)
    at += prefix + (prefix === 2 ? view.getUint16(at) : view.getUint32(at))
  }
  offsets.push(at)
  return offsets
}

export const read = (dir: string, file: string): Buffer => fs.readFileSync(path.join(dir, file))
export const write = (dir: string, file: string, bytes: Uint8Array): void => {
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true })
  fs.writeFileSync(path.join(dir, file), bytes)
}
export const exists = (dir: string, file: string): boolean => fs.existsSync(path.join(dir, file))

/** Every file under `dir`, relative, sorted. */
export const listFiles = (dir: string): string[] =>
  (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort()
