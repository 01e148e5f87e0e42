import t from 'tap'
import { createService, grantAccess, readPolicy, revokeAccess } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { explainAccess } from '../../src/policy/index.js'
import { writeAdminSetup } from '../helpers/cli.js'

const HOUR = 3600_000

t.test('No Role: a permanent direct grant needs an account without roles', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const before = setup.policyText()
  const err = (await t.rejects(grantAccess(ctx, 'etl', 'ssh-box'))) as KeywayError
  t.equal(err.code, 'ERR_DIRECT_GRANT_WITH_ROLE')
  t.match(err.message, /role analysts/)
  t.match(err.message, /--for DURATION/)
  t.match(err.message, /roles unassign etl/)
  t.equal(setup.policyText(), before, 'nothing written')

  const { account } = await createService(ctx, 'loner')
  t.same(await grantAccess(ctx, 'loner', 'ssh-box'), { kind: 'direct', changed: true })
  t.same(await grantAccess(ctx, 'loner', 'ssh-box'), { kind: 'direct', changed: false })
  const { policy } = await readPolicy(setup.policyFile)
  t.match(policy.decide(account.id, 'ssh-box', clock.now()), { allow: true, via: 'direct' })
  t.match(setup.policyText(), /name: loner\n[\s\S]*grants:\n\s+- resource: ssh-box\n/)
})

t.test('temporary access: allowed whatever the roles, until it expires', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const r = await grantAccess(ctx, 'etl', 'ssh-box', { forMs: 2 * HOUR })
  t.same(r, { kind: 'temporary', expires: '2026-01-01T02:00:00Z', changed: true })
  const { policy } = await readPolicy(setup.policyFile)
  const etl = policy.accountByName('etl')!.id
  t.match(policy.decide(etl, 'ssh-box', clock.now()), { allow: true, via: 'temporary', expiresAt: clock.now() + 2 * HOUR })
  t.match(explainAccess(policy, 'etl', 'ssh-box', clock.now() + 2 * HOUR - 1), { allow: true })
  clock.advance(2 * HOUR)
  t.match(policy.decide(etl, 'ssh-box', clock.now()), { allow: false, code: 'ERR_GRANT_EXPIRED' })
  t.equal(policy.nextExpiry(0), Date.UTC(2026, 0, 1, 2))
})

t.test('granting again: a temporary grant gets the new end; permanent covers temporary; temporary becomes permanent', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  await createService(ctx, 'bot')
  await grantAccess(ctx, 'bot', 'pg', { forMs: HOUR })
  t.same(await grantAccess(ctx, 'bot', 'pg', { forMs: 3 * HOUR }), { kind: 'temporary', expires: '2026-01-01T03:00:00Z', changed: true })
  const { doc } = await readPolicy(setup.policyFile)
  t.same(doc.accounts!.find((a) => a.name === 'bot')!.grants, [{ resource: 'pg', expires: '2026-01-01T03:00:00Z' }], 'one grant per resource')
  t.same(await grantAccess(ctx, 'bot', 'pg'), { kind: 'direct', changed: true }, 'a temporary grant becomes permanent')
  t.same((await readPolicy(setup.policyFile)).doc.accounts!.find((a) => a.name === 'bot')!.grants, [{ resource: 'pg' }])
  t.same(await grantAccess(ctx, 'bot', 'pg', { forMs: HOUR }), { kind: 'direct', changed: false }, 'a permanent grant already covers it')
  t.ok(isKeywayError(await t.rejects(grantAccess(ctx, 'bot', 'nope')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(grantAccess(ctx, 'ghost', 'pg')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(grantAccess(ctx, 'bot', 'pg', { forMs: 0 })), 'ERR_USAGE'))
})

t.test('revoke removes direct and temporary grants; access from a role is not a grant', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  t.same(await revokeAccess(ctx, 'alice@example.com', 'ssh-box'), { removed: ['direct'] })
  t.notMatch(setup.policyText(), /grants:\n\s+- resource/, 'the empty grants list is removed')
  await grantAccess(ctx, 'etl', 'ssh-box', { forMs: HOUR })
  t.same(await revokeAccess(ctx, 'etl', 'ssh-box'), { removed: ['temporary'] })
  const { policy } = await readPolicy(setup.policyFile)
  t.equal(policy.decide(policy.accountByName('etl')!.id, 'ssh-box', clock.now()).code, 'ERR_GRANT_DENIED')
  const err = (await t.rejects(revokeAccess(ctx, 'etl', 'pg'))) as KeywayError
  t.equal(err.code, 'ERR_NOT_FOUND')
  t.match(err.message, /comes from the role analysts/)
  t.ok(isKeywayError(await t.rejects(revokeAccess(ctx, 'alice@example.com', 'ssh-box')), 'ERR_NOT_FOUND'))
})
