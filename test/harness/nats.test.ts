import { existsSync } from "node:fs"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { describe, expect, it } from "vitest"
import { reconnected, startNats } from "./index.ts"

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("startNats", () => {
  it("runs a JetStream server on a free loopback port that survives a restart with its store", async () => {
    const server = await startNats()
    try {
      expect(server.port).not.toBe(4222)
      expect(server.url).toBe(`nats://127.0.0.1:${server.port}`)
      const nc = await server.connect(undefined, { reconnectTimeWait: 100, maxReconnectAttempts: -1 })
      const jsm = await jetstreamManager(nc)
      await jsm.streams.add({ name: "T", subjects: ["t.>"] })
      await jetstream(nc).publish("t.1", "one", { msgID: "one" })

      const before = server.pid
      const back = reconnected(nc)
      await server.restart()
      await back
      expect(server.pid).not.toBe(before)
      expect(alive(before)).toBe(false)

      // The same connection reconnects to the same port and finds the stored message.
      const ack = await jetstream(nc).publish("t.1", "one", { msgID: "one" })
      expect(ack.duplicate).toBe(true)
      expect((await jsm.streams.info("T")).state.messages).toBe(1)
      await nc.close()
    } finally {
      const pid = server.pid
      await server.stop()
      expect(alive(pid)).toBe(false)
      expect(existsSync(server.storeDir)).toBe(false)
    }
  }, 20_000)

  it("reports a server that cannot start, with its log", async () => {
    await expect(startNats({ args: ["--no-such-flag"] })).rejects.toThrow(/exited .* before it was ready/s)
  })

  it("gives each role its own nkey and inbox prefix on a secured server", async () => {
    const server = await startNats({ secure: true, roles: ["admin", "siem"] })
    try {
      expect(server.creds.siem?.publicKey).toMatch(/^U/)
      expect(server.creds.siem?.seed).toMatch(/^SU/)
      expect(server.creds.siem?.inboxPrefix).toBe("_INBOX_siem")
      const nc = await server.connect("siem")
      await nc.flush()
      await nc.close()
      await expect(server.connect("policy")).rejects.toThrow(/no credentials for role policy/)
    } finally {
      await server.stop()
    }
  })
})
