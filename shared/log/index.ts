// Structured logging (pino). Services log with the ids that matter: agentId, frameworkId, taskId.
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger(name: string, options: { level?: string } = {}): Logger {
  const level = options.level ?? process.env.REGATTA_LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'warn' : 'info')
  return pino({ name, level, base: { service: name } })
}

/** A logger that writes nothing (tests and benchmarks that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
