import { describe, expect, it } from "vitest"
import { mergeObligations, parseObligations } from "./obligations.ts"

describe("parseObligations", () => {
  it("reads read-only, redact (with and without classes) and max-bytes", () => {
    expect(parseObligations("read-only; redact:confidential, restricted ; max-bytes:1048576; redact")).toEqual({
      ok: true,
      obligations: [
        { kind: "read-only" },
        { kind: "redact", classes: ["confidential", "restricted"] },
        { kind: "max-bytes", bytes: 1048576 },
        { kind: "redact" },
      ],
    })
    expect(parseObligations("")).toEqual({ ok: true, obligations: [] })
  })

  it("refuses what it does not understand", () => {
    for (const bad of [
      "read-only:yes",
      "redact:pii",
      "max-bytes",
      "max-bytes:-1",
      "max-bytes:1.5",
      "max-bytes:99999999999999999",
      "ask",
      "readonly",
    ]) {
      const r = parseObligations(bad)
      expect(r.ok, bad).toBe(false)
    }
  })
})

describe("mergeObligations", () => {
  it("keeps the most restrictive combination in canonical order", () => {
    expect(
      mergeObligations(
        [
          [
            { kind: "max-bytes", bytes: 10 },
            { kind: "redact", classes: ["restricted"] },
          ],
          [{ kind: "read-only" }, { kind: "max-bytes", bytes: 5 }, { kind: "redact", classes: ["confidential"] }],
        ],
        true,
      ),
    ).toEqual([
      { kind: "read-only" },
      { kind: "redact", classes: ["confidential", "restricted"] },
      { kind: "max-bytes", bytes: 5 },
      { kind: "ask" },
    ])
  })

  it("a redact without classes covers everything", () => {
    expect(mergeObligations([[{ kind: "redact", classes: ["public"] }], [{ kind: "redact" }]], false)).toEqual([
      { kind: "redact" },
    ])
  })

  it("nothing in, nothing out", () => {
    expect(mergeObligations([], false)).toEqual([])
  })
})
