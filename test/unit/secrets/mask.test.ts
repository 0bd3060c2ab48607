// Secret masking in a task's output stream, and sealing secrets at rest.
import t from 'tap'
import fc from 'fast-check'
import { MASK, SecretMasker, maskPatterns, newSecretsKey, openSecret, parseSecretsKey, sealSecret } from '../../../shared/secrets/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

/** Pushes the text in the given pieces and returns everything the masker let through. */
function streamed(values: string[], pieces: string[]): string {
  const m = new SecretMasker(values)
  return pieces.map((p) => m.push(p)).join('') + m.flush()
}

t.test('Checks that a secret is masked wherever it sits in a line', async (t) => {
  t.equal(streamed(['hunter22'], ['token=hunter22 and again hunter22\n']), `token=${MASK} and again ${MASK}\n`)
  t.equal(streamed(['hunter22'], ['hunter2 is not it\n']), 'hunter2 is not it\n', 'a prefix alone is left as it is')
})

t.test('Checks that a secret split across chunks (one character at a time) is still masked', async (t) => {
  const text = 'before s3cr3t-value after\n'
  t.equal(streamed(['s3cr3t-value'], text.split('')), `before ${MASK} after\n`)
  t.equal(streamed(['s3cr3t-value'], ['before s3cr', '3t-val', 'ue after\n']), `before ${MASK} after\n`)
})

t.test('Checks that each line of a multi-line secret is masked when printed alone', async (t) => {
  const key = '-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----'
  const out = streamed([key], ['line: MIIEvQIBADANBg\n', key, '\n'])
  t.notMatch(out, /MIIEvQIBADANBg/, 'the key body never shows')
  t.equal(out, `line: ${MASK}\n${MASK}\n`)
})

t.test('Checks that the base64 form of a secret is masked, alone or inside longer base64', async (t) => {
  const secret = 'correct-horse-battery'
  const alone = Buffer.from(secret).toString('base64')
  t.notMatch(streamed([secret], [`${alone}\n`]), /Y29ycmVjdC1ob3Jz/)
  for (const prefix of ['', 'u', 'us', 'user:']) {
    const b64 = Buffer.from(`${prefix}${secret}`).toString('base64')
    const out = streamed([secret], [`Authorization: Basic ${b64}\n`])
    t.ok(out.includes(MASK), `base64 of "${prefix}" + secret is masked: ${out.trim()}`)
    // what is left cannot be decoded back into the secret
    t.notOk(Buffer.from(out.replace(/^Authorization: Basic /, '').replace(MASK, ''), 'base64').toString().includes('horse'))
  }
  const urlSafe = Buffer.from(`??${secret}>>`).toString('base64url')
  t.ok(streamed([secret], [urlSafe]).includes(MASK), 'the URL-safe alphabet too')
})

t.test('Checks that values shorter than the minimum are not masked (they would garble every log)', async (t) => {
  t.equal(streamed(['abc'], ['abc abc\n']), 'abc abc\n')
  t.same(maskPatterns(['', 'no']), [])
})

t.test('Checks that masking never lets a secret through however the output is chunked (property)', async (t) => {
  fc.assert(fc.property(
    fc.string({ minLength: 4, maxLength: 24 }).filter((s) => !s.includes(MASK[0]!)),
    fc.array(fc.string({ maxLength: 12 }), { maxLength: 6 }),
    fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 30 }),
    (secret, noise, cuts) => {
      const text = noise.map((n) => n.replaceAll(secret, '')).join(secret) + secret
      const pieces: string[] = []
      let at = 0
      for (const c of cuts) {
        if (at >= text.length) break
        pieces.push(text.slice(at, at + c))
        at += c
      }
      if (at < text.length) pieces.push(text.slice(at))
      const out = streamed([secret], pieces)
      return !out.includes(secret)
    },
  ), { numRuns: 500 })
  t.pass('500 chunkings of texts holding the secret')
})

t.test('Checks that text without secrets passes through unchanged and at once', async (t) => {
  const m = new SecretMasker(['zz-secret-zz'])
  t.equal(m.push('hello '), 'hello ', 'nothing held back when no secret could start')
  t.equal(m.push('zz-sec'), '', 'a possible start is held')
  t.equal(m.push('tion\n'), 'zz-section\n', 'and released when it turns out not to be one')
})

t.test('Checks that a sealed secret opens only with its key and under its own name', async (t) => {
  const key = parseSecretsKey(newSecretsKey())
  const sealed = sealSecret(key, 'acme/web/NPM_TOKEN', 'npm_abc123')
  t.notMatch(JSON.stringify(sealed), /npm_abc123/, 'the value is not in the stored form')
  t.equal(openSecret(key, 'acme/web/NPM_TOKEN', sealed), 'npm_abc123')
  t.throws(() => openSecret(key, 'acme/other/NPM_TOKEN', sealed), RegattaError, 'moved under another name: refused')
  t.throws(() => openSecret(parseSecretsKey(newSecretsKey()), 'acme/web/NPM_TOKEN', sealed), /another REGATTA_SECRETS_KEY/)
  t.throws(() => parseSecretsKey('short'), /32 random bytes/)
  t.equal(parseSecretsKey('ab'.repeat(32)).length, 32, 'hex keys are read too')
})
