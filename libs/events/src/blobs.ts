import { createHash } from "node:crypto"
import type { BlobRef } from "./primitives.ts"

/** Reference to content by its SHA-256, as an event's `blobs` entry records it. */
export const blobRefOf = (content: Uint8Array, mediaType: string): BlobRef => ({
  sha256: createHash("sha256").update(content).digest("hex"),
  size: content.length,
  mediaType,
})
