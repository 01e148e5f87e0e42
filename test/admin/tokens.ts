import t from 'tap'
import { createService, readPolicy, revokeTokens, rotateToken } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError } from '../../src/errors.js'
import { policyVerifier, writeAdminSetup } from '../helpers/cli.js'

const HOUR = 3600_000

t.test('rotate: a new token at once, the old one until the grace ends (default 24h)', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const first = (await createService(ctx, 'ci')).issued
  clock.advance(HOUR)
  const r = await rotateToken(ctx, 'ci')
  t.not(r.issued.token, first.token)
  t.same(r.retiring, [{ id: first.tokenId, fingerprint: first.fingerprint, expires: '2026-01-02T01:00:00Z' }])
  t.same(r.removed, [])
  const text = setup.policyText()
  t.notOk(text.includes(r.issued.token) || text.includes(first.token), 'no token in the file')
  const { doc } = await readPolicy(setup.policyFile)
  t.same(doc.accounts!.find((a) => a.name === 'ci')!.tokens, [
    { id: first.tokenId, fingerprint: first.fingerprint, created: '2026-01-01T00:00:00Z', expires: '2026-01-02T01:00:00Z' },
    { id: r.issued.tokenId, fingerprint: r.issued.fingerprint, created: '2026-01-01T01:00:00Z' },
  ])
  const verifier = await policyVerifier(setup, clock)
  t.ok(await verifier.verify(first.token), 'the old token works during the grace')
  t.ok(await verifier.verify(r.issued.token))
  clock.advance(24 * HOUR)
  t.ok(isKeywayError(await t.rejects(verifier.verify(first.token)), 'ERR_TOKEN_REVOKED'), 'the old token ends with the grace')
  t.ok(await verifier.verify(r.issued.token), 'the new one goes on')
})

t.test('rotate: --grace, earlier ends kept, expired records pruned, grace 0 revokes at once', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const a = (await createService(ctx, 'ci')).issued
  const b = (await rotateToken(ctx, 'ci', { graceMs: 2 * HOUR })).issued
  t.same((await rotateToken(ctx, 'ci', { graceMs: 10 * HOUR })).retiring.map((x) => [x.id, x.expires]), [
    [a.tokenId, '2026-01-01T02:00:00Z'],
    [b.tokenId, '2026-01-01T10:00:00Z'],
  ], 'a shorter end already set is kept; open-ended ones get the grace')
  clock.advance(3 * HOUR)
  const r = await rotateToken(ctx, 'ci', { graceMs: HOUR })
  t.same(r.removed, [a.tokenId], 'records already expired are removed')
  const now = await rotateToken(ctx, 'ci', { graceMs: 0 })
  const { policy } = await readPolicy(setup.policyFile)
  t.same([...policy.accountByName('ci')!.tokens.keys()], [now.issued.tokenId], 'grace 0 leaves only the new token')
  t.equal(now.removed.length, 3)
  const verifier = await policyVerifier(setup, clock)
  t.ok(isKeywayError(await t.rejects(verifier.verify(r.issued.token)), 'ERR_TOKEN_REVOKED'))
  t.ok(await verifier.verify(now.issued.token))
})

t.test('rotate refuses users, unknown names and bad durations', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  t.ok(isKeywayError(await t.rejects(rotateToken(ctx, 'alice@example.com')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(rotateToken(ctx, 'ghost')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(rotateToken(ctx, 'etl', { graceMs: -1 })), 'ERR_USAGE'))
  t.ok(isKeywayError(await t.rejects(rotateToken(ctx, 'etl', { expiresInMs: 0 })), 'ERR_USAGE'))
})

t.test('revoke one token by id or fingerprint, or all of them', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const a = (await createService(ctx, 'ci')).issued
  const b = (await rotateToken(ctx, 'ci')).issued
  const c = (await rotateToken(ctx, 'ci')).issued
  const verifier = await policyVerifier(setup, clock)
  t.same(await revokeTokens(ctx, 'ci', a.tokenId), { revoked: [a.tokenId] })
  t.same(await revokeTokens(ctx, 'ci', b.fingerprint), { revoked: [b.tokenId] }, 'by fingerprint')
  t.ok(isKeywayError(await t.rejects(verifier.verify(a.token)), 'ERR_TOKEN_REVOKED'))
  t.ok(isKeywayError(await t.rejects(verifier.verify(b.token)), 'ERR_TOKEN_REVOKED'))
  t.ok(await verifier.verify(c.token))
  const err = await t.rejects(revokeTokens(ctx, 'ci', a.tokenId))
  t.ok(isKeywayError(err, 'ERR_NOT_FOUND'), 'revoking twice names the missing token')
  const d = (await rotateToken(ctx, 'ci')).issued
  t.same((await revokeTokens(ctx, 'ci')).revoked.sort(), [c.tokenId, d.tokenId].sort(), 'all')
  t.notMatch(setup.policyText(), /tokens:/, 'an empty token list is removed')
  t.ok(isKeywayError(await t.rejects(verifier.verify(d.token)), 'ERR_TOKEN_REVOKED'))
  t.same(await revokeTokens(ctx, 'ci'), { revoked: [] }, 'revoking all of none is fine')
  t.ok(isKeywayError(await t.rejects(revokeTokens(ctx, 'alice@example.com')), 'ERR_NOT_FOUND'))
})
