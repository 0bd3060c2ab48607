// Samplers that read /proc: the host's free memory and busy CPU (for the QoS controller), and the
// usage of a process group (for process-containerizer tasks that have no cgroup to read).
import { readFile, readdir } from 'node:fs/promises'
import type { UsageReading } from './estimator.js'

/** Clock ticks per second of /proc times (USER_HZ: 100 on every Linux build that matters). */
const USER_HZ = 100
const PAGE_BYTES = 4096
const MIB = 1024 * 1024

/** The host's MemAvailable and MemTotal in MiB, or undefined where /proc/meminfo is not readable. */
export async function readHostMemory(path = '/proc/meminfo'): Promise<{ availableMb: number; totalMb: number } | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  return parseMeminfo(text)
}

export function parseMeminfo(text: string): { availableMb: number; totalMb: number } | undefined {
  const kb = (name: string): number | undefined => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text)
    return m ? Number(m[1]) : undefined
  }
  const total = kb('MemTotal')
  // kernels before 3.14 have no MemAvailable: free plus page cache is its old approximation
  const available = kb('MemAvailable') ?? ((kb('MemFree') ?? 0) + (kb('Cached') ?? 0))
  if (total === undefined) return undefined
  return { availableMb: available / 1024, totalMb: total / 1024 }
}

/** The host's CPU time counters (the `cpu` line of /proc/stat): busy and total jiffies. */
export function parseProcStat(text: string): { busy: number; total: number } | undefined {
  const line = /^cpu\s+(.+)$/m.exec(text)
  if (!line) return undefined
  const f = line[1]!.trim().split(/\s+/).map(Number)
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) return undefined
  // user nice system idle iowait irq softirq steal (guest times are already in user and nice)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
  const idle = (f[3] ?? 0) + (f[4] ?? 0)
  return { busy: total - idle, total }
}

/** The fraction of the host's CPU time that was busy between two calls (undefined on the first). */
export class HostCpuSampler {
  private prev?: { busy: number; total: number }

  constructor(private readonly path = '/proc/stat') {}

  async sample(): Promise<number | undefined> {
    const text = await readFile(this.path, 'utf8').catch(() => undefined)
    const now = text === undefined ? undefined : parseProcStat(text)
    if (!now) return undefined
    const prev = this.prev
    this.prev = now
    if (!prev || now.total <= prev.total) return undefined
    return Math.min(1, Math.max(0, (now.busy - prev.busy) / (now.total - prev.total)))
  }
}

/**
 * The fields of /proc/<pid>/stat that matter here: process group, CPU time (utime + stime,
 * seconds) and resident memory (MiB). The command name may hold spaces and parentheses: the
 * fields are counted from the last `)`.
 */
export function parsePidStat(text: string): { pgrp: number; cpuSeconds: number; rssMb: number } | undefined {
  const end = text.lastIndexOf(')')
  if (end < 0) return undefined
  // after ") ": state(3) ppid(4) pgrp(5) ... utime(14) stime(15) ... rss(24)
  const f = text.slice(end + 2).trim().split(/\s+/)
  const field = (n: number): number => Number(f[n - 3])
  const pgrp = field(5)
  const utime = field(14)
  const stime = field(15)
  const rss = field(24)
  if (![pgrp, utime, stime, rss].every(Number.isFinite)) return undefined
  return { pgrp, cpuSeconds: (utime + stime) / USER_HZ, rssMb: (rss * PAGE_BYTES) / MIB }
}

/**
 * The usage of every process in a process group: CPU time of those alive now (what exited
 * children used is not counted) and the sum of their resident memory (shared pages counted in
 * each). Undefined when no process of the group is left. One scan of /proc serves every group
 * asked for within 250 ms (an agent samples all its tasks at once).
 */
export async function processGroupUsage(pgid: number, procRoot = '/proc'): Promise<UsageReading | undefined> {
  return (await scanGroups(procRoot)).get(pgid)
}

const SCAN_REUSE_MS = 250
const scans = new Map<string, { at: number; groups: Promise<Map<number, UsageReading>> }>()

function scanGroups(procRoot: string): Promise<Map<number, UsageReading>> {
  const cached = scans.get(procRoot)
  if (cached && Date.now() - cached.at < SCAN_REUSE_MS) return cached.groups
  const groups = (async () => {
    const out = new Map<number, UsageReading>()
    const names = await readdir(procRoot).catch(() => [] as string[])
    await Promise.all(names.filter((n) => /^\d+$/.test(n)).map(async (n) => {
      const text = await readFile(`${procRoot}/${n}/stat`, 'utf8').catch(() => undefined)
      const s = text === undefined ? undefined : parsePidStat(text)
      if (!s) return
      const g = out.get(s.pgrp) ?? { cpuSeconds: 0, memMb: 0 }
      g.cpuSeconds! += s.cpuSeconds
      g.memMb! += s.rssMb
      out.set(s.pgrp, g)
    }))
    return out
  })()
  scans.set(procRoot, { at: Date.now(), groups })
  return groups
}
