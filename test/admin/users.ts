import t from 'tap'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import {
  assignRole,
  createService,
  createUser,
  grantAccess,
  listAccounts,
  migratePasswords,
  readCredentialsOf,
  readPolicy,
  rotateToken,
  setPassword,
  showAccount,
  suspendService,
} from '../../src/admin/index.js'
import { verifyPassword } from '../../src/auth/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError } from '../../src/errors.js'
import { writeAdminSetup } from '../helpers/cli.js'

const HOUR = 3600_000

t.test('createUser: lower-cased unique email, optional password stored only as a hash, in the 0600 credentials file', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  const bob = await createUser(ctx, 'Bob@Example.com', { password: 'correct horse' })
  t.match(bob, { email: 'bob@example.com', id: /^usr_[0-9a-f]{16}$/ })
  t.notOk(setup.policyText().includes('correct horse'))
  t.notOk(setup.policyText().includes('scrypt'), 'the policy never holds a hash')
  const { policy } = await readPolicy(setup.policyFile)
  const account = policy.accountByName('bob@example.com')!
  t.match(account, { type: 'user', roles: [] })
  t.ok(await verifyPassword('correct horse', (await readCredentialsOf(ctx)).get(account.id)!.passwordHash!))
  const credentialsFile = join(dirname(setup.policyFile), 'credentials.yaml')
  t.equal(statSync(credentialsFile).mode & 0o777, 0o600)
  t.notOk(readFileSync(credentialsFile, 'utf8').includes('correct horse'))
  const carol = await createUser(ctx, 'carol@example.com')
  t.equal((await readCredentialsOf(ctx)).get(carol.id), undefined)
  t.ok(isKeywayError(await t.rejects(createUser(ctx, 'BOB@example.com')), 'ERR_ALREADY_EXISTS'))
  t.ok(isKeywayError(await t.rejects(createUser(ctx, 'not-an-email')), 'ERR_USAGE'))
  t.ok(isKeywayError(await t.rejects(createUser(ctx, 'dan@example.com', { password: 'short' })), 'ERR_USAGE'))
})

t.test('setPassword replaces the hash; only users have passwords', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  await setPassword(ctx, 'ALICE@example.com', 'first password')
  await setPassword(ctx, 'alice@example.com', 'second password')
  const alice = (await readPolicy(setup.policyFile)).policy.accountByName('alice@example.com')!
  const hash = (await readCredentialsOf(ctx)).get(alice.id)!.passwordHash!
  t.ok(await verifyPassword('second password', hash))
  t.notOk(await verifyPassword('first password', hash))
  t.notMatch(setup.policyText(), /passwordHash/)
  t.ok(isKeywayError(await t.rejects(setPassword(ctx, 'etl', 'a password')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(setPassword(ctx, 'ghost@example.com', 'a password')), 'ERR_NOT_FOUND'))
})

t.test('list: accounts with No Role first, services tagged "service"', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  await createService(ctx, 'zeta', { role: 'ops' })
  await createService(ctx, 'beta')
  await createService(ctx, 'alpha', { role: 'ops' })
  await createUser(ctx, 'aaron@example.com')
  let rows = listAccounts((await readPolicy(setup.policyFile)).policy)
  t.same(rows.map((r) => [r.name, r.noRole]), [
    ['aaron@example.com', true],
    ['alice@example.com', true],
    ['beta', true],
    ['alpha', false],
    ['etl', false],
    ['zeta', false],
  ], 'alpha sorts before beta by name, but beta has No Role')
  t.same(rows.find((r) => r.name === 'beta'), {
    id: rows.find((r) => r.name === 'beta')!.id,
    type: 'service',
    name: 'beta',
    email: null,
    roles: [],
    noRole: true,
    suspended: false,
    tags: ['service'],
  }, 'the stable JSON shape')
  t.same(rows.find((r) => r.name === 'alice@example.com')!.tags, [])
  t.same(rows.find((r) => r.name === 'alice@example.com')!.email, 'alice@example.com')
  // The other direction: an account that gets a role leaves the No Role section.
  await assignRole(ctx, 'beta', 'analysts')
  rows = listAccounts((await readPolicy(setup.policyFile)).policy)
  t.same(rows.map((r) => [r.name, r.noRole]), [
    ['aaron@example.com', true],
    ['alice@example.com', true],
    ['alpha', false],
    ['beta', false],
    ['etl', false],
    ['zeta', false],
  ])
})

t.test('show: resources by kind with where access comes from, suspension, tokens', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const created = await createService(ctx, 'reporter', { role: 'analysts' })
  await grantAccess(ctx, 'reporter', 'ssh-box', { forMs: 2 * HOUR })
  await grantAccess(ctx, 'reporter', 'pg', { forMs: HOUR })
  const rotated = await rotateToken(ctx, 'reporter', { graceMs: HOUR })
  let view = showAccount(await readPolicy(setup.policyFile), 'reporter', clock.now())
  t.match(view, { name: 'reporter', type: 'service', tags: ['service'], roles: ['analysts'], noRole: false, suspended: false, passwordSet: null })
  t.same(Object.keys(view.resources), ['datasource', 'server', 'cluster', 'website', 'cloud'], 'the seed\'s tabs, in order')
  t.same(view.resources.datasource, [
    { name: 'pg', type: 'postgres', address: '127.0.0.1:5432', portOverride: 16000, sources: ['temporary until 2026-01-01T01:00:00Z', 'role analysts'] },
  ])
  t.same(view.resources.server.map((r) => [r.name, r.sources]), [['ssh-box', ['temporary until 2026-01-01T02:00:00Z']]])
  t.same(view.resources.website.map((r) => [r.name, r.sources, r.portOverride]), [['web', ['role analysts'], 16001]])
  t.same(view.resources.cluster, [])
  t.same(view.tokens, [
    { id: created.issued.tokenId, fingerprint: created.issued.fingerprint, created: '2026-01-01T00:00:00Z', expires: '2026-01-01T01:00:00Z', expired: false },
    { id: rotated.issued.tokenId, fingerprint: rotated.issued.fingerprint, created: '2026-01-01T00:00:00Z', expires: null, expired: false },
  ])
  t.notOk(JSON.stringify(view).includes(created.issued.token), 'never a token')

  clock.advance(90 * 60_000)
  await suspendService(ctx, 'reporter')
  view = showAccount(await readPolicy(setup.policyFile), 'reporter', clock.now())
  t.equal(view.suspended, true)
  t.same(view.resources.datasource.map((r) => r.sources), [['role analysts']], 'what it would reach once resumed; the temporary grant has ended')
  t.same(view.expiredGrants, [{ resource: 'pg', expired: '2026-01-01T01:00:00Z' }])
  t.equal(view.tokens[0]!.expired, true)

  const alice = showAccount(await readPolicy(setup.policyFile), 'alice@example.com', clock.now())
  t.match(alice, { type: 'user', noRole: true, tags: [], tokens: [], passwordSet: false, email: 'alice@example.com' })
  t.same(alice.resources.server.map((r) => [r.name, r.sources]), [['ssh-box', ['direct']]])
  const read = await readPolicy(setup.policyFile)
  t.ok(isKeywayError(t.throws(() => showAccount(read, 'ghost', 0)), 'ERR_NOT_FOUND'))
})

t.test('a credentials file others may read is refused, and no password is written through it', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  await setPassword(ctx, 'alice@example.com', 'first password')
  const file = join(dirname(setup.policyFile), 'credentials.yaml')
  const { chmodSync } = await import('node:fs')
  chmodSync(file, 0o644)
  const before = readFileSync(file, 'utf8')
  t.ok(isKeywayError(await t.rejects(setPassword(ctx, 'alice@example.com', 'second password')), 'ERR_CREDENTIALS_MODE'))
  t.equal(readFileSync(file, 'utf8'), before)
})

t.test('migratePasswords moves hashes from an old policy to the credentials file, keeping the rest of the policy', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  const alice = (await readPolicy(setup.policyFile)).policy.accountByName('alice@example.com')!
  const hash = 'scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g='
  const old = setup.policyText().replace(/(- id: usr_[^\n]*\n(\s+)type: user\n)/, (all: string, _line: string, indent: string) => `${all}${indent}passwordHash: ${hash}\n`)
  t.not(old, setup.policyText(), 'the test policy has a hash in it')
  writeFileSync(setup.policyFile, '# kept comment\n' + old)
  t.ok(isKeywayError(await t.rejects(readPolicy(setup.policyFile)), 'ERR_POLICY_INVALID'), 'a policy holding a hash is refused')
  await t.rejects(readPolicy(setup.policyFile), { message: /keyway admin users migrate-passwords/ })
  t.same(await migratePasswords(ctx), [alice.id])
  t.notMatch(setup.policyText(), /passwordHash/)
  t.match(setup.policyText(), /# kept comment/)
  t.equal((await readCredentialsOf(ctx)).get(alice.id)!.passwordHash, hash)
  t.same(await migratePasswords(ctx), [], 'a second run has nothing to move')
})
