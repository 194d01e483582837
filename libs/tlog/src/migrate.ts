import * as fs from "node:fs"
import * as path from "node:path"
import { TlogError } from "./errors.ts"
import type { DurableDir } from "./io.ts"
import { BUNDLE_LAYOUTS, type BundleFormat, bundlePath, encodeBundle, parseBundle, TILE_WIDTH } from "./layout.ts"
import { encodeState, type LogState, STATE_FILE } from "./state.ts"

/**
 * Re-frames every committed entry bundle of a log in another bundle format, then switches `state.json` to it.
 * Leaf hashes do not depend on the framing, so tiles, roots and checkpoints stay as they are.
 *
 * Crash-safe by order: the new bundles are written and fsynced before the state names their format, so a crash
 * leaves either the old format in force (the next migration writes the same files again) or the new one complete;
 * the old bundle directory is removed last and a leftover of it is harmless. Refuses (`ENTRY_TOO_LARGE`), before
 * writing anything, a log holding an entry the target format cannot frame.
 */
export const migrateBundles = (dir: string, state: LogState, to: BundleFormat, io: DurableDir): LogState => {
  const from = BUNDLE_LAYOUTS[state.bundles]
  const target = BUNDLE_LAYOUTS[to]
  const full = Math.floor(state.size / TILE_WIDTH)
  const rest = state.size % TILE_WIDTH
  const bundles = [
    ...Array.from({ length: full }, (_, index) => ({ index, width: TILE_WIDTH })),
    ...(rest > 0 ? [{ index: full, width: rest }] : []),
  ]
  const read = ({ index, width }: { index: number; width: number }) => {
    const file = bundlePath(from, index, width)
    const parsed = parseBundle(from, fs.readFileSync(path.join(dir, file)), width)
    if (parsed.truncated || parsed.entries.length !== width || parsed.extra !== 0) {
      throw new TlogError("CORRUPT", `${file} does not hold ${width} ${from.format} entries`, { path: file })
    }
    return parsed.entries
  }
  // Check every entry first: a refusal leaves nothing behind.
  for (const b of bundles) {
    read(b).forEach((entry, i) => {
      if (entry.length > target.maxEntry) {
        throw new TlogError(
          "ENTRY_TOO_LARGE",
          `cannot move ${dir} to ${to} bundles: entry ${b.index * TILE_WIDTH + i} is ${entry.length} bytes, the format takes at most ${target.maxEntry}`,
        )
      }
    })
  }
  for (const b of bundles) io.write(bundlePath(target, b.index, b.width), encodeBundle(target, read(b)))
  io.sync()
  const next: LogState = { ...state, bundles: to }
  io.replace(STATE_FILE, encodeState(next))
  fs.rmSync(path.join(dir, from.dir), { recursive: true, force: true })
  return next
}
