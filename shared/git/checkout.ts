// Checks a git commit out into a directory: the agent for a task's workspace, the CI service to
// read a commit's pipeline files. The token of a private repository goes to git as an HTTP
// header on the command line of this one call, never into the URL, the repository's config or
// the logs.
import { spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import type { Checkout } from '../protocol/index.js'
import { RegattaError } from '../errors/index.js'

export const WORKSPACE_DIR = 'workspace'
export const WORKSPACE_MOUNT = '/workspace'

function git(args: string[], cwd: string, timeoutMs: number, signal?: AbortSignal, secret?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal))
    // its own process group: a fetch runs helpers (git-remote-http, ssh) that a kill of git alone leaves running
    const child = spawn('git', args, {
      cwd,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', LC_ALL: 'C' },
    })
    let err = ''
    let stoppedBy: 'timeout' | 'abort' | undefined
    const killGroup = (why: 'timeout' | 'abort'): void => {
      stoppedBy ??= why
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        child.kill('SIGKILL')
      }
    }
    const onAbort = (): void => killGroup('abort')
    child.stderr.on('data', (d: Buffer) => { if (err.length < 8192) err += d.toString() })
    const timer = setTimeout(() => killGroup('timeout'), timeoutMs)
    signal?.addEventListener('abort', onAbort, { once: true })
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    child.once('error', (e) => { done(); reject(e) })
    child.once('close', (code, sig) => {
      done()
      if (stoppedBy === 'abort') return reject(abortError(signal!))
      if (code === 0) return resolve()
      const text = (secret ? err.split(secret).join('***') : err).trim().split('\n').slice(-3).join(' | ')
      reject(new Error(sig || stoppedBy ? `git ${args[0]} timed out` : `git ${args.find((a) => !a.startsWith('-') && !a.includes('=')) ?? ''} failed: ${text}`))
    })
  })
}

/** Thrown when the checkout's signal aborts it (the task was killed): not a failure of the checkout. */
export class CheckoutAborted extends Error {
  constructor(readonly reason: unknown) {
    super(`checkout aborted: ${reason instanceof Error ? reason.message : String(reason ?? 'aborted')}`)
    this.name = 'CheckoutAborted'
  }
}

const abortError = (signal: AbortSignal): CheckoutAborted => new CheckoutAborted(signal.reason)

/**
 * Fetches `sha` (falling back to `ref`) into `dir` and checks it out, detached. An abort of
 * `signal` kills the git running (with its helpers) and rejects with CheckoutAborted.
 */
export async function checkoutCommit(dir: string, c: Checkout, timeoutMs = 300_000, signal?: AbortSignal): Promise<void> {
  await mkdir(dir, { recursive: true })
  const auth = c.token ? ['-c', `http.extraHeader=Authorization: Basic ${Buffer.from(`x-access-token:${c.token}`).toString('base64')}`] : []
  const secret = c.token ? Buffer.from(`x-access-token:${c.token}`).toString('base64') : undefined
  try {
    await git(['init', '-q'], dir, timeoutMs, signal)
    try {
      await git([...auth, 'fetch', '-q', '--depth', '1', '--no-tags', c.url, c.sha], dir, timeoutMs, signal, secret)
    } catch (bySha) {
      // some servers refuse a bare sha: fetch the ref, then the commit must be in it
      if (!c.ref || bySha instanceof CheckoutAborted) throw bySha
      await git([...auth, 'fetch', '-q', '--no-tags', c.url, c.ref], dir, timeoutMs, signal, secret)
    }
    await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', c.sha], dir, timeoutMs, signal)
  } catch (err) {
    if (err instanceof CheckoutAborted) throw err
    throw new RegattaError('CHECKOUT_FAILED', `checkout of ${c.sha.slice(0, 12)} from ${c.url.replace(/\/\/[^@/]*@/, '//***@')}: ${(err as Error).message}`)
  }
}
