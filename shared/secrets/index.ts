// Repository secrets: sealed at rest (crypto.ts) and masked in output (mask.ts).
export { MASK, MIN_MASKED_LENGTH, SecretMasker, maskPatterns } from './mask.js'
export { newSecretsKey, openSecret, parseSecretsKey, sealSecret, type SealedSecret } from './crypto.js'
