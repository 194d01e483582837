import { describe, expect, it } from "vitest"
import { compileGlob, globMatch } from "./glob.ts"

describe("globMatch", () => {
  const cases: ReadonlyArray<[string, string, boolean]> = [
    ["**/x", "/x", true],
    ["**/x", "/a/b/x", true],
    ["**/x", "/a/b/xy", false],
    ["/a/**", "/a", true],
    ["/a/**", "/a/b/c", true],
    ["/a/**", "/ab", false],
    ["/a/**/x", "/a/x", true],
    ["/a/**/x", "/a/b/c/x", true],
    ["/a/**/x", "/a/b/c/y", false],
    ["**/Finance/**", "/home/ana/Finance", true],
    ["**/Finance/**", "/home/ana/Finance/q3.xlsx", true],
    ["**/Finance/**", "/home/ana/MyFinance/q3.xlsx", false],
    ["**/*.pem", "/etc/ssl/a.pem", true],
    ["**/*.pem", "/etc/ssl/a.pem.bak", false],
    ["/a/*", "/a/b", true],
    ["/a/*", "/a/b/c", false],
    ["/a/?.txt", "/a/b.txt", true],
    ["/a/?.txt", "/a/bc.txt", false],
    ["/a/?.txt", "/a//.txt", false],
    ["**", "/anything/at/all", true],
    ["/a/b**c", "/a/bxxc", true],
    ["/a/b**c", "/a/bx/xc", false],
    ["**/.env.*", "/p/.env.local", true],
    ["**/.env", "/p/.env.local", false],
    ["/a(b)[c]{d}+$^|.txt", "/a(b)[c]{d}+$^|.txt", true],
    ["/a.b", "/aXb", false],
  ]
  for (const [pattern, path, want] of cases) {
    it(`${pattern} ${want ? "matches" : "does not match"} ${path}`, () => {
      expect(globMatch(pattern, path)).toBe(want)
    })
  }

  it("is case-insensitive unless told otherwise", () => {
    expect(globMatch("**/HR/**", "/x/hr/y")).toBe(true)
    expect(compileGlob("**/HR/**", { caseInsensitive: false })("/x/hr/y")).toBe(false)
    expect(compileGlob("**/HR/**", { caseInsensitive: false })("/x/HR/y")).toBe(true)
  })
})
