/** A command's `--json` output: one object per non-empty line. */
export const jsonLines = (text: string): Array<Record<string, unknown>> =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>)
