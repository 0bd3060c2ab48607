// A commit's pipeline files, read from a checkout made for the purpose, and hashFiles() over it
// (cache keys). The checkout lives while `use` runs (planning), then is removed.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { checkoutCommit } from '../../../shared/git/checkout.js'
import { globMatch } from './pipeline/index.js'
import type { Trigger } from './trigger.js'

export const PIPELINE_DIR = '.regatta'
const MAX_FILES = 50_000

export interface CommitFiles {
  pipelines: Array<{ path: string; text: string }>
  /** sha256 over the files matching the globs (path and content, in path order); '' when none match. */
  hashFiles(patterns: string[]): string
}

async function walk(dir: string, root: string, out: string[]): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (out.length >= MAX_FILES) return
    if (e.name === '.git') continue
    const p = join(dir, e.name)
    if (e.isDirectory()) await walk(p, root, out)
    else if (e.isFile()) out.push(relative(root, p))
  }
}

/** Checks the trigger's commit out into a temp dir and hands its pipeline files to `use`. */
export async function withCommit<T>(trigger: Trigger, token: string | undefined, use: (files: CommitFiles) => T | Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'regatta-plan-'))
  try {
    await checkoutCommit(dir, {
      url: trigger.repo.cloneUrl, sha: trigger.sha, ref: trigger.ref,
      ...(token && trigger.repo.cloneUrl.startsWith('https://') ? { token } : {}),
    }, 120_000)
    let names: string[] = []
    try {
      names = (await readdir(join(dir, PIPELINE_DIR))).filter((n) => /\.ya?ml$/.test(n)).sort()
    } catch {
      // no .regatta directory: no pipelines
    }
    const pipelines = await Promise.all(names.map(async (n) => ({ path: `${PIPELINE_DIR}/${n}`, text: await readFile(join(dir, PIPELINE_DIR, n), 'utf8') })))
    const files: string[] = []
    await walk(dir, dir, files)
    files.sort()
    const hashed = new Map<string, string>()
    return await use({
      pipelines,
      hashFiles(patterns) {
        const key = patterns.join('\u0000')
        const cached = hashed.get(key)
        if (cached !== undefined) return cached
        const matched = files.filter((f) => patterns.some((p) => globMatch(p, f)))
        let out = ''
        if (matched.length > 0) {
          const h = createHash('sha256')
          for (const f of matched) h.update(f).update('\u0000').update(readFileSync(join(dir, f))).update('\u0000')
          out = h.digest('hex')
        }
        hashed.set(key, out)
        return out
      },
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
