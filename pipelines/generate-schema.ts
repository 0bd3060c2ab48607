// Writes pipelines/schema.json from the TypeBox schema in services/ci/src/pipeline/schema.ts,
// the one place the format is declared: `npx tsx pipelines/generate-schema.ts`.
// test/unit/pipeline/schema.test.ts fails when the file is out of date.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { pipelineJsonSchema } from '../services/ci/src/pipeline/schema.js'

const out = fileURLToPath(new URL('./schema.json', import.meta.url))
writeFileSync(out, `${JSON.stringify(pipelineJsonSchema(), null, 2)}\n`)
console.log(`wrote ${out}`)
