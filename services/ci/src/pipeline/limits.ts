// The bounds on pipeline files and expressions (documented in pipelines/README.md): a file
// from any repository must not be able to exhaust the CI service's memory, stack or time.

export const LIMITS = {
  /** Bytes of one pipeline file. */
  fileBytes: 256 * 1024,
  /** Pipeline files in one repository (one run). */
  files: 100,
  /** Jobs declared in one pipeline. */
  jobs: 256,
  /** Concrete jobs of one matrix job, after include/exclude. */
  matrixCombinations: 256,
  /** Keys of one matrix: its lists and the keys its include rows add. */
  matrixKeys: 64,
  /** Concrete jobs of one pipeline, after matrix expansion (as many as a run may have). */
  plannedJobs: 512,
  /**
   * Concrete jobs of one run (every pipeline a push starts). A run is stored as one NATS KV value,
   * at most 1 MiB with its jobs' states: about 350 bytes a job when planned, more with each attempt.
   */
  runJobs: 512,
  /** Bytes of JSON all planned jobs of one run come to (the other half of the run's 1 MiB). */
  runPlanBytes: 384 * 1024,
  /** Characters of text (scripts, names, env, images...) all planned jobs of one pipeline come to. */
  plannedText: 8 * 1024 * 1024,
  /** Steps of one job. */
  steps: 256,
  /** Sidecar services of one job. */
  services: 10,
  /** Nesting of YAML collections (maps and lists inside each other). */
  depth: 32,
  /** Nesting of flow collections ([ and {) seen before the YAML parser runs. */
  flowDepth: 64,
  /** Aliases (*name) a file may expand, against alias bombs ("billion laughs"). */
  aliases: 100,
  /** Characters of one expression (the inside of ${{ }}, or an `if`). */
  expressionLength: 4096,
  /** Nesting of an expression (parentheses, !, function calls, index brackets). */
  expressionDepth: 32,
  /** Characters of any string an expression produces. */
  expressionResult: 1024 * 1024,
  /** Cron schedules of one pipeline. */
  schedules: 10,
  /** Job timeout bounds. */
  minTimeoutMs: 1000,
  maxTimeoutMs: 24 * 3600 * 1000,
} as const

export const DEFAULTS = {
  cpus: 1,
  mem: 1024,
  timeoutMs: 60 * 60 * 1000,
  retries: 0,
  priority: 50,
  revocable: false,
  pool: 'default',
  /** MiB of disk reserved for a new cache volume (`cache: { volume: true }`). */
  cacheVolumeMb: 1024,
  /** A job without `if` runs when every job it needs succeeded. */
  if: 'success()',
} as const
