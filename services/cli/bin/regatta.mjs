#!/usr/bin/env node
// The `regatta` command. Runs a bundle of the TypeScript sources (our code and small packages
// bundled by esbuild), built on first use and again whenever a source is newer; without esbuild
// it falls back to running the sources through tsx. The bundle starts several times faster
// than tsx, which `regatta exec` latency depends on.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..', '..')
const entry = join(here, '..', 'src', 'main.ts')
const dist = join(here, '..', 'dist')

function newestSource(dir, newest = 0) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue
    const p = join(dir, e.name)
    if (e.isDirectory()) newest = newestSource(p, newest)
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs)
  }
  return newest
}

// One directory per source version, so that concurrent invocations never read a half-built bundle.
const version = `b-${Math.floor(Math.max(newestSource(join(root, 'services')), newestSource(join(root, 'shared'))))}`
const out = join(dist, version)
let target = join(out, 'regatta.js')
if (!existsSync(target)) {
  try {
    const esbuild = await import('esbuild')
    const tmp = join(dist, `tmp-${process.pid}-${Date.now()}`)
    mkdirSync(dist, { recursive: true })
    esbuild.buildSync({
      entryPoints: { regatta: entry }, outdir: tmp, bundle: true, splitting: true, platform: 'node', format: 'esm', target: 'node20',
      // small pure-JS packages are bundled (loading typebox file by file costs ~130 ms); the
      // large or native ones load from node_modules; commands load their service lazily
      // (separate chunks), so `exec` never loads fastify or dockerode
      external: ['dockerode', 'fastify', '@fastify/*', 'pino', 'prom-client', '@octokit/*', 'xstate', 'yaml', 'esbuild', 'tsx'],
      banner: { js: "import { createRequire as __regattaRequire } from 'node:module'; const require = __regattaRequire(import.meta.url);" },
      sourcemap: 'linked', logLevel: 'error',
    })
    try {
      renameSync(tmp, out)
    } catch {
      rmSync(tmp, { recursive: true, force: true }) // another invocation built the same version
    }
    for (const old of readdirSync(dist).filter((d) => d.startsWith('b-') && d !== version).sort().slice(0, -2)) {
      rmSync(join(dist, old), { recursive: true, force: true })
    }
  } catch (err) {
    process.stderr.write(`regatta: could not bundle the CLI (${err.message}); running the sources through tsx\n`)
    const { register } = await import('tsx/esm/api')
    register()
    target = entry
  }
}
await import(pathToFileURL(target).href)
