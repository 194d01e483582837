// A SignaturePool worker: checks packed batches of Ed25519 signatures with libsodium. Kept free of project
// imports so the thread starts in milliseconds (node strips the types; nothing else is loaded).
import { parentPort } from "node:worker_threads"
import sodium from "sodium-native"

// Batch layout (see signature-pool.ts `pack`): u32 count, u32 message length × count, then per item the 64-byte
// signature, the 32-byte public key and the message, back to back.
parentPort?.on("message", (msg: { readonly id: number; readonly buf: ArrayBuffer }) => {
  const bytes = new Uint8Array(msg.buf)
  const view = new DataView(msg.buf)
  const n = view.getUint32(0, true)
  const verdicts = new Uint8Array(n)
  let off = 4 + 4 * n
  for (let i = 0; i < n; i++) {
    const len = view.getUint32(4 + 4 * i, true)
    const sig = bytes.subarray(off, off + 64)
    const pk = bytes.subarray(off + 64, off + 96)
    const message = bytes.subarray(off + 96, off + 96 + len)
    off += 96 + len
    try {
      verdicts[i] = sodium.crypto_sign_verify_detached(sig, message, pk) ? 1 : 0
    } catch {
      verdicts[i] = 0
    }
  }
  parentPort?.postMessage({ id: msg.id, verdicts }, [verdicts.buffer])
})
