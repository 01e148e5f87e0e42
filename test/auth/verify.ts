import t, { type Test } from 'tap'
import { createHmac, generateKeyPairSync } from 'node:crypto'
import { base64url, CompactEncrypt, CompactSign, SignJWT, type JWK } from 'jose'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type ErrorCode } from '../../src/errors.js'
import type { CompiledPolicy } from '../../src/policy/types.js'
import { tokenFingerprint } from '../../src/auth/fingerprint.js'
import { issueToken, type IssueTokenOptions } from '../../src/auth/issue.js'
import { createKeySet, generateSigningKey, importSigningKey, type KeySet, type SigningKey } from '../../src/auth/keys.js'
import { checkTokenStillValid, createTokenVerifier, type TokenVerifierOptions } from '../../src/auth/verify.js'
import { serviceAccount, stubPolicy, userAccount } from '../fixtures/auth/policy-stub.js'

const ISS = 'https://keyway.test'
const AUD = 'keyway-gateway'
const START = Date.UTC(2026, 0, 1)
const MIN = 60_000
const HOUR = 3_600_000

interface Setup {
  clock: ManualClock
  key: SigningKey
  publicJwk: JWK
  keySet: KeySet
  setPolicy(p: CompiledPolicy): void
  verifier: ReturnType<typeof createTokenVerifier>
  issue(o?: Partial<IssueTokenOptions>): Promise<string>
}

async function setup(options: Partial<TokenVerifierOptions> = {}): Promise<Setup> {
  const clock = new ManualClock(START)
  const gen = await generateSigningKey()
  const key = await importSigningKey(gen.privateJwk)
  const keySet = await createKeySet({ keys: [gen.publicJwk] })
  let policy = stubPolicy([
    serviceAccount('svc_1', [{ id: 'tok_1' }, { id: 'tok_old', expiresAt: START + HOUR }]),
    userAccount('usr_1'),
  ])
  const verifier = createTokenVerifier({ keySet, issuer: ISS, audience: AUD, clock, policy: () => policy, ...options })
  return {
    clock,
    key,
    publicJwk: gen.publicJwk,
    keySet,
    setPolicy: (p) => {
      policy = p
    },
    verifier,
    issue: (o = {}) =>
      issueToken(key, { issuer: ISS, audience: AUD, subject: 'svc_1', tokenId: 'tok_1', kind: 'service', now: clock.now(), ...o }),
  }
}

/** Rejects with `code`, and neither message nor detail contains the token. */
async function rejectsWith(t: Test, p: Promise<unknown>, code: ErrorCode, token: string, msg?: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isKeywayError(err)) {
    t.fail(`${msg ?? code}: expected a KeywayError, got ${String(err)}`)
    return
  }
  t.equal(err.code, code, msg ?? code)
  const text = `${err.message} ${JSON.stringify(err.detail ?? {})}`
  t.notOk(token.length > 0 && text.includes(token), 'error does not contain the token')
  const [h, p2, s] = token.split('.')
  if (s !== undefined && s.length > 8) t.notOk(text.includes(s), 'error does not contain the signature')
  if (h !== undefined && p2 !== undefined && p2.length > 8) t.notOk(text.includes(p2), 'error does not contain the payload')
  if (token.length <= 8192 && token !== '') t.equal(err.detail?.fingerprint, tokenFingerprint(token), 'detail has the fingerprint')
}

/** The last character of `seg` with a stray low bit set: decodes to the same bytes. */
function nonCanonical(seg: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const v = alphabet.indexOf(seg[seg.length - 1]!)
  return alphabet[v | 1]!
}

const b64json = (v: unknown): string => base64url.encode(JSON.stringify(v))

/** Signs arbitrary header and payload with the setup's key (for claims issueToken would never produce). */
async function signRaw(s: Setup, payload: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  // `crit` lets headers jose does not know through on the signing side only.
  const crit = Object.fromEntries(((header.crit as string[] | undefined) ?? []).map((name) => [name, true]))
  return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: s.key.kid, typ: 'JWT', ...header }).sign(s.key.privateKey, { crit })
}

function claims(s: Setup, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { iss: ISS, aud: AUD, sub: 'svc_1', jti: 'tok_1', iat: Math.floor(s.clock.now() / 1000), kw: 'service', ...extra }
}

t.test('a valid service token verifies', async (t) => {
  const s = await setup()
  const token = await s.issue()
  const v = await s.verifier.verify(token)
  t.match(v, { accountId: 'svc_1', tokenId: 'tok_1', kind: 'service', issuedAt: START, expiresAt: Infinity, fingerprint: tokenFingerprint(token) })
  t.equal(v.account.id, 'svc_1')
  t.equal(v.account.type, 'service')
})

t.test('a valid login token verifies', async (t) => {
  const s = await setup()
  const token = await s.issue({ subject: 'usr_1', tokenId: 'tok_login', kind: 'login', expiresAt: START + HOUR })
  const v = await s.verifier.verify(token)
  t.match(v, { accountId: 'usr_1', kind: 'login', expiresAt: START + HOUR })
})

t.test('missing token', async (t) => {
  const s = await setup()
  await rejectsWith(t, s.verifier.verify(''), 'ERR_TOKEN_MISSING', '')
  await rejectsWith(t, s.verifier.verify(undefined as unknown as string), 'ERR_TOKEN_MISSING', '')
})

t.test('alg none (crafted by hand)', async (t) => {
  const s = await setup()
  const payload = b64json(claims(s))
  for (const alg of ['none', 'None', 'NONE']) {
    const token = `${b64json({ alg, kid: s.key.kid, typ: 'JWT' })}.${payload}.`
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_ALG', token, `alg ${alg}`)
  }
  // with a junk signature too
  const token = `${b64json({ alg: 'none', typ: 'JWT' })}.${payload}.AAAA`
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_ALG', token, 'alg none with signature')
})

t.test('HS256 signed with the public key bytes (key confusion)', async (t) => {
  const s = await setup()
  const header = b64json({ alg: 'HS256', kid: s.key.kid, typ: 'JWT' })
  const payload = b64json(claims(s))
  const secrets = [base64url.decode(s.publicJwk.x!), Buffer.from(JSON.stringify(s.publicJwk)), Buffer.from(s.publicJwk.x!)]
  for (const secret of secrets) {
    const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url')
    const token = `${header}.${payload}.${sig}`
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_ALG', token)
  }
})

t.test('other algorithms are refused', async (t) => {
  const s = await setup()
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const es = await new SignJWT(claims(s)).setProtectedHeader({ alg: 'ES256', kid: s.key.kid, typ: 'JWT' }).sign(privateKey)
  await rejectsWith(t, s.verifier.verify(es), 'ERR_TOKEN_ALG', es, 'ES256')
  for (const alg of ['Ed25519', 'RS256', 'eddsa', 42, null]) {
    const token = `${b64json({ alg, kid: s.key.kid })}.${b64json(claims(s))}.AAAA`
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_ALG', token, `alg ${String(alg)}`)
  }
  const noAlg = `${b64json({ kid: s.key.kid })}.${b64json(claims(s))}.AAAA`
  await rejectsWith(t, s.verifier.verify(noAlg), 'ERR_TOKEN_ALG', noAlg, 'no alg')
})

t.test('unknown, missing and path-like kid', async (t) => {
  const s = await setup()
  const other = await importSigningKey((await generateSigningKey()).privateJwk)
  const unknown = await issueToken(other, { issuer: ISS, audience: AUD, subject: 'svc_1', tokenId: 'tok_1', kind: 'service', now: START })
  await rejectsWith(t, s.verifier.verify(unknown), 'ERR_TOKEN_KID_UNKNOWN', unknown, 'kid of another key')
  for (const kid of ['../../etc/passwd', '/etc/passwd', 'file:///etc/passwd', 'https://127.0.0.1/jwks.json', '__proto__', '']) {
    const token = await signRaw(s, claims(s), { kid })
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_KID_UNKNOWN', token, `kid ${kid}`)
  }
  const noKid = await new SignJWT(claims(s)).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).sign(s.key.privateKey)
  await rejectsWith(t, s.verifier.verify(noKid), 'ERR_TOKEN_KID_UNKNOWN', noKid, 'no kid')
  const numKid = `${b64json({ alg: 'EdDSA', kid: 7 })}.${b64json(claims(s))}.AAAA`
  await rejectsWith(t, s.verifier.verify(numKid), 'ERR_TOKEN_KID_UNKNOWN', numKid, 'numeric kid')
  t.equal(s.verifier.stats.misses, 0, 'none of these reached the signature check')
})

t.test('bad signatures', async (t) => {
  const s = await setup()
  const token = await s.issue()
  const [h, p, sig] = token.split('.') as [string, string, string]
  // another key under our kid
  const other = await importSigningKey((await generateSigningKey()).privateJwk)
  const forged = await issueToken({ kid: s.key.kid, privateKey: other.privateKey }, {
    issuer: ISS,
    audience: AUD,
    subject: 'svc_1',
    tokenId: 'tok_1',
    kind: 'service',
    now: START,
  })
  await rejectsWith(t, s.verifier.verify(forged), 'ERR_TOKEN_SIGNATURE', forged, 'other key, our kid')
  // tampered payload: another subject
  const tampered = `${h}.${b64json(claims(s, { sub: 'svc_admin' }))}.${sig}`
  await rejectsWith(t, s.verifier.verify(tampered), 'ERR_TOKEN_SIGNATURE', tampered, 'tampered payload')
  // flipped signature bit
  const bytes = base64url.decode(sig)
  bytes[0] = bytes[0]! ^ 1
  const flipped = `${h}.${p}.${base64url.encode(bytes)}`
  await rejectsWith(t, s.verifier.verify(flipped), 'ERR_TOKEN_SIGNATURE', flipped, 'flipped bit')
})

t.test('wrong issuer, wrong audience', async (t) => {
  const s = await setup()
  const iss = await s.issue({ issuer: 'https://evil.test' })
  await rejectsWith(t, s.verifier.verify(iss), 'ERR_TOKEN_ISSUER', iss)
  const aud = await s.issue({ audience: 'other-service' })
  await rejectsWith(t, s.verifier.verify(aud), 'ERR_TOKEN_AUDIENCE', aud)
  const audArray = await signRaw(s, claims(s, { aud: ['x', AUD] }))
  t.equal((await s.verifier.verify(audArray)).accountId, 'svc_1', 'aud array containing ours is fine')
})

t.test('expired (ManualClock), with the clock tolerance', async (t) => {
  const s = await setup({ clockToleranceSec: 30 })
  const token = await s.issue({ expiresAt: START + MIN })
  s.clock.advance(MIN + 29_000) // inside the tolerance
  t.equal((await s.verifier.verify(token)).expiresAt, START + MIN)
  s.clock.advance(1_000)
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_EXPIRED', token, 'cached, past exp+tolerance')
  s.verifier.clearCache()
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_EXPIRED', token, 'uncached, past exp+tolerance')

  const strict = await setup({ clockToleranceSec: 0 })
  const t2 = await strict.issue({ expiresAt: START + MIN })
  await strict.verifier.verify(t2)
  strict.clock.advance(MIN)
  await rejectsWith(t, strict.verifier.verify(t2), 'ERR_TOKEN_EXPIRED', t2, 'tolerance 0, at exp')
})

t.test('not yet valid: nbf or iat in the future', async (t) => {
  const s = await setup({ clockToleranceSec: 30 })
  const nbf = await signRaw(s, claims(s, { nbf: START / 1000 + 60 }))
  await rejectsWith(t, s.verifier.verify(nbf), 'ERR_TOKEN_NOT_YET_VALID', nbf, 'nbf')
  const iat = await s.issue({ now: START + 5 * MIN })
  await rejectsWith(t, s.verifier.verify(iat), 'ERR_TOKEN_NOT_YET_VALID', iat, 'iat')
  const skew = await s.issue({ now: START + 20_000 })
  t.ok(await s.verifier.verify(skew), 'iat 20 s ahead is within tolerance')
  s.clock.advance(5 * MIN)
  t.ok(await s.verifier.verify(iat), 'valid once the clock catches up')
  t.ok(await s.verifier.verify(nbf), 'nbf too')
})

t.test('missing or mistyped claims', async (t) => {
  const s = await setup()
  for (const name of ['jti', 'sub', 'iat', 'iss', 'aud', 'kw']) {
    const c = claims(s)
    delete c[name]
    const token = await signRaw(s, c)
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_CLAIM_MISSING', token, `missing ${name}`)
  }
  const mistyped: Array<[string, unknown]> = [
    ['jti', 5],
    ['jti', ''],
    ['sub', ['svc_1']],
    ['sub', ''],
    ['iat', 'yesterday'],
    ['exp', 'tomorrow'],
    ['kw', 'admin'],
  ]
  for (const [name, value] of mistyped) {
    const token = await signRaw(s, claims(s, { [name]: value }))
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_CLAIM_MISSING', token, `${name}: ${JSON.stringify(value)}`)
  }
  const loginNoExp = await signRaw(s, claims(s, { sub: 'usr_1', kw: 'login' }))
  await rejectsWith(t, s.verifier.verify(loginNoExp), 'ERR_TOKEN_CLAIM_MISSING', loginNoExp, 'login token without exp')
})

t.test('requireExp', async (t) => {
  const s = await setup({ requireExp: true })
  const open = await s.issue()
  await rejectsWith(t, s.verifier.verify(open), 'ERR_TOKEN_CLAIM_MISSING', open)
  t.ok(await s.verifier.verify(await s.issue({ expiresAt: START + HOUR })))
})

t.test('malformed tokens', async (t) => {
  const s = await setup()
  const good = await s.issue()
  const [h, p, sig] = good.split('.') as [string, string, string]
  const cases: Array<[string, string]> = [
    ['two segments', `${h}.${p}`],
    ['one segment', 'justonesegment'],
    ['four segments', `${h}.${p}.${sig}.${sig}`],
    ['bad base64url (+/=)', `${h}.${p}+/=.${sig}`],
    ['bad base64url header', `*${h}.${p}.${sig}`],
    ['padding', `${h}=.${p}.${sig}`],
    ['empty header', `.${p}.${sig}`],
    ['empty payload', `${h}..${sig}`],
    ['header is not JSON', `${base64url.encode('not json')}.${p}.${sig}`],
    ['header is an array', `${b64json(['EdDSA'])}.${p}.${sig}`],
    ['header is a string', `${b64json('EdDSA')}.${p}.${sig}`],
    ['header is null', `${b64json(null)}.${p}.${sig}`],
    ['no signature', `${h}.${p}.`],
    ['1 MB header', `${'A'.repeat(1024 * 1024)}.${p}.${sig}`],
    ['just over 8 KiB', `${h}.${p}.${sig}${'A'.repeat(8193 - good.length)}`],
    ['whitespace', ` ${good}`],
    ['non-canonical base64url signature (same bytes)', `${h}.${p}.${sig.slice(0, -1)}${nonCanonical(sig)}`],
    ['impossible base64url length', `${h}.${p}.${sig}AAA`],
    ['typ is not JWT', await signRaw(s, claims(s), { typ: 'at+jwt' })],
    [
      'payload is not JSON',
      await new CompactSign(new TextEncoder().encode('not json'))
        .setProtectedHeader({ alg: 'EdDSA', kid: s.key.kid, typ: 'JWT' })
        .sign(s.key.privateKey),
    ],
    ['crit header', await signRaw(s, claims(s), { crit: ['x-unknown'], 'x-unknown': 1 })],
  ]
  // JWE (5 segments)
  const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(claims(s))))
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: s.key.kid })
    .encrypt(new Uint8Array(32))
  cases.push(['JWE, 5 segments', jwe])
  for (const [name, token] of cases) {
    await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_MALFORMED', token, name)
  }
  t.equal(s.verifier.cacheSize, 0, 'nothing cached')
})

t.test('service token policy checks', async (t) => {
  const s = await setup()
  const revoked = await s.issue({ tokenId: 'tok_gone' })
  await rejectsWith(t, s.verifier.verify(revoked), 'ERR_TOKEN_REVOKED', revoked, 'jti not listed')

  const old = await s.issue({ tokenId: 'tok_old' })
  t.ok(await s.verifier.verify(old), 'rotated-out token valid during its grace')
  s.clock.advance(HOUR - 1)
  t.ok(await s.verifier.verify(old), 'one ms before the record expires')
  s.clock.advance(1)
  await rejectsWith(t, s.verifier.verify(old), 'ERR_TOKEN_REVOKED', old, 'grace over (cached)')
  s.verifier.clearCache()
  await rejectsWith(t, s.verifier.verify(old), 'ERR_TOKEN_REVOKED', old, 'grace over (uncached)')

  const unknown = await s.issue({ subject: 'svc_nobody' })
  await rejectsWith(t, s.verifier.verify(unknown), 'ERR_ACCOUNT_UNKNOWN', unknown)

  const good = await s.issue()
  await s.verifier.verify(good)
  s.setPolicy(stubPolicy([serviceAccount('svc_1', [{ id: 'tok_1' }], { suspended: true })]))
  await rejectsWith(t, s.verifier.verify(good), 'ERR_ACCOUNT_SUSPENDED', good)

  // a service token whose subject is a user account
  s.setPolicy(stubPolicy([userAccount('svc_1')]))
  await rejectsWith(t, s.verifier.verify(good), 'ERR_TOKEN_REVOKED', good, 'service token for a user account')
})

t.test('login token policy checks', async (t) => {
  const s = await setup()
  const token = await s.issue({ subject: 'usr_1', tokenId: 'tok_l', kind: 'login', expiresAt: START + HOUR })
  t.ok(await s.verifier.verify(token))
  s.setPolicy(stubPolicy([userAccount('usr_1', { suspended: true })]))
  await rejectsWith(t, s.verifier.verify(token), 'ERR_ACCOUNT_SUSPENDED', token)
  s.setPolicy(stubPolicy([]))
  await rejectsWith(t, s.verifier.verify(token), 'ERR_ACCOUNT_UNKNOWN', token)
  s.setPolicy(stubPolicy([serviceAccount('usr_1', [{ id: 'tok_l' }])]))
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_REVOKED', token, 'login token for a service account')
})

t.test('cache: the second verify does not run the signature check', async (t) => {
  const s = await setup()
  const token = await s.issue()
  await s.verifier.verify(token)
  t.same(s.verifier.stats, { hits: 0, misses: 1 })
  t.equal(s.verifier.cacheSize, 1)
  const again = await s.verifier.verify(token)
  t.same(s.verifier.stats, { hits: 1, misses: 1 })
  t.equal(again.tokenId, 'tok_1')
  await s.verifier.verify(token)
  t.same(s.verifier.stats, { hits: 2, misses: 1 })
  s.verifier.clearCache()
  t.equal(s.verifier.cacheSize, 0)
  await s.verifier.verify(token)
  t.same(s.verifier.stats, { hits: 2, misses: 2 })
})

t.test('cache: failures are not cached', async (t) => {
  const s = await setup()
  const revoked = await s.issue({ tokenId: 'tok_gone' })
  await rejectsWith(t, s.verifier.verify(revoked), 'ERR_TOKEN_REVOKED', revoked)
  // the crypto part is cached (it passed), the policy part is re-asked each time
  t.equal(s.verifier.cacheSize, 1)
  const bad = await s.issue({ issuer: 'x' })
  await rejectsWith(t, s.verifier.verify(bad), 'ERR_TOKEN_ISSUER', bad)
  await rejectsWith(t, s.verifier.verify(bad), 'ERR_TOKEN_ISSUER', bad)
  t.equal(s.verifier.cacheSize, 1)
  // revoked token becomes valid when the policy lists it: nothing stale either way
  s.setPolicy(stubPolicy([serviceAccount('svc_1', [{ id: 'tok_gone' }])]))
  t.ok(await s.verifier.verify(revoked))
})

t.test('cache: an entry expires with the token exp', async (t) => {
  const s = await setup({ clockToleranceSec: 30 })
  const token = await s.issue({ expiresAt: START + 10 * MIN })
  await s.verifier.verify(token)
  s.clock.advance(10 * MIN - 1)
  await s.verifier.verify(token)
  t.same(s.verifier.stats, { hits: 1, misses: 1 }, 'cached until exp')
  s.clock.advance(1)
  // past exp but inside the tolerance: the entry is gone, jose runs again and accepts, nothing is re-cached
  await s.verifier.verify(token)
  t.same(s.verifier.stats, { hits: 1, misses: 2 }, 'entry expired at exp')
  t.equal(s.verifier.cacheSize, 0)
  s.clock.advance(30_000)
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_EXPIRED', token)
})

t.test('cache: a policy change (jti removed) rejects a cached token', async (t) => {
  const s = await setup()
  const token = await s.issue()
  await s.verifier.verify(token)
  await s.verifier.verify(token)
  t.equal(s.verifier.stats.hits, 1)
  s.setPolicy(stubPolicy([serviceAccount('svc_1', [{ id: 'tok_other' }])], 2))
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_REVOKED', token)
  t.equal(s.verifier.stats.hits, 2, 'it was a cache hit')
  s.setPolicy(stubPolicy([serviceAccount('svc_1', [{ id: 'tok_1', expiresAt: START + MIN }])], 3))
  t.ok(await s.verifier.verify(token), 'listed again, with a grace')
  s.clock.advance(MIN)
  await rejectsWith(t, s.verifier.verify(token), 'ERR_TOKEN_REVOKED', token, 'grace over on a cache hit')
})

t.test('cache: bounded, and disabled with cacheSize 0', async (t) => {
  const s = await setup({ cacheSize: 3 })
  for (let i = 0; i < 5; i++) await s.verifier.verify(await s.issue({ now: START - i * 1000 }))
  t.equal(s.verifier.cacheSize, 3)
  const off = await setup({ cacheSize: 0 })
  const token = await off.issue()
  await off.verifier.verify(token)
  await off.verifier.verify(token)
  t.same(off.verifier.stats, { hits: 0, misses: 2 })
  t.equal(off.verifier.cacheSize, 0)
  t.throws(() => createTokenVerifier({ keySet: s.keySet, issuer: ISS, audience: AUD, clock: s.clock, policy: () => stubPolicy([]), cacheSize: -1 }), {
    code: 'ERR_CONFIG_INVALID',
  })
})

t.test('key rotation: two keys verify; removing one rejects its tokens', async (t) => {
  const clock = new ManualClock(START)
  const genA = await generateSigningKey()
  const genB = await generateSigningKey()
  const keyA = await importSigningKey(genA.privateJwk)
  const keyB = await importSigningKey(genB.privateJwk)
  const policy = stubPolicy([serviceAccount('svc_1', [{ id: 'tok_a' }, { id: 'tok_b' }])])
  const both = await createKeySet({ keys: [genA.publicJwk, genB.publicJwk] })
  const opts = { issuer: ISS, audience: AUD, subject: 'svc_1', kind: 'service' as const, now: START }
  const tokA = await issueToken(keyA, { ...opts, tokenId: 'tok_a' })
  const tokB = await issueToken(keyB, { ...opts, tokenId: 'tok_b' })

  let keySet = both
  const verifier = createTokenVerifier({ keySet: () => keySet, issuer: ISS, audience: AUD, clock, policy: () => policy })
  t.equal((await verifier.verify(tokA)).tokenId, 'tok_a')
  t.equal((await verifier.verify(tokB)).tokenId, 'tok_b')

  keySet = await createKeySet({ keys: [genB.publicJwk] })
  await rejectsWith(t, verifier.verify(tokA), 'ERR_TOKEN_KID_UNKNOWN', tokA, 'cached token of the removed key')
  verifier.clearCache()
  await rejectsWith(t, verifier.verify(tokA), 'ERR_TOKEN_KID_UNKNOWN', tokA, 'after clearCache')
  t.equal((await verifier.verify(tokB)).tokenId, 'tok_b')

  // a fixed key set per verifier, the other way to rotate
  const onlyB = createTokenVerifier({ keySet: await createKeySet({ keys: [genB.publicJwk] }), issuer: ISS, audience: AUD, clock, policy: () => policy })
  await rejectsWith(t, onlyB.verify(tokA), 'ERR_TOKEN_KID_UNKNOWN', tokA, 'fixed key set')
})

t.test('checkTokenStillValid alone', async (t) => {
  const policy = stubPolicy([
    serviceAccount('svc_1', [{ id: 'tok_1' }, { id: 'tok_grace', expiresAt: START + MIN }]),
    serviceAccount('svc_off', [{ id: 'tok_1' }], { suspended: true }),
    userAccount('usr_1'),
  ])
  const svc = (accountId: string, tokenId: string) => ({ accountId, tokenId, kind: 'service' as const })
  t.equal(checkTokenStillValid(svc('svc_1', 'tok_1'), policy, START), undefined)
  t.equal(checkTokenStillValid(svc('svc_1', 'tok_grace'), policy, START + MIN - 1), undefined)
  t.equal(checkTokenStillValid(svc('svc_1', 'tok_grace'), policy, START + MIN), 'ERR_TOKEN_REVOKED')
  t.equal(checkTokenStillValid(svc('svc_1', 'tok_x'), policy, START), 'ERR_TOKEN_REVOKED')
  t.equal(checkTokenStillValid(svc('svc_off', 'tok_1'), policy, START), 'ERR_ACCOUNT_SUSPENDED')
  t.equal(checkTokenStillValid(svc('svc_none', 'tok_1'), policy, START), 'ERR_ACCOUNT_UNKNOWN')
  t.equal(checkTokenStillValid(svc('usr_1', 'tok_1'), policy, START), 'ERR_TOKEN_REVOKED')
  t.equal(checkTokenStillValid({ accountId: 'usr_1', tokenId: 'x', kind: 'login' }, policy, START), undefined)
  t.equal(checkTokenStillValid({ accountId: 'svc_1', tokenId: 'tok_1', kind: 'login' }, policy, START), 'ERR_TOKEN_REVOKED')
})

t.test('fuzz: mutated tokens and junk headers only ever give ERR_TOKEN_* codes', async (t) => {
  const fc = (await import('fast-check')).default
  const s = await setup({ cacheSize: 0 })
  const good = await s.issue()
  const codes = new Set<string>()
  const check = async (token: string): Promise<boolean> => {
    try {
      await s.verifier.verify(token)
      return token === good
    } catch (err) {
      if (!isKeywayError(err)) return false
      codes.add(err.code)
      const detail = JSON.stringify(err.detail ?? {})
      const leaks = token.split('.').some((segment) => segment.length > 8 && detail.includes(segment))
      return err.code.startsWith('ERR_TOKEN_') && !leaks
    }
  }
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ '
  await fc.assert(
    fc.asyncProperty(fc.nat(good.length - 1), fc.constantFrom(...alphabet), async (i, c) => check(good.slice(0, i) + c + good.slice(i + 1))),
    { numRuns: 300 },
  )
  const [, p, sig] = good.split('.') as [string, string, string]
  await fc.assert(
    fc.asyncProperty(fc.jsonValue(), async (header) => check(`${b64json(header)}.${p}.${sig}`)),
    { numRuns: 300 },
  )
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.string(), fc.jsonValue()), async (extra) => check(`${b64json({ alg: 'EdDSA', kid: s.key.kid, typ: 'JWT', ...extra })}.${p}.${sig}`)),
    { numRuns: 300 },
  )
  t.notOk(codes.has('ERR_INTERNAL'))
  t.ok(codes.size > 2, [...codes].join(', '))
})

t.test('odd but valid exp values: fractional, far future', async (t) => {
  const s = await setup()
  for (const exp of [START / 1000 + 60.5, 1e12, Number.MAX_SAFE_INTEGER]) {
    const token = await signRaw(s, claims(s, { exp }))
    const v = await s.verifier.verify(token)
    t.equal(v.expiresAt, exp * 1000, String(exp))
    t.ok(await s.verifier.verify(token), 'cached')
  }
  t.equal(s.verifier.stats.hits, 3)
})
