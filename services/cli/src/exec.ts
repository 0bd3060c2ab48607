// `regatta exec`: runs one task on the cluster as a tiny framework (like mesos-execute),
// streams its output and returns its exit code.
import { randomUUID } from 'node:crypto'
import type { NatsConnection } from 'nats'
import { OutputChunk, Subjects, decode, isTerminal, type Offer, type TaskStatus } from '../../../shared/protocol/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { Scheduler } from '../../../shared/scheduler/index.js'
import type { Logger } from '../../../shared/log/index.js'

export interface ExecOptions {
  nc: NatsConnection
  command: string[]
  image?: string
  cpus: number
  mem: number
  role: string
  network?: 'none' | 'host'
  env?: Record<string, string>
  logger: Logger
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  /** Say so on stderr when no offer fits for this long. */
  waitNoticeMs?: number
}

export interface ExecResult {
  exitCode: number
  status: TaskStatus
}

export function exitCodeOf(status: TaskStatus): number {
  if (status.state === 'FINISHED') return 0
  if (status.exitCode !== undefined && status.exitCode !== null) return status.exitCode === 0 ? 1 : status.exitCode
  return status.state === 'KILLED' ? 137 : 1
}

export async function execTask(o: ExecOptions): Promise<ExecResult> {
  const taskId = `exec-${randomUUID().slice(0, 8)}`
  let launched = false
  let finish!: (s: TaskStatus) => void
  let fail!: (e: Error) => void
  const done = new Promise<TaskStatus>((res, rej) => { finish = res; fail = rej })

  const fits = (offer: Offer): boolean => scalar(offer.resources, 'cpus') >= o.cpus && scalar(offer.resources, 'mem') >= o.mem
  const scheduler: Scheduler = new Scheduler({
    nc: o.nc,
    framework: { name: 'regatta-exec', roles: [o.role], failoverTimeoutMs: 0 },
    logger: o.logger,
    onEvent(e) {
      if (e.type === 'OFFERS') {
        const pick = launched ? undefined : e.offers.find(fits)
        const rest = e.offers.filter((x) => x !== pick).map((x) => x.id)
        if (rest.length) void scheduler.decline(rest, { refuseSeconds: 1 }).catch(() => undefined)
        if (!pick) return
        launched = true
        scheduler.launch(pick, [{
          taskId,
          name: o.command.join(' ').slice(0, 200),
          resources: [{ name: 'cpus', scalar: o.cpus }, { name: 'mem', scalar: o.mem }],
          container: {
            command: o.command,
            ...(o.image ? { image: o.image } : {}),
            ...(o.network ? { network: o.network } : {}),
            ...(o.env ? { env: o.env } : {}),
          },
          streamOutput: true,
        }], { refuseSeconds: 60 }).catch(fail)
      } else if (e.type === 'UPDATE') {
        scheduler.acknowledge(e.status)
        if (e.status.taskId === taskId && isTerminal(e.status.state)) finish(e.status)
      } else if (e.type === 'ERROR') {
        fail(new Error(e.message))
      }
    },
  })

  // output first, so that nothing the task prints is missed
  const output = o.nc.subscribe(Subjects.taskOutputAnyAgent(scheduler.frameworkId, taskId))
  void (async () => {
    for await (const m of output) {
      try {
        const chunk = decode(OutputChunk, m.data, 'output chunk')
        ;(chunk.stream === 'stdout' ? o.stdout : o.stderr).write(chunk.data)
      } catch {
        // a bad chunk is not worth failing the run for
      }
    }
  })()
  const notice = setTimeout(() => {
    if (!launched) o.stderr.write(`regatta: waiting for an offer with cpus >= ${o.cpus} and mem >= ${o.mem} (role ${o.role})\n`)
  }, o.waitNoticeMs ?? 5_000)
  try {
    await scheduler.start()
    const status = await done
    // the output travels beside the status: let what is in flight arrive
    await o.nc.flush()
    return { exitCode: exitCodeOf(status), status }
  } finally {
    clearTimeout(notice)
    output.unsubscribe()
    await scheduler.teardown().catch(() => undefined)
  }
}
