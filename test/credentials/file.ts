import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { checkCredentialsMode, CredentialStore, formatCredentials, parseCredentials, readCredentials } from '../../src/credentials/index.js'
import { isKeywayError } from '../../src/errors.js'
import { LogSink } from '../helpers/world.js'

const HASH = 'scrypt$16384$8$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo'

t.test('the mode check: owner only, or read by the process\'s own group; anything wider is refused', async (t) => {
  const own = { gids: [1000, 2000] }
  const ok = (mode: number, gid = 1000) => t.doesNotThrow(() => checkCredentialsMode('c.yaml', { mode: 0o100000 | mode, gid }, own), mode.toString(8))
  const refused = (mode: number, gid: number, why: RegExp) => {
    const err = t.throws(() => checkCredentialsMode('c.yaml', { mode: 0o100000 | mode, gid }, own))
    t.ok(isKeywayError(err, 'ERR_CREDENTIALS_MODE'), mode.toString(8))
    t.match((err as Error).message, why)
    t.match((err as Error).message, /chmod 600 c\.yaml/)
  }
  ok(0o600)
  ok(0o400)
  ok(0o640)
  ok(0o440, 2000)
  refused(0o644, 1000, /other users can access it/)
  refused(0o604, 1000, /other users/)
  refused(0o660, 1000, /its group can write it/)
  refused(0o640, 3000, /group 3000 is not one of this process's groups/)
})

t.test('parse and format round-trip; bad content is located and never echoes a would-be password', async (t) => {
  const creds = parseCredentials(formatCredentials(new Map([['usr_b', { passwordHash: HASH, admin: true }], ['usr_a', { passwordHash: HASH }]])), 'c.yaml')
  t.same([...creds.keys()], ['usr_a', 'usr_b'])
  t.same(creds.get('usr_b'), { passwordHash: HASH, admin: true })
  const bad = t.throws(() => parseCredentials('version: 1\nusers:\n  usr_a:\n    passwordHash: hunter2\n  svc_x: {}\nextra: 1\n', 'c.yaml'))
  t.ok(isKeywayError(bad, 'ERR_CREDENTIALS_INVALID'))
  t.match((bad as Error).message, /c\.yaml:4:5: passwordHash must be an `scrypt\$…` hash/)
  t.match((bad as Error).message, /"svc_x" is not a user account id/)
  t.match((bad as Error).message, /unknown key "extra"/)
  t.notMatch((bad as Error).message, /hunter2/)
})

t.test('readCredentials: a missing file is empty; a wide one is refused before it is read', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'credentials.yaml')
  t.same((await readCredentials(file)).credentials.size, 0)
  writeFileSync(file, formatCredentials(new Map([['usr_a', { passwordHash: HASH }]])), { mode: 0o600 })
  chmodSync(file, 0o600)
  t.equal((await readCredentials(file)).credentials.get('usr_a')?.passwordHash, HASH)
  chmodSync(file, 0o644)
  t.ok(isKeywayError(await t.rejects(readCredentials(file)), 'ERR_CREDENTIALS_MODE'))
})

t.test('CredentialStore picks up a changed file, and keeps the last good credentials when it breaks', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'credentials.yaml')
  const logs = new LogSink()
  const store = new CredentialStore({ file, logger: pino({ level: 'debug', base: {} }, logs) })
  await store.start()
  t.ok(logs.events('credentials_missing').length === 1)
  t.equal(await store.passwordHashOf('usr_a'), undefined)
  writeFileSync(file, formatCredentials(new Map([['usr_a', { passwordHash: HASH }]])), { mode: 0o600 })
  t.equal(await store.passwordHashOf('usr_a'), HASH, 'a password set after the start works')
  chmodSync(file, 0o644)
  t.equal(await store.passwordHashOf('usr_a'), HASH, 'a widened mode keeps the last good credentials')
  t.match(logs.events('credentials_reload_failed'), [{ code: 'ERR_CREDENTIALS_MODE' }])
  await store.passwordHashOf('usr_a')
  t.equal(logs.events('credentials_reload_failed').length, 1, 'logged once, not on every login')
  const wide = new CredentialStore({ file, logger: pino({ level: 'silent' }) })
  t.ok(isKeywayError(await t.rejects(wide.start()), 'ERR_CREDENTIALS_MODE'), 'at start a wide file is fatal')
})
