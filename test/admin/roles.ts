import t from 'tap'
import {
  assignRole,
  createRole,
  createService,
  deleteRole,
  grantAccess,
  grantRole,
  listRoles,
  readPolicy,
  unassignRole,
  ungrantRole,
} from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { writeAdminSetup } from '../helpers/cli.js'

const HOUR = 3600_000

t.test('create, grant, ungrant and list roles', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  await createRole(ctx, 'auditors')
  t.match(setup.policyText(), /- name: auditors\n\s+grants: \[\]\n\s*\n?accounts:/, 'appended to roles, before accounts')
  t.ok(isKeywayError(await t.rejects(createRole(ctx, 'auditors')), 'ERR_ALREADY_EXISTS'))
  t.ok(isKeywayError(await t.rejects(createRole(ctx, 'Bad Name')), 'ERR_USAGE'))

  const svc = await createService(ctx, 'auditor-bot', { role: 'auditors' })
  let { policy } = await readPolicy(setup.policyFile)
  t.equal(policy.decide(svc.account.id, 'pg', clock.now()).code, 'ERR_GRANT_DENIED')
  t.same(await grantRole(ctx, 'auditors', 'pg'), { changed: true })
  t.same(await grantRole(ctx, 'auditors', 'pg'), { changed: false }, 'granting twice changes nothing')
  t.match(setup.policyText(), /- name: auditors\n\s+grants: \[pg\]/)
  ;({ policy } = await readPolicy(setup.policyFile))
  t.match(policy.decide(svc.account.id, 'pg', clock.now()), { allow: true, via: 'role', role: 'auditors' }, 'holders inherit the grant')
  t.ok(isKeywayError(await t.rejects(grantRole(ctx, 'auditors', 'nope')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(grantRole(ctx, 'nope', 'pg')), 'ERR_NOT_FOUND'))

  t.same(listRoles(policy), [
    { name: 'analysts', grants: ['pg', 'web'], accounts: ['etl'] },
    { name: 'auditors', grants: ['pg'], accounts: ['auditor-bot'] },
    { name: 'ops', grants: ['ssh-box'], accounts: [] },
  ])

  await ungrantRole(ctx, 'auditors', 'pg')
  ;({ policy } = await readPolicy(setup.policyFile))
  t.equal(policy.decide(svc.account.id, 'pg', clock.now()).code, 'ERR_GRANT_DENIED')
  t.ok(isKeywayError(await t.rejects(ungrantRole(ctx, 'auditors', 'pg')), 'ERR_NOT_FOUND'))
})

t.test('assign refuses an account with permanent direct grants, naming them', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  await grantAccess(ctx, 'alice@example.com', 'pg')
  await grantAccess(ctx, 'alice@example.com', 'web', { forMs: HOUR })
  const before = setup.policyText()
  const err = (await t.rejects(assignRole(ctx, 'alice@example.com', 'ops'))) as KeywayError
  t.equal(err.code, 'ERR_ROLE_WITH_DIRECT_GRANTS')
  t.match(err.message, /ssh-box, pg/)
  t.match(err.message, /--drop-direct-grants/)
  t.notMatch(err.message, /web/, 'temporary grants are not in the way')
  t.equal(setup.policyText(), before, 'nothing written')

  const r = await assignRole(ctx, 'alice@example.com', 'ops', { dropDirectGrants: true })
  t.same(r, { changed: true, droppedGrants: ['ssh-box', 'pg'] })
  const { policy, doc } = await readPolicy(setup.policyFile)
  const alice = policy.accountByName('alice@example.com')!
  t.same(alice.roles, ['ops'])
  t.same(doc.accounts!.find((a) => a.id === alice.id)!.grants, [{ resource: 'web', expires: '2026-01-01T01:00:00Z' }], 'the temporary grant stays')
  t.match(policy.decide(alice.id, 'ssh-box', clock.now()), { allow: true, via: 'role', role: 'ops' })
  t.equal(policy.decide(alice.id, 'pg', clock.now()).code, 'ERR_GRANT_DENIED', 'the dropped direct grant is gone')
  t.match(policy.decide(alice.id, 'web', clock.now()), { allow: true, via: 'temporary' })
  t.same(await assignRole(ctx, 'alice@example.com', 'ops'), { changed: false, droppedGrants: [] })
})

t.test('assign and unassign: an account with only temporary grants takes a role; losing the last role means No Role', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  const { account } = await createService(ctx, 'bot')
  await grantAccess(ctx, 'bot', 'pg', { forMs: HOUR })
  t.same(await assignRole(ctx, account.id, 'ops'), { changed: true, droppedGrants: [] }, 'addressed by id')
  t.same(await assignRole(ctx, 'bot', 'analysts'), { changed: true, droppedGrants: [] })
  t.same((await readPolicy(setup.policyFile)).policy.accountByName('bot')!.roles, ['ops', 'analysts'])
  t.same(await unassignRole(ctx, 'bot', 'ops'), { noRole: false })
  t.same(await unassignRole(ctx, 'bot', 'analysts'), { noRole: true })
  t.notMatch(setup.policyText().slice(setup.policyText().indexOf('name: bot')), /roles:/, 'the empty roles list is removed')
  t.ok(isKeywayError(await t.rejects(unassignRole(ctx, 'bot', 'ops')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(assignRole(ctx, 'bot', 'nope')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(assignRole(ctx, 'ghost', 'ops')), 'ERR_NOT_FOUND'))
})

t.test('delete refuses a role that accounts hold, unless forced', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  await createService(ctx, 'bot', { role: 'analysts' })
  const before = setup.policyText()
  const err = (await t.rejects(deleteRole(ctx, 'analysts'))) as KeywayError
  t.equal(err.code, 'ERR_USAGE')
  t.match(err.message, /held by etl, bot/)
  t.match(err.message, /--force/)
  t.equal(setup.policyText(), before)
  t.same(await deleteRole(ctx, 'analysts', { force: true }), { name: 'analysts', unassigned: ['etl', 'bot'] })
  const { policy } = await readPolicy(setup.policyFile)
  t.notOk(policy.roles.has('analysts'))
  t.same(policy.accountByName('etl')!.roles, [])
  t.same(await deleteRole(ctx, 'ops'), { name: 'ops', unassigned: [] })
  t.ok(isKeywayError(await t.rejects(deleteRole(ctx, 'ops')), 'ERR_NOT_FOUND'))
})
