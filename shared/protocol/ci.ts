// Between CI service replicas: only the one holding the CI lease runs the framework (runs, jobs,
// offers); the others serve the HTTP API and webhooks and hand their writes to it over NATS.
import { Type, type Static } from '@sinclair/typebox'

/** A trigger as the CI service builds it (services/ci/src/trigger.ts); checked again when planned. */
const TriggerMessage = Type.Object({
  kind: Type.String({ minLength: 1, maxLength: 32 }),
  repo: Type.Object({
    fullName: Type.String({ minLength: 1, maxLength: 512 }),
    cloneUrl: Type.String({ minLength: 1, maxLength: 4096 }),
    defaultBranch: Type.String({ maxLength: 1024 }),
    private: Type.Boolean(),
  }, { additionalProperties: true }),
  ref: Type.String({ minLength: 1, maxLength: 4096 }),
  sha: Type.String({ pattern: '^[0-9a-f]{7,64}$' }),
}, { additionalProperties: true })

const RunId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })

export const CiLeaderCall = Type.Union([
  /** Plan and start a run now; answered with the run. */
  Type.Object({ type: Type.Literal('TRIGGER'), trigger: TriggerMessage }),
  /** Queue a trigger (a webhook: answered at once, planned soon). */
  Type.Object({ type: Type.Literal('SUBMIT'), trigger: TriggerMessage }),
  Type.Object({ type: Type.Literal('CANCEL'), runId: RunId }),
  Type.Object({ type: Type.Literal('RERUN'), runId: RunId }),
])
export type CiLeaderCall = Static<typeof CiLeaderCall>

/** A run document (services/ci/src/service.ts RunDocument), or `{ ok: true }` for SUBMIT. */
export const CiLeaderReply = Type.Union([
  Type.Object({ ok: Type.Literal(true) }),
  Type.Object({ meta: Type.Object({ runId: Type.String() }, { additionalProperties: true }), machine: Type.Object({}, { additionalProperties: true }) }),
])
export type CiLeaderReply = Static<typeof CiLeaderReply>
