/**
 * A small path glob matcher for data-class rules, over "/"-separated absolute paths.
 *
 * - `*` matches any run of characters within one path segment (never "/");
 * - `?` matches exactly one character other than "/";
 * - `**` as a whole segment matches zero or more segments: `**∕x` matches "/x" and "/a/b/x", `/a/**` matches "/a"
 *   itself and everything below it, `/a/**∕x` matches "/a/x" and "/a/b/x";
 * - `**` inside a segment (`a**b`) is the same as `*`;
 * - every other character is literal (no character classes, no braces: list several patterns instead).
 */
export interface GlobOptions {
  /** Compare case-insensitively (the default: desktop file systems on macOS and Windows are). */
  readonly caseInsensitive?: boolean
}

const escapeRegExp = (s: string): string => s.replace(/[\\^$.*+?()[\]{}|/]/gu, "\\$&")

/** The anchored regular expression source of a glob pattern. */
export const globSource = (pattern: string): string => {
  let out = ""
  let i = 0
  while (i < pattern.length) {
    const ch = pattern[i] as string
    if (ch === "*" && pattern[i + 1] === "*") {
      let j = i
      while (pattern[j] === "*") j++
      const atSegmentStart = i === 0 || pattern[i - 1] === "/"
      const atSegmentEnd = j === pattern.length || pattern[j] === "/"
      if (atSegmentStart && atSegmentEnd) {
        if (j === pattern.length) {
          // trailing "**": "/a/**" also matches "/a" (the "/" before it becomes optional along with the rest).
          if (out.endsWith("\\/")) out = `${out.slice(0, -2)}(?:\\/.*)?`
          else out += ".*"
          i = j
        } else {
          // "**/" (leading or in the middle): zero or more whole segments, each followed by "/".
          out += "(?:[^/]*\\/)*"
          i = j + 1
        }
        continue
      }
      out += "[^/]*"
      i = j
      continue
    }
    if (ch === "*") out += "[^/]*"
    else if (ch === "?") out += "[^/]"
    else out += escapeRegExp(ch)
    i++
  }
  return `^${out}$`
}

/** Compile a glob pattern into a predicate over paths. */
export const compileGlob = (pattern: string, options: GlobOptions = {}): ((path: string) => boolean) => {
  const re = new RegExp(globSource(pattern), options.caseInsensitive === false ? "u" : "iu")
  return (path) => re.test(path)
}

/** Whether `path` matches the glob `pattern`. Compile once with {@link compileGlob} on hot paths. */
export const globMatch = (pattern: string, path: string, options: GlobOptions = {}): boolean =>
  compileGlob(pattern, options)(path)
