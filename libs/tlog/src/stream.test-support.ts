// The deterministic entry stream of the tests; no vitest import, so a plain `node` child process can use it too.

/** Entry `i` of the deterministic test stream: 100 to 899 bytes (unless `length` says otherwise), unique per index. */
export const entryOf = (i: number, length = 100 + ((i * 7919) % 800)): Uint8Array => {
  const b = Buffer.alloc(Math.max(length, 8), (i * 31) & 0xff)
  b.writeUInt32BE(i % 2 ** 32, 0)
  b.writeUInt32BE(Math.floor(i / 2 ** 32), 4)
  return new Uint8Array(b.buffer, b.byteOffset, b.length)
}
