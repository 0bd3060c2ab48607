// Wire schema of resources and attributes (the arithmetic lives in shared/resources).
import { Type, type Static } from '@sinclair/typebox'

export const Range = Type.Object({ begin: Type.Integer({ minimum: 0 }), end: Type.Integer({ minimum: 0 }) })
export type Range = Static<typeof Range>

/**
 * One resource, as in Mesos: a scalar (`cpus`, `mem` MiB, `disk` MiB, or any other name) or
 * ranges (`ports`). `role` marks a reservation for that role (absent: unreserved, `*`);
 * `revocable` marks oversubscribed capacity that may be taken back.
 */
export const Resource = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 64 }),
  scalar: Type.Optional(Type.Number({ minimum: 0 })),
  ranges: Type.Optional(Type.Array(Range, { maxItems: 1024 })),
  role: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  principal: Type.Optional(Type.String({ maxLength: 128 })),
  revocable: Type.Optional(Type.Boolean()),
})
export type Resource = Static<typeof Resource>

export const Attributes = Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }))
export type Attributes = Static<typeof Attributes>
