import { randomBytes } from "node:crypto"
import { constants } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"

/**
 * Write `data` to `<dir>/<name>` so that readers see either nothing (or the old file) or the complete new file,
 * never a torn one: the bytes go to a hidden temp file in the same directory (created exclusively with `mode`),
 * are fsynced, then moved into place and the directory is fsynced.
 *
 * - `replace`: `rename` over any existing file.
 * - `create`: `link` into place, which fails when the name exists; returns `false` then (someone else won the race)
 *   and leaves the existing file untouched. This is how append-only files and create-if-absent keys are written.
 *
 * The temp file is removed on every path, success or failure.
 */
export const writeFileAtomic = async (
  dir: string,
  name: string,
  data: Uint8Array | string,
  options: { readonly mode: number; readonly how: "replace" | "create" },
): Promise<boolean> => {
  const target = path.join(dir, name)
  const temp = path.join(dir, `.${name}.${randomBytes(6).toString("hex")}.tmp`)
  try {
    const handle = await fs.open(
      temp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      options.mode,
    )
    try {
      await handle.writeFile(data)
      await handle.chmod(options.mode) // the umask may have narrowed the mode given to open; state it exactly
      await handle.sync()
    } finally {
      await handle.close()
    }
    if (options.how === "replace") {
      await fs.rename(temp, target)
    } else {
      try {
        await fs.link(temp, target)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
        throw e
      }
    }
    await syncDir(dir)
    return true
  } finally {
    await fs.rm(temp, { force: true })
  }
}

/** Make a rename or link durable: fsync the directory that holds the entry. */
const syncDir = async (dir: string): Promise<void> => {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
