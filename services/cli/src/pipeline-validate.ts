// `regatta pipeline validate [PATH...]`: checks pipeline files and prints each error as
// `file:line:column: message`, then a summary line. A directory means its `.regatta/*.yml`
// (or, without a .regatta folder, its own *.yml); no path means the current directory.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  LIMITS, formatPipelineError, parsePipeline, sortPipelineErrors, type Pipeline, type PipelineError,
} from '../../ci/src/pipeline/index.js'

const PIPELINE_FILE = /\.ya?ml$/

/** Checks the files and directories; `ok` is false when any error was found. */
export async function validatePipelines(paths: string[]): Promise<{ ok: boolean; output: string }> {
  const lines: string[] = []
  const errors: PipelineError[] = []
  let checked = 0
  for (const path of paths.length > 0 ? paths : ['.']) {
    const group = await pipelineFiles(path)
    if ('problem' in group) {
      lines.push(`${path}: ${group.problem}`)
      continue
    }
    // pipelines of one repository must have different names (statuses are regatta/<name>/<job>)
    const names = new Map<string, string>()
    for (const file of group.files) {
      checked++
      const r = await checkFile(file)
      if (!r.ok) {
        errors.push(...r.errors)
        continue
      }
      const other = names.get(r.pipeline.name)
      if (other !== undefined) {
        errors.push({
          file, ...(r.pipeline.positions.name ?? { line: 1, column: 1 }), path: 'name',
          message: `name: pipeline "${r.pipeline.name}" is also defined in ${other}; names must differ`,
        })
      } else names.set(r.pipeline.name, file)
    }
  }
  lines.push(...sortPipelineErrors(errors).map(formatPipelineError))
  const badFiles = new Set(errors.map((e) => e.file)).size
  const problems = lines.length
  const files = `${checked} pipeline file${checked === 1 ? '' : 's'} checked`
  lines.push(problems === 0
    ? `${files}: no errors`
    : `${files}: ${errors.length} error${errors.length === 1 ? '' : 's'} in ${badFiles} file${badFiles === 1 ? '' : 's'}${problems > errors.length ? `, ${problems - errors.length} path${problems - errors.length === 1 ? '' : 's'} not readable` : ''}`)
  return { ok: problems === 0, output: lines.join('\n') }
}

async function pipelineFiles(path: string): Promise<{ files: string[] } | { problem: string }> {
  let info
  try {
    info = await stat(path)
  } catch (e) {
    return { problem: `cannot read: ${reason(e)}` }
  }
  if (!info.isDirectory()) return { files: [path] }
  const dotRegatta = join(path, '.regatta')
  const dir = await stat(dotRegatta).then((s) => (s.isDirectory() ? dotRegatta : path), () => path)
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (e) {
    return { problem: `cannot read: ${reason(e)}` }
  }
  const files = entries.filter((e) => e.isFile() && PIPELINE_FILE.test(e.name)).map((e) => join(dir, e.name)).sort()
  if (files.length === 0) return { problem: 'no pipeline files here (.regatta/*.yml, or *.yml)' }
  return { files }
}

async function checkFile(file: string): Promise<{ ok: true; pipeline: Pipeline } | { ok: false; errors: PipelineError[] }> {
  const at1 = { line: 1, column: 1 }
  try {
    const { size } = await stat(file)
    // refuse before reading: a pipeline file is small
    if (size > LIMITS.fileBytes) {
      return { ok: false, errors: [{ file, ...at1, path: '', message: `the file is ${size} bytes; a pipeline file may have at most ${LIMITS.fileBytes} (256 KiB)` }] }
    }
    return parsePipeline(file, await readFile(file, 'utf8'))
  } catch (e) {
    return { ok: false, errors: [{ file, ...at1, path: '', message: `cannot read: ${reason(e)}` }] }
  }
}

function reason(e: unknown): string {
  const code = (e as { code?: string }).code
  if (code === 'ENOENT') return 'no such file or directory'
  if (code === 'EACCES') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory'
  return e instanceof Error ? e.message : String(e)
}
