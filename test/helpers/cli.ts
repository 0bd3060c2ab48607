// Runs the `regatta` command as users do (`node services/cli/bin/regatta.mjs ...`, a real
// process): flags only, no URL from the environment the tests run in.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const REGATTA_BIN = fileURLToPath(new URL('../../services/cli/bin/regatta.mjs', import.meta.url))

export interface CliRun { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

export interface CliOptions {
  timeoutMs?: number
  /** Sees the whole stdout so far, each time more comes. */
  onStdout?: (text: string) => void
  cwd?: string
  /** Written to the command's stdin, which is then closed (otherwise stdin is empty). */
  stdin?: string
  env?: Record<string, string>
}

/** Runs the CLI to the end (killed after timeoutMs); never rejects. */
export function regatta(args: string[], o: CliOptions = {}): Promise<CliRun> {
  const started = Date.now()
  return new Promise((resolve) => {
    const env = { ...process.env, ...o.env }
    for (const k of ['REGATTA_CI_URL', 'REGATTA_NATS_URL']) if (!o.env?.[k]) delete env[k]
    const child = spawn(process.execPath, [REGATTA_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env, ...(o.cwd ? { cwd: o.cwd } : {}) })
    child.stdin.end(o.stdin ?? '')
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); o.onStdout?.(stdout) })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}
