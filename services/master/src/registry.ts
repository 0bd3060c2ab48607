// The master's registry in NATS KV: what a new leader starts from after a failover. Admitted
// agents, frameworks (with their failover timeouts) and role settings live here; tasks do not
// (a new leader learns them from agents re-registering, then reconciles with frameworks).
import type { KV, NatsConnection } from 'nats'
import { Type, type Static } from '@sinclair/typebox'
import { AgentInfo, FrameworkInfo, Buckets, Resource, validate } from '../../../shared/protocol/index.js'
import type { Logger } from '../../../shared/log/index.js'
import type { RoleConfig } from './allocator/types.js'
import { kvKeys, openKv } from '../../../shared/nats/kv.js'

export const AgentRecord = Type.Object({
  info: AgentInfo,
  registeredAt: Type.Number(),
  draining: Type.Boolean(),
  drainingSince: Type.Optional(Type.Number()),
})
export type AgentRecord = Static<typeof AgentRecord>

export const FrameworkRecord = Type.Object({
  info: Type.Composite([FrameworkInfo, Type.Object({ id: Type.String() })]),
  registeredAt: Type.Number(),
})
export type FrameworkRecord = Static<typeof FrameworkRecord>

export const RoleRecord = Type.Object({
  weight: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  quota: Type.Optional(Type.Record(Type.String(), Type.Number({ minimum: 0 }))),
})

/** An agent's dynamic reservations and persistent volumes (see reservations.ts), kept across failovers and agent restarts. */
export const ReservationRecord = Type.Object({
  agentId: Type.String(),
  reserved: Type.Array(Resource),
  volumes: Type.Array(Resource),
})
export type ReservationRecord = Static<typeof ReservationRecord>

export interface RegistryContents {
  agents: AgentRecord[]
  frameworks: FrameworkRecord[]
  roles: Map<string, RoleConfig>
  /** By agent id. */
  reservations: Map<string, { reserved: Resource[]; volumes: Resource[] }>
}

/** KV keys allow letters, digits and `-_/=.`; names are escaped so that any id fits. */
const keyPart = (s: string): string => s.replace(/[^A-Za-z0-9-]/g, (c) => `_${c.codePointAt(0)!.toString(16)}_`)
const unkey = (s: string): string => s.replace(/_([0-9a-f]+)_/g, (_, hex: string) => String.fromCodePoint(parseInt(hex, 16)))

export class Registry {
  private kv?: KV
  /** Writes are queued per key, so that the last write of a key is the one that stays. */
  private readonly chains = new Map<string, Promise<void>>()

  /**
   * `mayWrite` fences writes: a master that no longer holds the lease (it was paused, or cut
   * off) drops its queued writes instead of overwriting the new leader's.
   */
  constructor(
    private readonly nc: NatsConnection, private readonly log: Logger,
    private readonly mayWrite: () => boolean, private readonly replicas = 1,
  ) {}

  async open(): Promise<void> {
    this.kv ??= await openKv(this.nc, Buckets.registry, { history: 1, replicas: this.replicas })
  }

  async load(): Promise<RegistryContents> {
    await this.open()
    const kv = this.kv!
    const out: RegistryContents = { agents: [], frameworks: [], roles: new Map(), reservations: new Map() }
    // one stream info request (kv.keys() follows a consumer until nothing is pending)
    for (const k of await kvKeys(this.nc, Buckets.registry)) {
      const e = await kv.get(k)
      if (!e || e.operation !== 'PUT') continue
      try {
        const value: unknown = e.json()
        if (k.startsWith('agent.')) out.agents.push(validate(AgentRecord, value, `registry ${k}`))
        else if (k.startsWith('framework.')) out.frameworks.push(validate(FrameworkRecord, value, `registry ${k}`))
        else if (k.startsWith('role.')) out.roles.set(unkey(k.slice('role.'.length)), validate(RoleRecord, value, `registry ${k}`))
        else if (k.startsWith('reservation.')) {
          const r = validate(ReservationRecord, value, `registry ${k}`)
          out.reservations.set(r.agentId, { reserved: r.reserved, volumes: r.volumes })
        }
      } catch (err) {
        this.log.warn({ key: k, err: (err as Error).message }, 'ignoring a bad registry entry')
      }
    }
    return out
  }

  /** Queues a write; the promise says whether it was stored (false: dropped or given up, logged). */
  private write(key: string, value: unknown | undefined): Promise<boolean> {
    const op = async (): Promise<boolean> => {
      await this.open()
      for (let attempt = 0; ; attempt++) {
        if (!this.mayWrite()) {
          this.log.warn({ key }, 'not leading: registry write dropped')
          return false
        }
        try {
          if (value === undefined) await this.kv!.delete(key)
          else await this.kv!.put(key, JSON.stringify(value))
          return true
        } catch (err) {
          if (attempt >= 10) {
            this.log.error({ key, err: (err as Error).message }, 'giving up a registry write')
            return false
          }
          await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)))
        }
      }
    }
    const next = (this.chains.get(key) ?? Promise.resolve()).then(op, op)
    const settled = next.then(() => undefined, () => undefined)
    this.chains.set(key, settled)
    void settled.finally(() => { if (this.chains.get(key) === settled) this.chains.delete(key) })
    return next.catch((err: unknown) => {
      this.log.error({ key, err: (err as Error).message }, 'a registry write failed')
      return false
    })
  }

  /** Stores an agent; the promise says whether it was stored (callers that must know await it). */
  putAgent(r: AgentRecord): Promise<boolean> {
    return this.write(`agent.${keyPart(r.info.id)}`, r)
  }

  deleteAgent(id: string): void {
    void this.write(`agent.${keyPart(id)}`, undefined)
  }

  putFramework(r: FrameworkRecord): void {
    void this.write(`framework.${keyPart(r.info.id)}`, r)
  }

  deleteFramework(id: string): void {
    void this.write(`framework.${keyPart(id)}`, undefined)
  }

  /** An agent's reservations and volumes; none deletes the key (kept when the agent goes: it may come back with its volumes). */
  putReservations(agentId: string, r: { reserved: Resource[]; volumes: Resource[] }): Promise<boolean> {
    const value: ReservationRecord | undefined = r.reserved.length + r.volumes.length > 0 ? { agentId, reserved: r.reserved, volumes: r.volumes } : undefined
    return this.write(`reservation.${keyPart(agentId)}`, value)
  }

  /** A role's settings (weight, quota); the promise says whether they were stored. */
  putRole(name: string, config: RoleConfig): Promise<boolean> {
    return this.write(`role.${keyPart(name)}`, config)
  }

  /** Waits for the writes queued so far (tests, and a leader stepping down). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.chains.values()])
  }
}
