import { mkdtempSync, rmSync } from "node:fs"
import type { Server } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AuditCore, noteSigner } from "@vigil/auditlog"
import { keyIdOf, nodeEd25519, randomSeed } from "@vigil/crypto"
import { type Event, signEvent } from "@vigil/events"
import { encodeVerifierKey, parseVerifierKey } from "@vigil/note"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { answer, startProofHttp } from "./proofs.ts"

/**
 * The proof answers refuse a bad parameter by name, over HTTP (400, the endpoint's `{ ok: false, error }`) and in
 * the NATS answers (the same `answer`): a log of 7 leaves whose last checkpoint signs the first 5.
 */

const ORIGIN = "vigil/test/proofs"
const seed = randomSeed()
const publicKey = nodeEd25519.publicKey(seed)
const auditor = { principal: "auditor" as const, seed, publicKey, kid: keyIdOf(publicKey) }
const gatewaySeed = randomSeed()
const gateway = {
  principal: "gateway" as const,
  seed: gatewaySeed,
  publicKey: nodeEd25519.publicKey(gatewaySeed),
  kid: keyIdOf(nodeEd25519.publicKey(gatewaySeed)),
}

const event = (i: number): Event =>
  signEvent(gateway, {
    type: "task.submitted",
    session: "s1",
    time: new Date(Date.now() + i).toISOString(),
    data: { channel: "cli", workspace: "/w", promptChars: i },
  }) as Event

const dir = mkdtempSync(join(tmpdir(), "vigil-proofs-"))
let core: AuditCore
let server: Server
let base: string

beforeAll(async () => {
  core = AuditCore.open({
    dir,
    origin: ORIGIN,
    signer: noteSigner(ORIGIN, auditor),
    verifier: parseVerifierKey(encodeVerifierKey(ORIGIN, publicKey)),
  })
  core.append([0, 1, 2, 3, 4].map((i) => ({ event: event(i), streamSeq: i + 1 })))
  expect(core.signCheckpoint()?.size).toBe(5)
  core.append([5, 6].map((i) => ({ event: event(i), streamSeq: i + 1 })))
  server = await startProofHttp(core, 0)
  const address = server.address()
  base = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
})

afterAll(() => {
  server?.close()
  core?.log.close()
  rmSync(dir, { recursive: true, force: true })
})

const get = async (path: string) => {
  const r = await fetch(`${base}${path}`)
  return { status: r.status, type: r.headers.get("content-type"), body: (await r.json()) as Record<string, unknown> }
}

describe("proof HTTP", () => {
  it("answers good questions", async () => {
    expect(await get("/proof/inclusion?index=2")).toMatchObject({
      status: 200,
      body: { ok: true, index: 2, size: 5, checkpoint: core.lastCheckpoint?.note },
    })
    expect(await get("/proof/inclusion?index=6&size=7")).toMatchObject({ status: 200, body: { index: 6, size: 7 } })
    expect(await get("/proof/consistency?from=2&to=7")).toMatchObject({ status: 200, body: { from: 2, to: 7 } })
    expect(await get("/proof/entry?index=6")).toMatchObject({ status: 200, body: { ok: true, index: 6 } })
  })

  it.each([
    ["/proof/inclusion?index=1.5", /^index must be an integer in \[0, 4\] .*got "1\.5"$/],
    ["/proof/inclusion?index=-1", /^index must be an integer .*got "-1"$/],
    ["/proof/inclusion?index=5", /^index must be an integer in \[0, 4\] \(the tree of size 5\), got 5$/],
    ["/proof/inclusion?index=", /^index must be an integer .*got ""$/],
    ["/proof/inclusion?index=1&size=abc", /^size must be an integer in \[1, 7\], got "abc"$/],
    ["/proof/inclusion?index=1&size=0", /^size must be an integer in \[1, 7\], got 0$/],
    ["/proof/inclusion?index=1&size=8", /^size must be an integer in \[1, 7\], got 8$/],
    ["/proof/inclusion?index=1&size=99999999999999999999", /^size must be an integer .*got "99999999999999999999"$/],
    ["/proof/inclusion?index=1&sise=3", /^unknown parameter "sise": inclusion takes id, index, size$/],
    ["/proof/inclusion?index=1&index=2", /^parameter "index" is given more than once$/],
    ["/proof/inclusion?id=x&index=1", /^give an id or an index, not both$/],
    ["/proof/inclusion?size=3", /^give an id or an index$/],
    ["/proof/inclusion?id=nope", /^no event "nope" in the log$/],
    ["/proof/consistency?from=x", /^from must be an integer in \[1, 5\], got "x"$/],
    ["/proof/consistency", /^from must be an integer in \[1, 5\], got null$/],
    ["/proof/consistency?from=1&to=-3", /^to must be an integer in \[1, 7\], got "-3"$/],
    ["/proof/entry?index=7", /^index must be an integer in \[0, 6\], got 7$/],
    ["/proof/entry?index=0x1", /^index must be an integer in \[0, 6\], got "0x1"$/],
    ["/proof/entry?i=1", /^unknown parameter "i": entry takes index$/],
  ])("%s is a 400 naming the parameter", async (path, error) => {
    const r = await get(path)
    expect(r.status).toBe(400)
    expect(r.type).toBe("application/json")
    expect(Object.keys(r.body).sort()).toEqual(["error", "ok"])
    expect(r.body.ok).toBe(false)
    expect(r.body.error).toMatch(error)
  })
})

describe("proof answers (NATS)", () => {
  it.each([
    ["inclusion", { index: 1.5 }, /^index must be an integer in \[0, 4\] .*got 1\.5$/],
    ["inclusion", { index: "1" }, /^index must be an integer .*got "1"$/],
    ["inclusion", { index: 1, size: "abc" }, /^size must be an integer in \[1, 7\], got "abc"$/],
    ["inclusion", { index: 1, size: -2 }, /^size must be an integer .*got -2$/],
    ["inclusion", { id: 5 }, /^id must be an event id \(a string\), got 5$/],
    ["inclusion", { idx: 1 }, /^unknown parameter "idx": inclusion takes id, index, size$/],
    ["checkpoint", { size: 1 }, /^unknown parameter "size": checkpoint takes no parameters$/],
    ["consistency", { from: 2, to: 1e300 }, /^to must be an integer in \[1, 7\], got 1e\+300$/],
    ["entry", { index: null }, /^index must be an integer in \[0, 6\], got null$/],
  ] as const)("%s %j names the parameter", (kind, req, error) => {
    const a = answer(core, kind, req)
    expect(a.ok).toBe(false)
    expect(a.ok === false ? a.error : "").toMatch(error)
  })

  it("refuses a request that is not an object", () => {
    expect(answer(core, "entry", [] as unknown as Record<string, unknown>)).toEqual({
      ok: false,
      error: "request must be a JSON object",
    })
  })
})
