import { describe, expect, it } from "vitest"
import { makeClassifier } from "./classify.ts"
import {
  buildRequest,
  dlpSummary,
  hostAllowlisted,
  normalisePath,
  RequestError,
  type RequestOptions,
} from "./request.ts"

const classifier = makeClassifier({
  v: 1,
  default: "internal",
  rules: [
    { id: "fin", class: "confidential", paths: ["**/Finance/**"] },
    { id: "keys", class: "restricted", extensions: ["pem"] },
    { id: "secrets", class: "restricted", dlp: { kinds: ["secret", "credential"] } },
  ],
})

const opts: RequestOptions = {
  grantedFolders: ["/home/ana/Documents/"],
  dataClasses: classifier,
  role: "staff",
  device: { id: "dev-1", managed: true, os: "linux" },
  egressAllowlist: ["*.example.org", "api.partner.example"],
  remoteModelUrl: "https://models.example.org/v1",
}

const entity = (r: ReturnType<typeof buildRequest>, type: string, id: string) =>
  r.entities.find((e) => "type" in e.uid && e.uid.type === type && e.uid.id === id)

describe("normalisePath", () => {
  it("normalises absolute paths and resolves relative ones against cwd", () => {
    expect(normalisePath("/a/b/../c/./d/")).toBe("/a/c/d")
    expect(normalisePath("//a//b")).toBe("/a/b")
    expect(normalisePath("/")).toBe("/")
    expect(normalisePath("x/y", "/base")).toBe("/base/x/y")
    expect(normalisePath("../../../etc", "/base/q")).toBe("/etc")
  })
  it("refuses what is not a usable path", () => {
    for (const p of ["", "rel/x", "~/x", 42, null, "/a\0b", `/${"a".repeat(5000)}`]) {
      expect(() => normalisePath(p)).toThrow(RequestError)
    }
  })
})

describe("hostAllowlisted", () => {
  const list = ["*.example.org", "API.partner.example"]
  it.each([
    ["docs.example.org", true],
    ["a.b.example.org", true],
    ["example.org", false],
    ["badexample.org", false],
    ["docs.example.org.evil.test", false],
    ["api.partner.example", true],
    ["www.api.partner.example", false],
    ["", false],
  ] as const)("%s → %s", (host, want) => {
    expect(hostAllowlisted(host, list)).toBe(want)
  })
})

describe("dlpSummary", () => {
  it("summarises kinds, secrets, personal data and the count", () => {
    expect(
      dlpSummary([
        { detector: "a", kind: "pii", count: 2 },
        { detector: "b", kind: "credential", count: 1 },
        { detector: "c", kind: "pii", count: 1 },
      ]),
    ).toEqual({ secretsFound: true, piiFound: true, kinds: ["credential", "pii"], count: 4 })
    expect(dlpSummary([])).toEqual({ secretsFound: false, piiFound: false, kinds: [], count: 0 })
  })
})

describe("buildRequest", () => {
  it("fs.read: a File with its ancestors as Folders, principal with role and device", () => {
    const r = buildRequest({ tool: "fs.read", args: { path: "/home/ana/Documents/Finance/q3.xlsx" } }, opts)
    expect(r.action).toEqual({ type: "Action", id: "fs.read" })
    expect(r.resource).toEqual({ type: "File", id: "/home/ana/Documents/Finance/q3.xlsx" })
    expect(r.dataClass).toBe("confidential")
    expect(r.classification).toEqual(["fin"])
    expect(entity(r, "File", "/home/ana/Documents/Finance/q3.xlsx")).toEqual({
      uid: { type: "File", id: "/home/ana/Documents/Finance/q3.xlsx" },
      attrs: {
        path: "/home/ana/Documents/Finance/q3.xlsx",
        name: "q3.xlsx",
        ext: "xlsx",
        inGrantedFolder: true,
        dataClass: { __entity: { type: "DataClass", id: "confidential" } },
      },
      parents: ["/home/ana/Documents/Finance", "/home/ana/Documents", "/home/ana", "/home", "/"].map((id) => ({
        type: "Folder",
        id,
      })),
    })
    expect(r.entities.map((e) => ("type" in e.uid ? e.uid.type : "?"))).toEqual(["User", "Device", "File"])
    expect(entity(r, "User", "local")?.parents).toEqual([{ type: "Role", id: "staff" }])
    expect(entity(r, "Device", "dev-1")?.attrs).toEqual({ managed: true, os: "linux" })
    expect(r.context).toMatchObject({ bytes: 0, consent: false, dlp: { secretsFound: false } })
  })

  it("the granted-folder test is by path segment, after normalisation", () => {
    const inside = (path: string) =>
      entity(buildRequest({ tool: "fs.read", args: { path } }, opts), "File", normalisePath(path))?.attrs
        .inGrantedFolder
    expect(inside("/home/ana/Documents/a.txt")).toBe(true)
    expect(inside("/home/ana/Documents-old/a.txt")).toBe(false)
    expect(inside("/home/ana/Documents/../a.txt")).toBe(false)
  })

  it("fs.move carries the target in the context; fs.write counts bytes", () => {
    const m = buildRequest(
      { tool: "fs.move", args: { path: "/home/ana/Documents/a.txt", to: "/tmp/Finance/a.txt" } },
      opts,
    )
    expect(m.context.target).toEqual({
      path: "/tmp/Finance/a.txt",
      inGrantedFolder: false,
      dataClass: { __entity: { type: "DataClass", id: "confidential" } },
    })
    const w = buildRequest({ tool: "fs.write", args: { path: "/home/ana/Documents/a.txt", content: "héllo" } }, opts)
    expect(w.context.bytes).toBe(6)
    const d = buildRequest({ tool: "fs.delete", args: { path: "/home/ana/Documents/old", recursive: true } }, opts)
    expect(d.resource).toEqual({ type: "Folder", id: "/home/ana/Documents/old" })
  })

  it("net.fetch: a Destination; what leaves is classed by its findings", () => {
    const r = buildRequest(
      { tool: "net.fetch", args: { url: "https://Docs.Example.org/x?q=1", body: "abc" } },
      { ...opts, dlpFindings: [{ detector: "k", kind: "secret", count: 1 }] },
    )
    expect(r.resource).toEqual({ type: "Destination", id: "docs.example.org" })
    expect(entity(r, "Destination", "docs.example.org")?.attrs).toEqual({
      host: "docs.example.org",
      scheme: "https",
      allowlisted: true,
    })
    expect(r.dataClass).toBe("restricted")
    expect(r.context.bytes).toBe(Buffer.byteLength("https://Docs.Example.org/x?q=1") + 3)
    expect(r.context.dlp).toEqual({ secretsFound: true, piiFound: false, kinds: ["secret"], count: 1 })
  })

  it("model.remote: the configured endpoint, attached files raise the class", () => {
    const r = buildRequest(
      { tool: "model.remote", args: { model: "m", prompt: "hi", files: ["/home/ana/Documents/key.pem"] } },
      opts,
    )
    expect(r.resource).toEqual({ type: "Destination", id: "models.example.org" })
    expect(r.dataClass).toBe("restricted")
    expect(r.classification).toEqual(["keys"])
    const own = buildRequest(
      { tool: "model.remote", args: { model: "m", prompt: "hi", endpoint: "http://10.0.0.5:8080" } },
      opts,
    )
    expect(entity(own, "Destination", "10.0.0.5")?.attrs).toEqual({
      host: "10.0.0.5",
      scheme: "http",
      allowlisted: false,
    })
  })

  it("plugin.run and shell.exec", () => {
    expect(
      buildRequest({ tool: "plugin.run", args: { plugin: "csv-tools", input: { a: 1 } } }, opts).context.bytes,
    ).toBe(7)
    const s = buildRequest({ tool: "shell.exec", args: { cmd: "  grep -r x ." } }, opts)
    expect(entity(s, "Command", "  grep -r x .")?.attrs).toEqual({ program: "grep" })
  })

  it("consent, a class floor and a byte count from the caller", () => {
    const r = buildRequest(
      { tool: "net.fetch", args: { url: "https://docs.example.org/" } },
      { ...opts, consent: true, dataClassFloor: "confidential", bytes: 1234567 },
    )
    expect(r.consent).toBe(true)
    expect(r.context.consent).toBe(true)
    expect(r.dataClass).toBe("confidential")
    expect(r.context.bytes).toBe(1234567)
  })

  it("refuses intents that do not fit", () => {
    const { remoteModelUrl: _, ...noRemote } = opts
    const bad: ReadonlyArray<[string, Record<string, unknown>, RequestOptions?]> = [
      ["fs.teleport", { path: "/a" }],
      ["fs.read", {}],
      ["fs.read", { path: 7 }],
      ["fs.write", { path: "/home/ana/Documents/a", content: 7 }],
      ["fs.move", { path: "/home/ana/Documents/a" }],
      ["net.fetch", { url: "not a url" }],
      ["net.fetch", {}],
      ["model.remote", { model: "m", prompt: "p" }, noRemote],
      ["model.remote", { model: "m", files: "/a" }],
      ["plugin.run", {}],
      ["shell.exec", {}],
      ["fs.read", { path: "/a" }, { ...opts, bytes: -1 }],
      ["fs.read", { path: "/a" }, { ...opts, grantedFolders: ["relative"] }],
    ]
    for (const [tool, args, o = opts] of bad) {
      expect(() => buildRequest({ tool, args }, o), `${tool} ${JSON.stringify(args)}`).toThrow(RequestError)
    }
  })
})
