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

function git(args: string[], cwd: string, timeoutMs: number, secret?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, {
      cwd,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', LC_ALL: 'C' },
    })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { if (err.length < 8192) err += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (e) => { clearTimeout(timer); reject(e) })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) return resolve()
      const text = (secret ? err.split(secret).join('***') : err).trim().split('\n').slice(-3).join(' | ')
      reject(new Error(signal ? `git ${args[0]} timed out` : `git ${args.find((a) => !a.startsWith('-') && !a.includes('=')) ?? ''} failed: ${text}`))
    })
  })
}

/** Fetches `sha` (falling back to `ref`) into `dir` and checks it out, detached. */
export async function checkoutCommit(dir: string, c: Checkout, timeoutMs = 300_000): Promise<void> {
  await mkdir(dir, { recursive: true })
  const auth = c.token ? ['-c', `http.extraHeader=Authorization: Basic ${Buffer.from(`x-access-token:${c.token}`).toString('base64')}`] : []
  const secret = c.token ? Buffer.from(`x-access-token:${c.token}`).toString('base64') : undefined
  try {
    await git(['init', '-q'], dir, timeoutMs)
    try {
      await git([...auth, 'fetch', '-q', '--depth', '1', '--no-tags', c.url, c.sha], dir, timeoutMs, secret)
    } catch (bySha) {
      // some servers refuse a bare sha: fetch the ref, then the commit must be in it
      if (!c.ref) throw bySha
      await git([...auth, 'fetch', '-q', '--no-tags', c.url, c.ref], dir, timeoutMs, secret)
    }
    await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', c.sha], dir, timeoutMs)
  } catch (err) {
    throw new RegattaError('CHECKOUT_FAILED', `checkout of ${c.sha.slice(0, 12)} from ${c.url.replace(/\/\/[^@/]*@/, '//***@')}: ${(err as Error).message}`)
  }
}
