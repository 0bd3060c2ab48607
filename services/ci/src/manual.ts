// A run started by hand (`regatta trigger`, POST /api/v1/runs): the ref resolved to a commit
// with `git ls-remote` when no sha is given.
import { spawn } from 'node:child_process'
import { RegattaError } from '../../../shared/errors/index.js'
import type { Trigger } from './trigger.js'

function lsRemote(url: string, ref: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['ls-remote', url, ref], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.once('error', (e) => { clearTimeout(timer); reject(e) })
    child.once('close', (code) => {
      clearTimeout(timer)
      const sha = out.split('\n').map((l) => l.split('\t')).find((p) => p[1] === ref || p[1] === `refs/heads/${ref}` || p[1] === `refs/tags/${ref}`)?.[0]
      if (code === 0 && sha) resolve(sha)
      else reject(new RegattaError('INVALID_OPERATION', `cannot resolve ${ref} in ${url}${err ? `: ${err.trim().split('\n').pop()}` : ''}`))
    })
  })
}

/** `owner/name` from a clone URL (the last two path parts, without `.git`). */
export function repoName(url: string): string {
  const parts = url.replace(/\.git$/, '').replace(/\/+$/, '').split(/[/:]/).filter(Boolean)
  return parts.slice(-2).join('/') || url
}

export async function manualTrigger(url: string, ref: string, sha?: string): Promise<Trigger> {
  const full = ref.startsWith('refs/') ? ref : `refs/heads/${ref}`
  const resolved = sha ?? await lsRemote(url, ref)
  return {
    kind: 'manual',
    repo: { fullName: repoName(url), cloneUrl: url, defaultBranch: 'main', private: false },
    ref: full,
    sha: resolved,
    ...(full.startsWith('refs/heads/') ? { branch: full.slice('refs/heads/'.length) } : {}),
    ...(full.startsWith('refs/tags/') ? { tag: full.slice('refs/tags/'.length) } : {}),
    actor: 'manual',
  }
}
