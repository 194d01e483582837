import { createHash, createHmac, randomBytes } from "node:crypto"
import { describe, expect, it } from "vitest"
import { derivedEventId, EVENT_ID_PATTERN, eventIdFromDigest, eventIdKey, eventIdTime, newEventId } from "./ids.ts"

describe("derived event ids", () => {
  const seed = new Uint8Array(32).fill(7)
  const cause = newEventId(Date.UTC(2026, 11, 7))

  it("are ULIDs with the cause's time, the same for the same producer, cause, purpose and index", () => {
    const key = eventIdKey(seed)
    const id = derivedEventId(key, cause, "policy")
    expect(id).toMatch(EVENT_ID_PATTERN)
    expect(eventIdTime(id)).toBe(Date.UTC(2026, 11, 7))
    expect(derivedEventId(eventIdKey(seed), cause, "policy")).toBe(id)
    expect(derivedEventId(key, cause, "policy", 1)).not.toBe(id)
    expect(derivedEventId(key, cause, "auditor/alert/x")).not.toBe(id)
    expect(derivedEventId(key, newEventId(), "policy")).not.toBe(id)
  })

  it("depend on the producer's seed: another seed, or the seed's public hash, gives another id", () => {
    const id = derivedEventId(eventIdKey(seed), cause, "policy")
    expect(derivedEventId(eventIdKey(randomBytes(32)), cause, "policy")).not.toBe(id)
    // Neither the former unkeyed derivation nor a key made from public material reproduces it.
    expect(eventIdFromDigest(cause, createHash("sha256").update(`policy\n${cause}\n0`).digest())).not.toBe(id)
    expect(derivedEventId(createHash("sha256").update(seed).digest(), cause, "policy")).not.toBe(id)
  })

  it("are HMAC-SHA256(eventIdKey(seed), purpose\\ncause\\nindex), first 80 bits in Crockford base32", () => {
    // Recomputed from the definition, independently of eventIdFromDigest's bit loop.
    const key = createHmac("sha256", seed).update("vigil/event-id/v1").digest()
    expect(Buffer.from(eventIdKey(seed))).toEqual(key)
    const mac = createHmac("sha256", key).update(`policy\n${cause}\n0`).digest()
    const bits = [...mac.subarray(0, 10)].map((b) => b.toString(2).padStart(8, "0")).join("")
    const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    const chars = Array.from({ length: 16 }, (_, i) => alphabet[Number.parseInt(bits.slice(i * 5, i * 5 + 5), 2)])
    expect(derivedEventId(eventIdKey(seed), cause, "policy")).toBe(cause.slice(0, 10) + chars.join(""))
  })
})
