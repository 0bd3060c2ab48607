// A real local git repository for tests: files committed on a branch, cloned by URL file://.
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

export interface TestRepo {
  dir: string
  url: string
  /** Writes the files and commits them; returns the new commit's sha. */
  commit(files: Record<string, string>, message?: string): Promise<string>
  remove(): Promise<void>
}

export async function createRepo(branch = 'main'): Promise<TestRepo> {
  const dir = await mkdtemp(join(tmpdir(), 'regatta-repo-'))
  const git = (...args: string[]): string => execFileSync('git', args, {
    cwd: dir, env: { ...process.env, GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 't@example.test', GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 't@example.test' },
  }).toString().trim()
  git('init', '-q', '-b', branch)
  return {
    dir,
    url: `file://${dir}`,
    async commit(files, message = 'change') {
      for (const [path, text] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true })
        await writeFile(join(dir, path), text)
      }
      git('add', '-A')
      git('commit', '-q', '--allow-empty', '-m', message)
      return git('rev-parse', 'HEAD')
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  }
}
