import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { adminContextFromConfig, createRole, createService, ensureDevState, initSetup, INIT_FILES, readPolicy } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { DEFAULT_CONFIG_FILE, loadConfig } from '../../src/config/index.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { compilePolicyText } from '../../src/policy/index.js'
import { policyVerifier } from '../helpers/cli.js'
import { KEYWAY_BIN } from '../helpers/processes.js'

const certIsSignedBy = (certPem: string, caPem: string): boolean => new X509Certificate(certPem).verify(new X509Certificate(caPem).publicKey)

t.test('init writes a setup that loads, compiles, and issues tokens its JWKS verifies', async (t) => {
  const dir = join(t.testdir(), 'fresh')
  const clock = new ManualClock(Date.now())
  const result = await initSetup(dir, { clock })
  t.same(result.files.map((f) => f.slice(dir.length + 1)), Object.keys(INIT_FILES))
  for (const [name, mode] of Object.entries(INIT_FILES)) t.equal(statSync(join(dir, name)).mode & 0o777, mode, `${name} mode ${mode.toString(8)}`)

  const config = loadConfig({ file: result.configFile, env: {} })
  t.equal(config.policy, join(dir, 'policy.yaml'))
  t.equal(config.keys.signing, join(dir, 'signing-key.json'))
  t.equal(config.gateway.tls.cert, join(dir, 'gateway.pem'))
  t.equal(config.sidecar.ca, join(dir, 'ca.pem'))
  t.same(config.gateway.listen, { host: '127.0.0.1', port: 7443 })
  t.same(config.gateway.metrics, { host: '127.0.0.1', port: 9464 })
  t.equal(config.sidecar.servername, 'localhost')
  t.equal(config.bootstrap, false)

  const policyText = readFileSync(config.policy, 'utf8')
  const policy = compilePolicyText(policyText, config.policy)
  t.equal(policy.resources.size, 1)
  t.equal(policy.roles.size, 1)
  t.equal(policy.accounts.size, 0)
  t.match(policyText, /^# /m, 'the example policy has comments')

  const gateway = readFileSync(config.gateway.tls.cert, 'utf8')
  const ca = readFileSync(config.sidecar.ca, 'utf8')
  t.ok(certIsSignedBy(gateway, ca), 'the gateway certificate is signed by the CA sidecars trust')
  t.equal(new X509Certificate(gateway).checkHost('localhost'), 'localhost')
  t.equal(new X509Certificate(gateway).checkIP('127.0.0.1'), '127.0.0.1')

  const ctx = adminContextFromConfig(config, clock)
  const { issued } = await createService(ctx, 'ci', { role: 'example' })
  const verifier = await policyVerifier({ jwksFile: config.keys.jwks, policyFile: config.policy }, clock, { issuer: 'keyway', audience: 'keyway' })
  const verified = await verifier.verify(issued.token)
  t.equal(verified.account.name, 'ci')
  t.match((await readPolicy(config.policy)).policy.decide(verified.accountId, 'example-postgres', clock.now()), { allow: true, via: 'role' })
})

t.test('init refuses to overwrite anything, and then writes nothing', async (t) => {
  const dir = t.testdir({ 'jwks.json': '{"keys":[]}', 'ca.pem': 'mine' })
  const err = (await t.rejects(initSetup(dir, { clock: new ManualClock() }))) as KeywayError
  t.equal(err.code, 'ERR_FILE_EXISTS')
  t.match(err.message, join(dir, 'jwks.json'))
  t.match(err.message, join(dir, 'ca.pem'))
  t.same(readdirSync(dir).sort(), ['ca.pem', 'jwks.json'])
  t.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), 'mine')
})

t.test('init with other hosts', async (t) => {
  const dir = t.testdir()
  const result = await initSetup(dir, { clock: new ManualClock(Date.now()), hosts: ['gw.example.test', '10.1.2.3'] })
  const cert = new X509Certificate(readFileSync(join(dir, 'gateway.pem')))
  t.equal(cert.checkHost('gw.example.test'), 'gw.example.test')
  t.equal(cert.checkIP('10.1.2.3'), '10.1.2.3')
  t.equal(loadConfig({ file: result.configFile, env: {} }).sidecar.servername, 'gw.example.test')
  t.ok(isKeywayError(await t.rejects(initSetup(t.testdir(), { clock: new ManualClock(), hosts: ['not a host'] })), 'ERR_CONFIG_INVALID'))
})

/** A copy of the embedded default configuration (bootstrap on, state in ../state) in a test folder. */
const defaultCopy = (t: Test) => {
  const root = t.testdir()
  mkdirSync(join(root, 'config'))
  writeFileSync(join(root, 'config/keyway.yaml'), readFileSync(DEFAULT_CONFIG_FILE))
  writeFileSync(join(root, 'config/policy.yaml'), readFileSync(join(DEFAULT_CONFIG_FILE, '../policy.yaml')))
  return { root, config: loadConfig({ file: join(root, 'config/keyway.yaml'), env: {} }) }
}

t.test('ensureDevState creates what the default configuration needs, once, and never overwrites', async (t) => {
  const { root, config } = defaultCopy(t)
  t.equal(config.bootstrap, true)
  const clock = new ManualClock(Date.now())
  const created = await ensureDevState(config, { clock })
  const state = join(root, 'state')
  t.same(created.sort(), ['ca-key.pem', 'ca.pem', 'gateway-key.pem', 'gateway.pem', 'jwks.json', 'policy.yaml', 'signing-key.json'].map((f) => join(state, f)))
  const tracked = readFileSync(join(root, 'config/policy.yaml'), 'utf8')
  t.equal(readFileSync(join(state, 'policy.yaml'), 'utf8'), tracked, 'the development policy starts as a copy of config/policy.yaml')
  t.equal(statSync(config.keys.signing).mode & 0o777, 0o600)
  t.equal(statSync(config.gateway.tls.key).mode & 0o777, 0o600)
  t.ok(certIsSignedBy(readFileSync(config.gateway.tls.cert, 'utf8'), readFileSync(config.sidecar.ca, 'utf8')))
  const snapshot = Object.fromEntries(created.map((f) => [f, readFileSync(f, 'utf8')]))
  t.same(await ensureDevState(config, { clock }), [], 'nothing missing, nothing created')
  for (const [f, text] of Object.entries(snapshot)) t.equal(readFileSync(f, 'utf8'), text, `${f} untouched`)

  const ctx = adminContextFromConfig(config, clock)
  const { issued } = await createService(ctx, 'ci', { role: 'demo' })
  const verifier = await policyVerifier({ jwksFile: config.keys.jwks, policyFile: config.policy }, clock, { issuer: 'keyway', audience: 'keyway' })
  t.ok(await verifier.verify(issued.token))
  t.match(readFileSync(join(state, 'policy.yaml'), 'utf8'), 'name: ci', 'admin edits the copy in state/')
  t.equal(readFileSync(join(root, 'config/policy.yaml'), 'utf8'), tracked, 'the tracked policy stays as it is')
})

t.test('keyway admin before the gateway ever ran copies the development policy first', async (t) => {
  const { root, config } = defaultCopy(t)
  t.notOk(existsSync(config.policy))
  const ctx = adminContextFromConfig(config, new ManualClock(Date.now()))
  await createRole(ctx, 'etl')
  t.match(readFileSync(join(root, 'state/policy.yaml'), 'utf8'), 'name: etl')
  t.notMatch(readFileSync(join(root, 'config/policy.yaml'), 'utf8'), 'name: etl')
})

t.test('ensureDevState fills in a missing key set, or adds a new key to an existing one', async (t) => {
  const { config } = defaultCopy(t)
  const clock = new ManualClock(Date.now())
  await ensureDevState(config, { clock })
  const firstKid = JSON.parse(readFileSync(config.keys.signing, 'utf8')).kid

  unlinkSync(config.keys.jwks)
  t.same(await ensureDevState(config, { clock }), [config.keys.jwks])
  t.same(JSON.parse(readFileSync(config.keys.jwks, 'utf8')).keys.map((k: { kid: string }) => k.kid), [firstKid], 'derived from the signing key')

  unlinkSync(config.keys.signing)
  t.same(await ensureDevState(config, { clock }), [config.keys.signing])
  const secondKid = JSON.parse(readFileSync(config.keys.signing, 'utf8')).kid
  t.not(secondKid, firstKid)
  t.same(JSON.parse(readFileSync(config.keys.jwks, 'utf8')).keys.map((k: { kid: string }) => k.kid), [firstKid, secondKid], 'the old key stays, the new one is added')
})

t.test('ensureDevState refuses incomplete TLS files rather than mint a certificate nobody trusts', async (t) => {
  const { config } = defaultCopy(t)
  const clock = new ManualClock(Date.now())
  await ensureDevState(config, { clock })
  unlinkSync(config.gateway.tls.cert)
  const ca = readFileSync(config.sidecar.ca, 'utf8')
  const err = (await t.rejects(ensureDevState(config, { clock }))) as KeywayError
  t.equal(err.code, 'ERR_CONFIG_IO')
  t.match(err.message, config.gateway.tls.cert)
  t.equal(readFileSync(config.sidecar.ca, 'utf8'), ca)
  t.notOk(existsSync(config.gateway.tls.cert))
})

t.test('ensureDevState does nothing without bootstrap', async (t) => {
  const dir = t.testdir({ 'keyway.yaml': 'bootstrap: false\nstate: state\n' })
  const config = loadConfig({ file: join(dir, 'keyway.yaml'), env: {} })
  t.same(await ensureDevState(config, { clock: new ManualClock() }), [])
  t.same(readdirSync(dir), ['keyway.yaml'])
})

t.test('with bootstrap, the admin context creates missing development keys before it issues a token', async (t) => {
  const { config } = defaultCopy(t)
  t.notOk(existsSync(config.keys.signing))
  const clock = new ManualClock(Date.now())
  const { issued } = await createService(adminContextFromConfig(config, clock), 'early-bird')
  t.ok(existsSync(config.keys.signing) && existsSync(config.keys.jwks))
  const verifier = await policyVerifier({ jwksFile: config.keys.jwks, policyFile: config.policy }, clock, { issuer: 'keyway', audience: 'keyway' })
  t.ok(await verifier.verify(issued.token))
})

const modeOf = (path: string): number => statSync(path).mode & 0o777

t.test('keyway init under umask 000: folders 0700, keys 0600, the rest as INIT_FILES says', async (t) => {
  const dir = join(t.testdir(), 'made', 'here')
  // A child, so that the umask is the process's own from its start, as a person's shell would set it.
  const child = spawn(process.execPath, ['--input-type=module', '-e', `process.umask(0); await import(${JSON.stringify(KEYWAY_BIN)})`, '--', 'keyway', 'init', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let err = ''
  child.stderr.on('data', (c: Buffer) => (err += c.toString()))
  child.stdout.resume()
  const [code] = (await once(child, 'exit')) as [number | null]
  t.equal(code, 0, err)
  t.equal(modeOf(dir), 0o700, 'the folder')
  t.equal(modeOf(join(dir, '..')), 0o700, 'and the parent it had to make')
  for (const [name, mode] of Object.entries(INIT_FILES)) t.equal(modeOf(join(dir, name)), mode, `${name} ${mode.toString(8)}`)
})

t.test('the development state under umask 000: its folder 0700, keys 0600', async (t) => {
  const { root, config } = defaultCopy(t)
  const before = process.umask(0)
  t.teardown(() => void process.umask(before))
  await ensureDevState(config, { clock: new ManualClock(Date.now()) })
  t.equal(modeOf(join(root, 'state')), 0o700)
  for (const file of [config.keys.signing, config.gateway.tls.key, join(root, 'state/ca-key.pem')]) t.equal(modeOf(file), 0o600, file)
  for (const file of [config.keys.jwks, config.gateway.tls.cert, config.sidecar.ca]) t.equal(modeOf(file), 0o644, file)
})
