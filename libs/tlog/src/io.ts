import * as fs from "node:fs"
import * as path from "node:path"
import { fsync, fsyncDir, rename, tempPathOf, writeOpen } from "@vigil/durable"

/** The mutating file operations of an append, in the order they happen; see `FaultHook`. */
export type IoOp = "mkdir" | "write" | "fsync" | "fsyncDir" | "rename" | "unlink"

/**
 * Testing hook: called before every mutating file operation with the path relative to the log directory. Throwing
 * from it stops the append right there, as a crash would (the files written so far stay as they are).
 */
export type FaultHook = (op: IoOp, file: string) => void

/** Files written but not yet fsynced, at most: bounds the descriptors a huge batch holds open. */
const MAX_PENDING = 64

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException | undefined)?.code === "ENOENT"

/** Reads a file relative to `root`, or `undefined` if it does not exist. */
export const readOptional = (root: string, file: string): Buffer | undefined => {
  try {
    return fs.readFileSync(path.join(root, file))
  } catch (e) {
    if (isMissing(e)) return undefined
    throw e
  }
}

/**
 * Durable writes under one directory, from the steps of `@vigil/durable` with a `FaultHook` call before each (the
 * crash tests' seam). Every file written and every directory that gained an entry (a new file or
 * subdirectory) is remembered and fsynced by `sync`, so after `sync` every path written so far survives a power cut. Synchronous on purpose: an append is a short critical section that no
 * other call may interleave with.
 */
export class DurableDir {
  readonly root: string
  readonly #hook: FaultHook | undefined
  readonly #known = new Set<string>()
  readonly #dirty = new Set<string>()
  readonly #pending: { fd: number; file: string }[] = []

  constructor(root: string, hook?: FaultHook) {
    this.root = root
    this.#hook = hook
    this.#known.add(".")
  }

  #abs(file: string): string {
    return path.join(this.root, file)
  }

  /** Creates `dir` and any missing parents, marking each parent that gained an entry as dirty. */
  ensureDir(dir: string): void {
    if (this.#known.has(dir)) return
    const parent = path.dirname(dir)
    this.ensureDir(parent)
    try {
      this.#hook?.("mkdir", dir)
      fs.mkdirSync(this.#abs(dir))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    }
    // Also when it existed: a crashed process may have created it without fsyncing the parent. Once per process.
    this.#dirty.add(parent)
    this.#known.add(dir)
  }

  /**
   * Writes `data` to `file` (creating or truncating it); its directory is marked dirty. The fsync is deferred to
   * `sync`, so the kernel can write a batch's files back together instead of one fsync round trip per write.
   */
  write(file: string, data: Uint8Array): void {
    const dir = path.dirname(file)
    this.ensureDir(dir)
    this.#hook?.("write", file)
    const fd = writeOpen(this.#abs(file), data)
    this.#pending.push({ fd, file })
    this.#dirty.add(dir)
    if (this.#pending.length >= MAX_PENDING) this.#syncFiles()
  }

  /** Fsyncs every file written and then every directory that gained an entry since the last call. */
  sync(): void {
    this.#syncFiles()
    for (const dir of this.#dirty) {
      this.#hook?.("fsyncDir", dir)
      fsyncDir(this.#abs(dir))
      this.#dirty.delete(dir)
    }
  }

  /** Closes what an interrupted append left open, without syncing it. */
  abandon(): void {
    for (const { fd } of this.#pending.splice(0)) fs.closeSync(fd)
  }

  #syncFiles(): void {
    while (this.#pending.length > 0) {
      const { fd, file } = this.#pending[0]!
      this.#hook?.("fsync", file)
      fsync(fd)
      this.#pending.shift()
      fs.closeSync(fd)
    }
  }

  /**
   * Atomically replaces `file`: writes and fsyncs `file.tmp`, renames it over `file`, fsyncs the directory.
   * `onRenamed` runs right after the rename, before the directory fsync: from then on readers see the new file.
   */
  replace(file: string, data: Uint8Array, onRenamed?: () => void): void {
    const tmp = tempPathOf(file)
    this.write(tmp, data)
    this.#syncFiles()
    this.#dirty.delete(path.dirname(tmp)) // the rename below is what must reach the disk, fsynced right after it
    this.#hook?.("rename", file)
    rename(this.#abs(tmp), this.#abs(file))
    onRenamed?.()
    this.#hook?.("fsyncDir", path.dirname(file))
    fsyncDir(this.#abs(path.dirname(file)))
  }

  /** Best-effort removal of a file or directory tree (garbage beyond the commit point, superseded partials). */
  remove(file: string): void {
    try {
      this.#hook?.("unlink", file)
      fs.rmSync(this.#abs(file), { recursive: true, force: true })
    } catch {
      // Leftovers are harmless: nothing reads past the committed size, and the next append overwrites them.
    }
    this.#known.delete(file)
  }
}
