// Process-containerizer tasks seen from a test: a task script that records its own pid, and a
// way to end the task by that id when no agent will (a stopped agent leaves its tasks running).
import { readFile } from 'node:fs/promises'
import { waitUntil } from './wait.js'

/**
 * A shell line that writes the task's pid to `pidFile`, then execs `command` in the same
 * process. The process containerizer makes that process the leader of the task's group.
 */
export function recordPid(pidFile: string, command: string): string {
  return `echo $$ > '${pidFile}'; exec ${command}`
}

/** Waits until `pidFile` holds a pid and returns it. */
export function readPid(pidFile: string, timeoutMs = 5_000): Promise<number> {
  return waitUntil(`a pid in ${pidFile}`, async () => {
    const text = await readFile(pidFile, 'utf8').catch(() => '')
    const pid = Number(text.trim())
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined
  }, timeoutMs)
}

/** Whether a process with this pid exists (and is not a zombie waiting for its parent). */
export async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return !/^\d+ \(.*\) Z /.test(stat)
}

/** SIGKILLs the task's process group (the process containerizer makes each task a group leader). */
export function killTaskGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // already gone
  }
}
