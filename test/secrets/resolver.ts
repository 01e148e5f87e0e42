import t from 'tap'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ManualClock } from '../../src/clock.js'
import type { ResourceCredential } from '../../src/policy/index.js'
import { SecretResolver } from '../../src/secrets/index.js'
import type { Teardown } from '../helpers/net.js'

function dir(t: Teardown): string {
  const d = mkdtempSync(join(tmpdir(), 'keyway-secrets-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

const fileCredential = (file: string, extra: Partial<ResourceCredential> = {}): ResourceCredential => ({
  username: 'app',
  secret: { file },
  database: undefined,
  upstreamTls: 'disable',
  upstreamCa: undefined,
  ...extra,
})

t.test('a password file is read, its final newline dropped; re-read after the TTL or a clear()', async (t) => {
  const d = dir(t)
  const file = join(d, 'pw')
  writeFileSync(file, 's3cret\n', { mode: 0o600 })
  const clock = new ManualClock()
  const secrets = new SecretResolver({ clock, ttlMs: 2_000 })
  t.same(await secrets.resolve('warehouse', fileCredential(file)), { username: 'app', password: 's3cret', ca: undefined })
  writeFileSync(file, 'rotated')
  t.equal((await secrets.resolve('warehouse', fileCredential(file))).password, 's3cret', 'within the TTL: the read is reused')
  clock.advance(2_000)
  t.equal((await secrets.resolve('warehouse', fileCredential(file))).password, 'rotated', 'after the TTL: read again')
  writeFileSync(file, 'again')
  secrets.clear()
  t.equal((await secrets.resolve('warehouse', fileCredential(file))).password, 'again', 'after clear() (a policy reload): read again')
  writeFileSync(file, 'fixed')
  await secrets.resolve('other', fileCredential(file))
  writeFileSync(file, 'fixed later')
  secrets.forget('warehouse')
  t.equal((await secrets.resolve('warehouse', fileCredential(file))).password, 'fixed later', 'after forget(resource) (a refused login): read again')
  t.equal((await secrets.resolve('other', fileCredential(file))).password, 'fixed', 'only that resource was forgotten')
})

t.test('a missing, unreadable or empty secret is ERR_CREDENTIAL_UNAVAILABLE naming the file, and is not kept', async (t) => {
  const d = dir(t)
  const clock = new ManualClock()
  const secrets = new SecretResolver({ clock })
  const file = join(d, 'missing')
  await t.rejects(secrets.resolve('warehouse', fileCredential(file)), { code: 'ERR_CREDENTIAL_UNAVAILABLE', message: new RegExp(`resource "warehouse": password file ${file} cannot be read on this gateway \\(ENOENT\\)`) })
  writeFileSync(file, 'now here')
  t.equal((await secrets.resolve('warehouse', fileCredential(file))).password, 'now here', 'a failure is not cached: the fix is seen at once')
  const empty = join(d, 'empty')
  writeFileSync(empty, '\n')
  await t.rejects(secrets.resolve('warehouse', fileCredential(empty)), { code: 'ERR_CREDENTIAL_UNAVAILABLE', message: /is empty/ })
  if (process.getuid?.() !== 0) {
    const locked = join(d, 'locked')
    writeFileSync(locked, 'x')
    chmodSync(locked, 0o000)
    await t.rejects(secrets.resolve('warehouse', fileCredential(locked)), { code: 'ERR_CREDENTIAL_UNAVAILABLE', message: /EACCES/ })
  }
})

t.test('passwordEnv reads the injected environment; unset is ERR_CREDENTIAL_UNAVAILABLE naming the variable', async (t) => {
  const clock = new ManualClock()
  const env: NodeJS.ProcessEnv = { WAREHOUSE_PASSWORD: 'from-env' }
  const secrets = new SecretResolver({ clock, env })
  const cred: ResourceCredential = { ...fileCredential('/x'), secret: { env: 'WAREHOUSE_PASSWORD' } }
  t.equal((await secrets.resolve('warehouse', cred)).password, 'from-env')
  const other: ResourceCredential = { ...cred, secret: { env: 'ORDERS_PASSWORD' } }
  await t.rejects(secrets.resolve('orders', other), { code: 'ERR_CREDENTIAL_UNAVAILABLE', message: 'resource "orders": environment variable ORDERS_PASSWORD is not set on this gateway' })
})

t.test('a changed reference is read at once; the upstream CA is read with it', async (t) => {
  const d = dir(t)
  const a = join(d, 'a')
  const b = join(d, 'b')
  const ca = join(d, 'ca.pem')
  writeFileSync(a, 'A')
  writeFileSync(b, 'B')
  writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n')
  const secrets = new SecretResolver({ clock: new ManualClock() })
  t.equal((await secrets.resolve('warehouse', fileCredential(a))).password, 'A')
  t.same(await secrets.resolve('warehouse', fileCredential(b, { upstreamTls: 'verify-full', upstreamCa: ca })), { username: 'app', password: 'B', ca: '-----BEGIN CERTIFICATE-----\n' })
  await t.rejects(secrets.resolve('warehouse', fileCredential(b, { upstreamTls: 'verify-full', upstreamCa: join(d, 'no-ca') })), { code: 'ERR_CREDENTIAL_UNAVAILABLE', message: /upstream CA/ })
})
