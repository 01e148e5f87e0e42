import t from 'tap'
import { decodeTokenClaims, generateSigningKey, importSigningKey, issueToken } from '../../src/auth/index.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'

const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')

t.test('a real token: its exp and jti, without the key', async (t) => {
  const key = await importSigningKey((await generateSigningKey()).privateJwk)
  const now = Date.UTC(2026, 0, 1)
  const open = await issueToken(key, { issuer: 'keyway', audience: 'keyway', subject: 'svc_a', tokenId: 'tok_1', kind: 'service', now })
  t.same(decodeTokenClaims(open), { expiresAt: undefined, tokenId: 'tok_1' })
  const expiring = await issueToken(key, { issuer: 'keyway', audience: 'keyway', subject: 'svc_a', tokenId: 'tok_2', kind: 'service', now, expiresAt: now + 3_600_000 })
  t.same(decodeTokenClaims(expiring), { expiresAt: now + 3_600_000, tokenId: 'tok_2' })
})

t.test('what cannot be a token is ERR_TOKEN_MALFORMED, never quoting it', async (t) => {
  const bad = [
    'not-a-token',
    'a.b',
    'a.b.c.d.e',
    `${part({ alg: 'EdDSA' })}.${part({ sub: 'x' })}.sig with space`,
    `"${part({ alg: 'EdDSA' })}.${part({ sub: 'x' })}.c2ln"`,
    `${part({ alg: 'EdDSA' })}.bm90LWpzb24.c2ln`,
    `${part([1, 2])}.${part({ sub: 'x' })}.c2ln`,
    `${part({ alg: 'EdDSA' })}.${part({ exp: 'tomorrow' })}.c2ln`,
    `${part({ alg: 'EdDSA' })}.${part({ sub: 'x'.repeat(9000) })}.c2ln`,
  ]
  for (const token of bad) {
    const err = t.throws(() => decodeTokenClaims(token)) as unknown as KeywayError
    t.ok(isKeywayError(err, 'ERR_TOKEN_MALFORMED'), token.slice(0, 40))
    t.match(err.message, /^the token cannot be parsed: /)
    t.notOk(err.message.includes(token), 'not quoted')
  }
})
