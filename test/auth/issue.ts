import t from 'tap'
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from 'jose'
import { issueToken } from '../../src/auth/issue.js'
import { generateSigningKey, importSigningKey } from '../../src/auth/keys.js'

const NOW = Date.UTC(2026, 0, 1)

t.test('service token: header and claims', async (t) => {
  const gen = await generateSigningKey()
  const key = await importSigningKey(gen.privateJwk)
  const token = await issueToken(key, {
    issuer: 'keyway',
    audience: 'keyway-gateway',
    subject: 'svc_1',
    tokenId: 'tok_a',
    kind: 'service',
    now: NOW + 999,
  })
  t.same(decodeProtectedHeader(token), { alg: 'EdDSA', kid: gen.kid, typ: 'JWT' })
  t.same(decodeJwt(token), { kw: 'service', iss: 'keyway', aud: 'keyway-gateway', sub: 'svc_1', jti: 'tok_a', iat: NOW / 1000 })
  const pub = await importJWK(gen.publicJwk, 'EdDSA')
  const { payload } = await jwtVerify(token, pub, { currentDate: new Date(NOW) })
  t.equal(payload.sub, 'svc_1')
})

t.test('exp is set in seconds, Infinity means none', async (t) => {
  const key = await importSigningKey((await generateSigningKey()).privateJwk)
  const base = { issuer: 'i', audience: 'a', subject: 's', tokenId: 'j', now: NOW }
  const login = await issueToken(key, { ...base, kind: 'login', expiresAt: NOW + 3_600_500 })
  t.match(decodeJwt(login), { kw: 'login', exp: NOW / 1000 + 3600 })
  const open = await issueToken(key, { ...base, kind: 'service', expiresAt: Infinity })
  t.equal(decodeJwt(open).exp, undefined)
})

t.test('login tokens need an expiry; times must be numbers', async (t) => {
  const key = await importSigningKey((await generateSigningKey()).privateJwk)
  const base = { issuer: 'i', audience: 'a', subject: 's', tokenId: 'j', now: NOW }
  await t.rejects(issueToken(key, { ...base, kind: 'login' }), { code: 'ERR_INTERNAL' })
  await t.rejects(issueToken(key, { ...base, kind: 'service', expiresAt: NaN }), { code: 'ERR_INTERNAL' })
  await t.rejects(issueToken(key, { ...base, kind: 'service', now: NaN }), { code: 'ERR_INTERNAL' })
})
