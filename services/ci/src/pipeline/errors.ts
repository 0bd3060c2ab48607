// Errors in pipeline files: each names the file, the line and column (1-based) and what is
// wrong where, e.g. `.regatta/ci.yml:12:7: jobs.test.needs: unknown job "biuld"`.
import { RegattaError } from '../../../../shared/errors/index.js'

export interface Position {
  line: number
  column: number
}

export interface PipelineError extends Position {
  file: string
  /** Where in the document, e.g. `jobs.test.needs[0]` ('' for the whole file or a YAML syntax error). */
  path: string
  /** What is wrong, starting with the path when there is one. */
  message: string
}

export function pipelineError(file: string, at: Position, path: string, what: string): PipelineError {
  return { file, line: at.line, column: at.column, path, message: path ? `${path}: ${what}` : what }
}

/** `file:line:column: message`, the form compilers use (editors and terminals link it). */
export function formatPipelineError(e: PipelineError): string {
  return `${e.file}:${e.line}:${e.column}: ${e.message}`
}

/** Sorted by file, then line, then column: the order a reader goes through a file. */
export function sortPipelineErrors(errors: PipelineError[]): PipelineError[] {
  return [...errors].sort((a, b) =>
    a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.column - b.column)
}

/** One RegattaError (code INVALID_PIPELINE) carrying every error, one per line, for a run's status. */
export function pipelineFailure(errors: PipelineError[]): RegattaError {
  return new RegattaError('INVALID_PIPELINE', sortPipelineErrors(errors).map(formatPipelineError).join('\n'))
}

/** Renders a document path: `jobs.test.steps[0].run`; odd keys are quoted (`env["a b"]`). */
export function renderPath(segments: ReadonlyArray<string | number>): string {
  let out = ''
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`
    else if (/^[A-Za-z0-9_-]+$/.test(s)) out += out ? `.${s}` : s
    else out += `[${JSON.stringify(s)}]`
  }
  return out
}

/** The path of `key` in the map at `parent`, rendered as renderPath does. */
export function childPath(parent: string, key: string | number): string {
  return parent + renderPath(typeof key === 'number' ? [key] : ['x', key]).slice(1)
}
