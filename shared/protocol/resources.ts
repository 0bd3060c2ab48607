// Wire schema of resources and attributes (the arithmetic lives in shared/resources).
import { Type, type Static } from '@sinclair/typebox'

export const Range = Type.Object({ begin: Type.Integer({ minimum: 0 }), end: Type.Integer({ minimum: 0 }) })
export type Range = Static<typeof Range>

/** A persistent volume's id: unique per role on an agent; names its directory there. */
export const VolumeId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

/**
 * A persistent volume (Mesos's `DiskInfo`), carried by a `disk` resource reserved for a role: a
 * directory on the agent that outlives the tasks using it. `containerPath` is where a task
 * sees it: relative to the sandbox (`/sandbox` in Docker), or absolute (in Docker a bind mount
 * there; the process containerizer links it at the same path inside the sandbox).
 */
export const DiskInfo = Type.Object({
  persistence: Type.Object({ id: VolumeId }),
  containerPath: Type.String({ minLength: 1, maxLength: 1024 }),
})
export type DiskInfo = Static<typeof DiskInfo>

/**
 * One resource, as in Mesos: a scalar (`cpus`, `mem` MiB, `disk` MiB, or any other name) or
 * ranges (`ports`). `role` marks a reservation for that role (absent: unreserved, `*`), made by
 * `principal` when it is dynamic; `revocable` marks oversubscribed capacity that may be taken
 * back; `disk` makes reserved disk a persistent volume.
 */
export const Resource = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 64 }),
  scalar: Type.Optional(Type.Number({ minimum: 0 })),
  ranges: Type.Optional(Type.Array(Range, { maxItems: 1024 })),
  role: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  principal: Type.Optional(Type.String({ maxLength: 128 })),
  revocable: Type.Optional(Type.Boolean()),
  disk: Type.Optional(DiskInfo),
})
export type Resource = Static<typeof Resource>

export const Attributes = Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }))
export type Attributes = Static<typeof Attributes>

/**
 * ACCEPT operations on reservations and volumes, as in Mesos: RESERVE turns unreserved
 * resources of the offers into resources reserved for the framework's role (name the role on
 * each; the principal is the framework's); UNRESERVE gives a dynamic reservation back; CREATE
 * turns reserved disk into persistent volumes; DESTROY turns volumes back into reserved disk
 * (and deletes their data). The `Operation` union in scheduler.ts holds them beside LAUNCH.
 */
export const ReserveOperation = Type.Object({ type: Type.Literal('RESERVE'), resources: Type.Array(Resource, { minItems: 1, maxItems: 256 }) })
export const UnreserveOperation = Type.Object({ type: Type.Literal('UNRESERVE'), resources: Type.Array(Resource, { minItems: 1, maxItems: 256 }) })
export const CreateOperation = Type.Object({ type: Type.Literal('CREATE'), volumes: Type.Array(Resource, { minItems: 1, maxItems: 64 }) })
export const DestroyOperation = Type.Object({ type: Type.Literal('DESTROY'), volumes: Type.Array(Resource, { minItems: 1, maxItems: 64 }) })
export const ReservationOperation = Type.Union([ReserveOperation, UnreserveOperation, CreateOperation, DestroyOperation])
export type ReservationOperation = Static<typeof ReservationOperation>
