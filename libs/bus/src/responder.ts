import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node"

/**
 * The reply subject nats-server makes up for a request that crossed a service import (`_R_.<token>.<token>`). It
 * routes the answer back into the asker's own account and nowhere else, so it is the only reply a responder gives.
 */
export const IMPORT_REPLY_PREFIX = "_R_."

/** Why a request got no answer. */
export type Dropped = "no-reply" | "reply-not-imported" | "unknown-asker"

export interface ResponderOptions {
  /** Subscription subject, e.g. `vigil.proof.*.*`. */
  readonly subject: string
  /** The asking role named by a request's subject (the import maps each asker to its own subjects). */
  readonly askerOf: (subject: string) => string | undefined
  /** The answer's bytes; it must not throw (errors are answers too). */
  readonly answer: (msg: Msg, asker: string) => string | Uint8Array
  /** Told about each request dropped unanswered. */
  readonly onDropped?: (why: Dropped, subject: string, reply: string) => void
}

export interface Responder {
  readonly stats: () => { readonly answered: number; readonly dropped: number }
  readonly stop: () => void
}

/**
 * Answer requests on one subject, and only through import replies. A responder is a deputy: it publishes to a
 * subject the asker chose (NATS-NOTES trap 9). The server allows it to publish only `_R_.>` (no
 * `allow_responses`), and this helper refuses the rest itself, so neither a permission slip nor a same-account
 * asker turns an answer into a write somewhere else.
 */
export const respond = (nc: NatsConnection, opts: ResponderOptions): Responder => {
  let answered = 0
  let dropped = 0
  const drop = (why: Dropped, msg: Msg) => {
    dropped++
    opts.onDropped?.(why, msg.subject, msg.reply ?? "")
  }
  const sub: Subscription = nc.subscribe(opts.subject, {
    callback: (_err, msg) => {
      const reply = msg.reply ?? ""
      if (reply === "") return drop("no-reply", msg)
      if (!reply.startsWith(IMPORT_REPLY_PREFIX)) return drop("reply-not-imported", msg)
      const asker = opts.askerOf(msg.subject)
      if (asker === undefined) return drop("unknown-asker", msg)
      answered++
      msg.respond(opts.answer(msg, asker))
    },
  })
  return {
    stats: () => ({ answered, dropped }),
    stop: () => sub.unsubscribe(),
  }
}
