import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * Durable file writes, one small function per step of the classic sequence: write-temp (write and fsync a temp
 * file), rename (or link) it into place, fsync-dir (make the new directory entry survive a power cut). The steps are
 * exported on their own so that a caller with its own batching or fault injection (libs/tlog's `DurableDir`) runs the
 * same code in its own order; `replaceFile`, `appendFile` and `writeFileAtomic` are the compositions the other libs
 * use. Synchronous on purpose: each is a short critical section that nothing may interleave with.
 */

/** Where `replaceFile` writes before its rename: beside the target, so the rename stays within one directory. */
export const tempPathOf = (file: string): string => `${file}.tmp`

/** Writes every byte of `data` at the descriptor's position (`writeSync` may write less than asked). */
const writeAll = (fd: number, data: Uint8Array | string): void => {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data
  let offset = 0
  while (offset < bytes.length) offset += fs.writeSync(fd, bytes, offset, bytes.length - offset)
}

export interface OpenWriteOptions {
  /**
   * Create the file with `O_EXCL | O_NOFOLLOW` (fail if the name exists, even as a link) instead of creating or
   * truncating it.
   */
  readonly exclusive?: boolean
  /** The file's mode, set exactly: after the write, so the umask cannot narrow it. */
  readonly mode?: number
}

/**
 * Opens `file` for writing (creating or truncating it, or exclusively: see `OpenWriteOptions`) and writes all of
 * `data`. Returns the open descriptor, not yet fsynced: `fsync` and close it (a caller may batch many writes before
 * their fsyncs). The descriptor is closed again when the write fails.
 */
export const writeOpen = (file: string, data: Uint8Array | string, options: OpenWriteOptions = {}): number => {
  const flags = options.exclusive
    ? fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW
    : "w"
  const fd = fs.openSync(file, flags, options.mode)
  try {
    writeAll(fd, data)
    if (options.mode !== undefined) fs.fchmodSync(fd, options.mode)
  } catch (e) {
    fs.closeSync(fd)
    throw e
  }
  return fd
}

/** fsync(2): the file's data and metadata reach the disk. The descriptor stays open. */
export const fsync = (fd: number): void => fs.fsyncSync(fd)

const fsyncPath = (file: string, flags: number): void => {
  const fd = fs.openSync(file, flags)
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** fsync(2) of a file by path, for bytes written through another descriptor (an append). */
export const fsyncFile = (file: string): void => fsyncPath(file, fs.constants.O_RDONLY)

/** fsync-dir: makes the entries created, renamed or linked in `dir` durable (fsync(2) of the directory itself). */
export const fsyncDir = (dir: string): void => fsyncPath(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)

/** write-temp: writes `data` to `temp` and fsyncs it, so its bytes are on disk before any name points at them. */
export const writeTemp = (temp: string, data: Uint8Array | string, options: OpenWriteOptions = {}): void => {
  const fd = writeOpen(temp, data, options)
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** rename(2) of `from` over `to`, atomic: readers see the old file or the new one. Durable after `fsyncDir`. */
export const rename = (from: string, to: string): void => fs.renameSync(from, to)

/**
 * link(2) of `from` as `to`, which must not exist: `false` (and nothing changed) when it does. The exclusive
 * counterpart of `rename`, for create-if-absent files. Durable after `fsyncDir`.
 */
export const linkNew = (from: string, to: string): boolean => {
  try {
    fs.linkSync(from, to)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  }
}

/**
 * Replaces `file` atomically and durably: write-temp `<file>.tmp`, rename it over `file`, fsync-dir. A crash leaves
 * the old file or the new one, and at worst a stale `<file>.tmp` that the next call overwrites.
 */
export const replaceFile = (file: string, data: Uint8Array | string): void => {
  const temp = tempPathOf(file)
  writeTemp(temp, data)
  rename(temp, file)
  fsyncDir(path.dirname(file))
}

/**
 * Appends `data` to `file` (creating it) and fsyncs the file. Not atomic: a crash can leave a torn tail, which
 * readers must tolerate. The directory is not fsynced: a file this call creates is only durable once something
 * fsyncs its directory.
 */
export const appendFile = (file: string, data: Uint8Array | string): void => {
  fs.appendFileSync(file, data)
  fsyncFile(file)
}

/**
 * Writes `data` to `<dir>/<name>` so that readers see either nothing (or the old file) or the complete new file,
 * never a torn one: write-temp to a hidden, exclusively created temp file in the same directory (with exactly
 * `mode`), then rename or link it into place and fsync-dir.
 *
 * - `replace`: `rename` over any existing file.
 * - `create`: `link` into place, which fails when the name exists; returns `false` then (someone else won the race)
 *   and leaves the existing file untouched. This is how append-only files and create-if-absent keys are written.
 *
 * The temp file is removed on every path, success or failure.
 */
export const writeFileAtomic = (
  dir: string,
  name: string,
  data: Uint8Array | string,
  options: { readonly mode: number; readonly how: "replace" | "create" },
): boolean => {
  const target = path.join(dir, name)
  const temp = path.join(dir, `.${name}.${randomBytes(6).toString("hex")}.tmp`)
  try {
    writeTemp(temp, data, { exclusive: true, mode: options.mode })
    if (options.how === "replace") rename(temp, target)
    else if (!linkNew(temp, target)) return false
    fsyncDir(dir)
    return true
  } finally {
    fs.rmSync(temp, { force: true })
  }
}
