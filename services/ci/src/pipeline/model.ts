// A pipeline once read and checked: defaults applied, shorthands expanded, matrices expanded
// into their combinations. What parse.ts returns and plan.ts reads.
import type { Position } from './errors.js'

export type MatrixValue = string | number | boolean

/** One combination of a matrix: key -> value, keys in the order they were declared. */
export type MatrixCombination = Record<string, MatrixValue>

export interface PushTrigger {
  branches?: string[]
  branchesIgnore?: string[]
  tags?: string[]
  tagsIgnore?: string[]
  paths?: string[]
  pathsIgnore?: string[]
}

export interface PullRequestTrigger {
  /** Globs of the base branch. */
  branches?: string[]
  branchesIgnore?: string[]
  paths?: string[]
  pathsIgnore?: string[]
  types: Array<'opened' | 'synchronize' | 'reopened'>
}

export interface Triggers {
  push?: PushTrigger
  pullRequest?: PullRequestTrigger
  /** Cron expressions, whitespace normalized. */
  schedule: string[]
  manual: boolean
}

export interface Step {
  name: string
  /** May hold ${{ }}; interpolated by the planner. */
  run: string
}

export interface Service {
  image: string
  env: Record<string, string>
  command?: string[]
}

export interface Job {
  name: string
  image: string
  steps: Step[]
  /** Names of jobs of this pipeline. */
  needs: string[]
  /** The combinations to run; undefined for a job without matrix. */
  matrix?: MatrixCombination[]
  /** The matrix's keys (declared and added by include). */
  matrixKeys?: string[]
  env: Record<string, string>
  resources: { cpus: number; mem: number; disk?: number }
  timeoutMs: number
  retries: number
  /** The condition's expression text, without ${{ }} (default `success()`). */
  if: string
  services: Record<string, Service>
  /** `volume`: the cache lives in a persistent volume of the agent, made `size` MiB when missing. */
  cache?: { key: string; paths: string[]; volume?: { size: number } }
  artifacts: string[]
  secrets: string[]
  /** The agents' pool the job runs on. */
  pool: string
  revocable: boolean
  priority: number
}

export interface Pipeline {
  /** The file's path as given to parsePipeline (e.g. `.regatta/ci.yml`). */
  file: string
  name: string
  on: Triggers
  env: Record<string, string>
  /** In file order. */
  jobs: Record<string, Job>
  /** Where each value is in the file, by path (`jobs.test.steps[0].run`), for errors found later. */
  positions: Record<string, Position>
}
