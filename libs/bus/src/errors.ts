import { Data } from "effect"

/** Could not connect to, or lost, the NATS server. */
export class BusConnectError extends Data.TaggedError("BusConnectError")<{
  readonly url: string
  readonly cause: unknown
}> {}

/**
 * A publish that did not get a JetStream ack. `refused` means the server's permissions forbid this subject for
 * this user: retrying cannot help and is not attempted.
 */
export class PublishError extends Data.TaggedError("PublishError")<{
  readonly subject: string
  readonly eventId: string
  readonly refused: boolean
  /** Another publisher stored a different message under this id first (NATS-NOTES trap 10). */
  readonly squatted?: { readonly seq: number; readonly why: string }
  readonly cause: unknown
}> {}

export class ProvisionError extends Data.TaggedError("ProvisionError")<{
  readonly what: string
  readonly cause: unknown
}> {}

export class ConsumeError extends Data.TaggedError("ConsumeError")<{
  readonly durable: string
  readonly cause: unknown
}> {}

/** A handler's own failure; the bus naks the message and dead-letters it after the last delivery attempt. */
export class HandlerError extends Data.TaggedError("HandlerError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Stored messages could not be read back (no right, no stream, the server did not answer). */
export class StreamReadError extends Data.TaggedError("StreamReadError")<{
  readonly stream: string
  readonly subject: string
  readonly cause: unknown
}> {}
