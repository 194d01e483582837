import type { MsgHdrs } from "@nats-io/transport-node"
import type { AckedPublisher } from "@vigil/bus"

/** One OCSF record for the SIEM feed. */
export interface OutgoingRecord {
  readonly subject: string
  readonly data: Uint8Array
  /** `Nats-Msg-Id`: a record re-sent after a crash is stored once. */
  readonly msgId: string
  readonly headers: MsgHdrs
}

/**
 * Publish every record of a commit; resolves when the stream acked all of them, rejects on the first one it did not
 * store. One callback per record and one promise per batch: a commit carries up to a few thousand records.
 */
export const publishAll = (acked: AckedPublisher, records: ReadonlyArray<OutgoingRecord>): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    let remaining = records.length
    if (remaining === 0) return resolve()
    let failed = false
    for (const r of records) {
      acked.send(r.subject, r.data, { msgId: r.msgId, headers: r.headers }, (err) => {
        if (failed) return
        if (err !== undefined) {
          failed = true
          reject(err)
        } else if (--remaining === 0) resolve()
      })
    }
  })
