// Repository secrets over NATS: the CLI (or any operator tool) asks a CI service to store, list
// or delete them; only the CI service holds the key that seals them.
import { Type, type Static } from '@sinclair/typebox'

/** `owner/name`, as GitHub names a repository (the clone URL's last two parts for other hosts). */
export const RepoName = Type.String({ minLength: 3, maxLength: 200, pattern: '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$' })
/** An environment variable name: what a job reads the secret as. */
export const SecretName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' })
/** Most bytes of one secret value. */
export const MAX_SECRET_BYTES = 65_536

export const SecretsCall = Type.Union([
  Type.Object({ type: Type.Literal('SET'), repo: RepoName, name: SecretName, value: Type.String({ minLength: 1, maxLength: MAX_SECRET_BYTES }) }),
  Type.Object({ type: Type.Literal('LIST'), repo: RepoName }),
  Type.Object({ type: Type.Literal('DELETE'), repo: RepoName, name: SecretName }),
])
export type SecretsCall = Static<typeof SecretsCall>

/** What LIST answers: names and when each was set, never a value. */
export const SecretList = Type.Object({
  repo: Type.String(),
  secrets: Type.Array(Type.Object({ name: Type.String(), updatedAt: Type.Number() })),
})
export type SecretList = Static<typeof SecretList>

export const SecretsReply = Type.Union([Type.Object({ ok: Type.Literal(true) }), SecretList])
export type SecretsReply = Static<typeof SecretsReply>
