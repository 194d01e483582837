import { connect, nkeyAuthenticator } from "@nats-io/transport-node"
import type { AuditCore } from "@vigil/auditlog"
import { type Dropped, respond } from "@vigil/bus"
import { inboxPrefix, PROOF_ASKERS, PROOF_SUBJECTS, proofRequestSubject } from "@vigil/events"
import { Data, Effect, Queue, Redacted, Stream } from "effect"
import { answer, startProofHttp } from "./proofs.ts"
import type { ProverCredentials } from "./settings.ts"

/** A read-only query endpoint (the proof HTTP server, the prover's NATS connection) could not be set up. */
export class ProofApiUnavailable extends Data.TaggedError("ProofApiUnavailable")<{
  readonly message: string
  readonly cause: unknown
}> {}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** A dropped proof request as logged; a flood of them keeps only the newest this many waiting for the logger. */
const DROPPED_BACKLOG = 1_024

/**
 * The NATS proof API: `vigil.proof.<asker>.<kind>` answered on the prover's own connection (see natsconf roles),
 * only through an import's reply subject. Its connection and subscription live as long as the scope; returns the
 * answered/dropped counts for the heartbeat.
 */
export const proverResponder = Effect.fn("Auditor.proverResponder")(function* (
  core: AuditCore,
  prover: ProverCredentials,
) {
  const qc = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        connect({
          servers: prover.url,
          name: `vigil-prover-${process.pid}`,
          inboxPrefix: inboxPrefix("prover"),
          authenticator: nkeyAuthenticator(new TextEncoder().encode(Redacted.value(prover.seed))),
          maxReconnectAttempts: -1,
        }),
      catch: (cause) =>
        new ProofApiUnavailable({
          message: `cannot connect to ${prover.url} as the prover for the NATS proof API: ${messageOf(cause)}`,
          cause,
        }),
    }),
    (c) =>
      Effect.tryPromise(() => c.drain()).pipe(
        Effect.catch((e) =>
          Effect.logWarning("the prover connection did not drain").pipe(Effect.annotateLogs({ err: messageOf(e) })),
        ),
      ),
  )
  // The responder tells of drops from the client's callback: they are logged by a fiber of this scope.
  const dropped = yield* Queue.sliding<{ readonly why: Dropped; readonly subject: string; readonly reply: string }>(
    DROPPED_BACKLOG,
  )
  yield* Stream.fromQueue(dropped).pipe(
    Stream.runForEach((d) =>
      Effect.logWarning("proof request dropped: answers go only back through an import").pipe(Effect.annotateLogs(d)),
    ),
    Effect.forkScoped,
  )
  const proofs = yield* Effect.acquireRelease(
    Effect.sync(() =>
      respond(qc, {
        subject: proofRequestSubject("*", "*"),
        askerOf: (subject) => {
          // vigil.proof.<asker>.<kind>: the import from each asker's account names it.
          const [, , asker, kind] = subject.split(".")
          return (PROOF_ASKERS as ReadonlyArray<string>).includes(asker as string) &&
            kind !== undefined &&
            Object.hasOwn(PROOF_SUBJECTS, kind)
            ? asker
            : undefined
        },
        answer: (msg) => {
          const kind = msg.subject.split(".")[3] as keyof typeof PROOF_SUBJECTS
          let req: Record<string, unknown> = {}
          try {
            req = msg.data.length === 0 ? {} : (msg.json() as Record<string, unknown>)
          } catch {
            return JSON.stringify({ ok: false, error: "request is not JSON" })
          }
          try {
            return JSON.stringify(answer(core, kind, req))
          } catch (e) {
            return JSON.stringify({ ok: false, error: messageOf(e) })
          }
        },
        onDropped: (why, subject, reply) => void Queue.offerUnsafe(dropped, { why, subject, reply }),
      }),
    ),
    (r) => Effect.sync(() => r.stop()),
  )
  return proofs.stats
})

/** Proof HTTP on 127.0.0.1:`port` (see `startProofHttp`), closed with the scope. */
export const proofHttp = Effect.fn("Auditor.proofHttp")(function* (core: AuditCore, port: number) {
  const server = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startProofHttp(core, port),
      catch: (cause) =>
        new ProofApiUnavailable({
          message: `cannot serve proofs over HTTP on 127.0.0.1:${port} (VIGIL_AUDIT_HTTP_PORT): ${messageOf(cause)}`,
          cause,
        }),
    }),
    (s) => Effect.sync(() => s.close()),
  )
  const address = server.address()
  yield* Effect.logInfo("proof HTTP listening on 127.0.0.1").pipe(
    Effect.annotateLogs({ port: typeof address === "object" && address !== null ? address.port : port }),
  )
})
