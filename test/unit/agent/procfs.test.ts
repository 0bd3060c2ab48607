// The /proc readers of oversubscription (services/agent/src/oversubscription/procfs.ts), on
// fixed texts in the kernel's formats and on this host's own /proc.
import t from 'tap'
import { parseMeminfo, parsePidStat, parseProcStat } from '../../../services/agent/src/oversubscription/procfs.js'
import { HostCpuSampler, readHostMemory } from '../../../services/agent/src/oversubscription/index.js'

t.test('Checks that /proc/meminfo gives MemAvailable and MemTotal in MiB', async (t) => {
  const text = 'MemTotal:       24684544 kB\nMemFree:        23911524 kB\nMemAvailable:   24201852 kB\nBuffers:           10240 kB\nCached:           400000 kB\n'
  t.same(parseMeminfo(text), { availableMb: 24201852 / 1024, totalMb: 24684544 / 1024 })
  t.same(parseMeminfo('MemTotal: 2048 kB\nMemFree: 512 kB\nCached: 512 kB\n'), { availableMb: 1, totalMb: 2 }, 'old kernels: free + cached')
  t.equal(parseMeminfo('nonsense'), undefined)
  const host = await readHostMemory()
  t.ok(host && host.totalMb > 0 && host.availableMb > 0 && host.availableMb <= host.totalMb, `this host: ${JSON.stringify(host)}`)
  t.equal(await readHostMemory('/nonexistent/meminfo'), undefined)
})

t.test('Checks that /proc/stat gives busy and total CPU time', async (t) => {
  // user nice system idle iowait irq softirq steal guest guest_nice
  t.same(parseProcStat('cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n'), { busy: 150, total: 1000 })
  t.equal(parseProcStat('intr 1 2 3'), undefined)
  t.equal(parseProcStat('cpu  a b c d'), undefined)
  const s = new HostCpuSampler()
  t.equal(await s.sample(), undefined, 'the first call has nothing to compare with')
  const end = Date.now() + 50
  while (Date.now() < end) { /* some CPU time passes */ }
  const busy = await s.sample()
  t.ok(busy === undefined || (busy >= 0 && busy <= 1), `a fraction: ${busy}`)
})

t.test('Checks that /proc/<pid>/stat gives process group, CPU seconds and resident MiB, whatever the command name', async (t) => {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime prio nice threads itreal start vsize rss
  const line = '4242 (we ird) (name)) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 10485760 2560 18446744073709551615'
  t.same(parsePidStat(line), { pgrp: 4240, cpuSeconds: 3, rssMb: 10 })
  t.equal(parsePidStat('garbage'), undefined)
  const own = parsePidStat(await import('node:fs/promises').then((fs) => fs.readFile('/proc/self/stat', 'utf8')))
  t.ok(own && own.rssMb > 1 && own.cpuSeconds >= 0, `this process: ${JSON.stringify(own)}`)
})
