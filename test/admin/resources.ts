import t from 'tap'
import { addResource, createService, grantAccess, listResources, readPolicy, removeResource } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { FIXTURE_POLICY, writeAdminSetup } from '../helpers/cli.js'

t.test('add with port overrides on: the assigned port is written into the file', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  const r = await addResource(ctx, { name: 'mysql', kind: 'datasource', type: 'mysql', address: 'db.internal:3306' })
  t.same(r, { name: 'mysql', portOverride: 16002, assigned: true, pinned: [{ resource: 'web', port: 16001 }] })
  const text = setup.policyText()
  t.match(text, /- name: mysql\n\s+kind: datasource\n\s+type: mysql\n\s+address: db\.internal:3306\n\s+portOverride: 16002\n/)
  t.match(text, /- name: web # no portOverride: assigned from the range\n[\s\S]*?portOverride: 16001\n/, 'the other assigned port is pinned too')
  t.match(text, /\n\nroles:/, 'added at the end of resources, before roles')
  const { policy } = await readPolicy(setup.policyFile)
  t.equal(policy.resources.get('mysql')!.portOverride, 16002)

  const explicit = await addResource(ctx, { name: 'cache', kind: 'datasource', type: 'redis', address: '[::1]:6379', portOverride: 16090 })
  t.same(explicit, { name: 'cache', portOverride: 16090, assigned: false, pinned: [] })
})

t.test('add refuses bad input, taken names and taken ports, writing nothing', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  const before = setup.policyText()
  const good = { name: 'x', kind: 'server', type: 'ssh', address: 'h:22' }
  for (const bad of [
    { name: 'Bad' },
    { kind: 'database' },
    { type: 'Postgres' },
    { address: 'no-port' },
    { address: '::1:5432' },
    { portOverride: 70000 },
    { portOverride: 0 },
  ]) {
    const err = await t.rejects(addResource(ctx, { ...good, ...bad }), JSON.stringify(bad))
    t.ok(isKeywayError(err, 'ERR_USAGE'), `ERR_USAGE for ${JSON.stringify(bad)}`)
  }
  t.ok(isKeywayError(await t.rejects(addResource(ctx, { ...good, name: 'pg' })), 'ERR_ALREADY_EXISTS'))
  const taken = (await t.rejects(addResource(ctx, { ...good, portOverride: 16000 }))) as KeywayError
  t.equal(taken.code, 'ERR_ALREADY_EXISTS')
  t.match(taken.message, /resource "pg"/)
  t.match(await t.rejects(addResource(ctx, { ...good, portOverride: 16001 })), { code: 'ERR_ALREADY_EXISTS', message: /"web"/ }, 'an assigned port is taken too')
  t.equal(setup.policyText(), before)
})

t.test('add with port overrides off assigns nothing', async (t) => {
  const setup = await writeAdminSetup(t.testdir(), FIXTURE_POLICY.replace('portOverrides: true', 'portOverrides: false'))
  const ctx = setup.ctx(new ManualClock())
  t.same(await addResource(ctx, { name: 'box', kind: 'server', type: 'ssh', address: '10.0.0.9:22' }), { name: 'box', portOverride: null, assigned: false, pinned: [] })
  t.notMatch(setup.policyText().slice(setup.policyText().indexOf('name: box')), /portOverride/)
})

t.test('list: by kind (tab order) then name, with address and override port', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  await addResource(ctx, { name: 'aws', kind: 'cloud', type: 'aws', address: 'sts.amazonaws.com:443' })
  await addResource(ctx, { name: 'cache', kind: 'datasource', type: 'redis', address: '[::1]:6379' })
  t.same(listResources((await readPolicy(setup.policyFile)).policy), [
    { name: 'cache', kind: 'datasource', type: 'redis', address: '[::1]:6379', portOverride: 16003, username: null },
    { name: 'pg', kind: 'datasource', type: 'postgres', address: '127.0.0.1:5432', portOverride: 16000, username: null },
    { name: 'ssh-box', kind: 'server', type: 'ssh', address: '10.0.0.7:22', portOverride: 16050, username: null },
    { name: 'web', kind: 'website', type: 'http', address: '127.0.0.1:8080', portOverride: 16001, username: null },
    { name: 'aws', kind: 'cloud', type: 'aws', address: 'sts.amazonaws.com:443', portOverride: 16002, username: null },
  ])
})

t.test('remove refuses while granted, unless forced; other assigned ports stay put', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  await createService(ctx, 'bot')
  await grantAccess(ctx, 'bot', 'pg', { forMs: 3600_000 })
  const before = setup.policyText()
  const err = (await t.rejects(removeResource(ctx, 'pg'))) as KeywayError
  t.equal(err.code, 'ERR_USAGE')
  t.match(err.message, /still granted by role analysts, bot/)
  t.match(err.message, /--force/)
  t.equal(setup.policyText(), before)

  t.same(await removeResource(ctx, 'pg', { force: true }), { name: 'pg', roles: ['analysts'], accounts: ['bot'] })
  const { policy, doc } = await readPolicy(setup.policyFile)
  t.notOk(policy.resources.has('pg'))
  t.same(policy.roles.get('analysts'), ['web'])
  t.notOk(doc.accounts!.find((a) => a.name === 'bot')!.grants, 'the account\'s grant went with it')
  t.equal(policy.resources.get('web')!.portOverride, 16001, 'web keeps its port although 16000 is free now')
  t.match(setup.policyText(), /portOverride: 16001/)

  t.ok(isKeywayError(await t.rejects(removeResource(ctx, 'pg')), 'ERR_NOT_FOUND'))
  await addResource(ctx, { name: 'spare', kind: 'cluster', type: 'k8s', address: 'k8s.internal:6443' })
  t.same(await removeResource(ctx, 'spare'), { name: 'spare', roles: [], accounts: [] })
})
