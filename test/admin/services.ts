import t from 'tap'
import { decodeJwt } from 'jose'
import { createService, deleteService, readPolicy, resumeService, suspendService } from '../../src/admin/index.js'
import { tokenFingerprint } from '../../src/auth/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError } from '../../src/errors.js'
import { policyVerifier, writeAdminSetup } from '../helpers/cli.js'

t.test('create: the token is returned once; the policy keeps only its id, fingerprint and creation time', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const { account, issued } = await createService(setup.ctx(clock), 'ci-pipeline')
  t.match(account, { name: 'ci-pipeline', roles: [] })
  t.match(account.id, /^svc_[0-9a-f]{16}$/)
  t.equal(issued.fingerprint, tokenFingerprint(issued.token))
  t.equal(issued.expiresAt, Infinity)
  const text = setup.policyText()
  t.notOk(text.includes(issued.token), 'the token is not in the file')
  for (const part of issued.token.split('.')) t.notOk(text.includes(part), 'no part of the token is in the file')
  const { policy, doc } = await readPolicy(setup.policyFile)
  const a = policy.accountByName('ci-pipeline')!
  t.equal(a.id, account.id)
  t.same(a.roles, [], 'No Role')
  const raw = doc.accounts!.find((x) => x.id === account.id)!
  t.same(raw.tokens, [{ id: issued.tokenId, fingerprint: issued.fingerprint, created: '2026-01-01T00:00:00Z' }])
  const claims = decodeJwt(issued.token)
  t.match(claims, { sub: account.id, jti: issued.tokenId, kw: 'service', iss: 'keyway-test', aud: 'keyway-test' })
  t.equal(claims.exp, undefined, 'no exp by default')
  const verified = await (await policyVerifier(setup, clock)).verify(issued.token)
  t.equal(verified.accountId, account.id)
})

t.test('create with a role and an expiry', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const { account, issued } = await createService(setup.ctx(clock), 'reporting', { role: 'analysts', expiresInMs: 3600_000 })
  t.same(account.roles, ['analysts'])
  t.equal(issued.expiresAt, clock.now() + 3600_000)
  t.equal(decodeJwt(issued.token).exp, (clock.now() + 3600_000) / 1000)
  const { doc } = await readPolicy(setup.policyFile)
  t.match(doc.accounts!.find((x) => x.name === 'reporting'), { roles: ['analysts'], tokens: [{ expires: '2026-01-01T01:00:00Z' }] })
  t.match(setup.policyText(), /name: reporting\n\s+roles: \[analysts\]\n/, 'short lists are written in flow style')
})

t.test('create refuses bad names, duplicates and unknown roles, writing nothing', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  const before = setup.policyText()
  for (const name of ['CI', 'has space', '', '-lead', 'svc_sneaky', 'usr_x', 'a'.repeat(64), 'ci/cd']) {
    const err = await t.rejects(createService(ctx, name), `refuses ${JSON.stringify(name)}`)
    t.ok(isKeywayError(err, 'ERR_USAGE'))
  }
  t.ok(isKeywayError(await t.rejects(createService(ctx, 'etl')), 'ERR_ALREADY_EXISTS'), 'service names are unique')
  t.ok(isKeywayError(await t.rejects(createService(ctx, 'x', { role: 'nope' })), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(createService(ctx, 'x', { expiresInMs: 0 })), 'ERR_USAGE'))
  t.equal(setup.policyText(), before)
  await createService(ctx, 'ok.name_1-2')
})

t.test('suspend and resume', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const { issued } = await createService(ctx, 'batch')
  const verifier = await policyVerifier(setup, clock)
  t.same(await suspendService(ctx, 'batch'), { id: (await readPolicy(setup.policyFile)).policy.accountByName('batch')!.id, changed: true })
  t.match(setup.policyText(), /name: batch\n[\s\S]*suspended: true/)
  t.ok(isKeywayError(await t.rejects(verifier.verify(issued.token)), 'ERR_ACCOUNT_SUSPENDED'))
  t.equal((await suspendService(ctx, 'batch')).changed, false, 'suspending twice changes nothing')
  t.equal((await resumeService(ctx, 'batch')).changed, true)
  t.notMatch(setup.policyText(), /suspended/, 'resume removes the key')
  t.equal((await resumeService(ctx, 'batch')).changed, false)
  t.ok(await verifier.verify(issued.token))
  t.ok(isKeywayError(await t.rejects(suspendService(ctx, 'alice@example.com')), 'ERR_NOT_FOUND'), 'users are not services')
})

t.test('delete removes the account, and with it its tokens', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const clock = new ManualClock()
  const ctx = setup.ctx(clock)
  const { account, issued } = await createService(ctx, 'temp-job')
  const verifier = await policyVerifier(setup, clock)
  t.same(await deleteService(ctx, account.id), { id: account.id, name: 'temp-job' }, 'addressed by id')
  t.notOk((await readPolicy(setup.policyFile)).policy.accounts.has(account.id))
  t.ok(isKeywayError(await t.rejects(verifier.verify(issued.token)), 'ERR_ACCOUNT_UNKNOWN'))
  t.ok(isKeywayError(await t.rejects(deleteService(ctx, 'temp-job')), 'ERR_NOT_FOUND'))
  t.ok(isKeywayError(await t.rejects(deleteService(ctx, 'alice@example.com')), 'ERR_NOT_FOUND'))
})
