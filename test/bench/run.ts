// `npm run bench -- [name...]`: runs the named benchmarks (all when none is named). Each prints
// its figures and, last, one JSON line.
import { readdir } from 'node:fs/promises'

const here = new URL('.', import.meta.url)
const all = (await readdir(here)).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => f.replace(/\.ts$/, '')).sort()
const wanted = process.argv.slice(2)
const unknown = wanted.filter((w) => !all.includes(w))
if (unknown.length) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; known: ${all.join(', ')}\n`)
  process.exit(2)
}
for (const name of wanted.length ? wanted : all) {
  process.stdout.write(`# bench ${name}\n`)
  const mod = (await import(new URL(`${name}.ts`, here).href)) as { run(): Promise<void> }
  await mod.run()
}
process.exit(0)
