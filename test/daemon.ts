import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import type { CliIo } from '../src/cli/command.js'
import { loadConfig, type KeywayConfig } from '../src/config/index.js'
import { quickStartSteps, runGateway, shownPath, startGateway } from '../src/daemon.js'
import { PACKAGE_ROOT, VERSION } from '../src/package.js'
import { listen } from './helpers/net.js'
import { createWorld, packPolicyHere } from './helpers/world.js'

const policy = { version: 1 as const, resources: [], roles: [], accounts: [] }

t.test('a taken gateway port is ERR_PORT_IN_USE naming the setting', async (t) => {
  const taken = await listen(t, (s) => s.destroy())
  const world = await createWorld(t, { policy, gateway: { listen: `127.0.0.1:${taken.port}` } })
  await t.rejects(world.startGateway(), { code: 'ERR_PORT_IN_USE', message: /gateway\.listen/ })
})

t.test('a gateway whose metrics port is taken fails to start and does not keep serving tunnels', async (t) => {
  const taken = await listen(t, (s) => s.destroy())
  const world = await createWorld(t, { policy })
  const config = loadConfig({ file: world.config.file, env: { KEYWAY_GATEWAY_METRICS: `127.0.0.1:${taken.port}`, KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0' } })
  await t.rejects(startGateway(config, { logger: world.logger, clock: world.clock, packPolicy: packPolicyHere }), { code: 'ERR_PORT_IN_USE', message: /gateway\.metrics/ })
  const listening = await world.logs.waitFor((l) => l.event === 'gateway_listening')
  const tunnelPort = Number(String(listening.address).split(':')[1])
  await world.logs.waitFor((l) => l.event === 'gateway_closed')
  const probe = connect({ host: '127.0.0.1', port: tunnelPort })
  const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException]
  t.equal(err.code, 'ECONNREFUSED', 'the tunnel port is closed again')
})

t.test('a credentials file others may read stops the gateway before it listens, as ssh refuses a key', async (t) => {
  const { writeFileSync, chmodSync } = await import('node:fs')
  const { join } = await import('node:path')
  const world = await createWorld(t, { policy })
  const file = join(world.dir, 'credentials.yaml')
  writeFileSync(file, 'version: 1\nusers: {}\n')
  chmodSync(file, 0o644)
  await t.rejects(world.startGateway(), { code: 'ERR_CREDENTIALS_MODE', message: /chmod 600/ })
  t.equal(world.logs.events('gateway_listening').length, 0)
  chmodSync(file, 0o600)
  const running = await world.startGateway()
  t.ok(running.gateway.address())
})

t.test('a policy that still holds a password hash is refused, naming the migration command', async (t) => {
  const world = await createWorld(t, {
    policy: { version: 1, accounts: [{ id: 'usr_ada', type: 'user', email: 'ada@example.com', passwordHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA' }] },
  })
  await t.rejects(world.startGateway(), { code: 'ERR_POLICY_INVALID', message: /keyway admin users migrate-passwords/ })
})

t.test('quick start: paths as typed from where npm start ran; relative inside, absolute and quoted outside', async (t) => {
  t.equal(shownPath('/src/keyway/config/keyway.yaml', '/src/keyway'), 'config/keyway.yaml')
  t.equal(shownPath('/src/keyway', '/src/keyway'), '.')
  t.equal(shownPath('/tmp/k/config/keyway.yaml', '/home/ada'), '/tmp/k/config/keyway.yaml', 'absolute when the relative path climbs out')
  t.equal(shownPath('/tmp/a b/keyway.yaml', '/home/ada'), "'/tmp/a b/keyway.yaml'", 'quoted with a space')
  t.equal(shownPath("/tmp/it's/k.yaml", '/'), `'tmp/it'\\''s/k.yaml'`, 'a quote inside is escaped for the shell')
})

/** A copy of the embedded default in a scratch folder, its listeners on port 0. */
function embeddedDefault(t: Test): KeywayConfig {
  const dir = t.testdir()
  cpSync(join(PACKAGE_ROOT, 'config'), join(dir, 'config'), { recursive: true })
  return loadConfig({ file: join(dir, 'config/keyway.yaml'), env: { KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0', KEYWAY_GATEWAY_METRICS: '', KEYWAY_ADMIN_LISTEN: '127.0.0.1:0' } })
}

function io(config: KeywayConfig, tty: boolean, env: Record<string, string> = {}): { io: CliIo; out: string[] } {
  const out: string[] = []
  const stream = Object.assign(new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) }), { isTTY: tty })
  const stop = new AbortController()
  stop.abort('test')
  return { io: { stdout: stream, stderr: stream, stdin: Readable.from([]), env, cwd: dirname(dirname(config.file)), stopSignal: stop.signal }, out }
}

t.test('quick start: the next steps go to a terminal only, and only while the demo account does not exist', async (t) => {
  const config = embeddedDefault(t)
  const piped = io(config, false)
  t.equal(await runGateway(config, piped.io), 0)
  t.same(piped.out, [], 'nothing but log lines when nobody reads a terminal')
  t.ok(existsSync(config.policy) && config.policy.endsWith('/state/policy.yaml'), 'the development policy was copied to state/')

  const terminal = io(config, true)
  t.equal(await runGateway(config, terminal.io), 0)
  const text = terminal.out.join('')
  t.match(text, 'Create a service token, then start a sidecar with it:')
  // This copy of config/ is not a package: keyway.js is the running package's.
  const bin = `node ${shownPath(join(PACKAGE_ROOT, 'bin/keyway.js'), terminal.io.cwd)}`
  t.match(text, `${bin} admin services create demo-job --role demo --config config/keyway.yaml --token-file state/demo-job.token`)
  t.match(text, `${bin} listen --config config/keyway.yaml --token-file state/demo-job.token`)
  t.same(quickStartSteps(config, terminal.io, false), text.split('\n').filter((l) => l.startsWith('  ') && !l.includes(' --admin ')).map((l) => l.trim()), 'the same commands as the log line')
  t.match(text, /Admin UI on http:\/\/127\.0\.0\.1:\d+\/ \(the admin API under \/v1\/admin\/[^\n]*\n\n  node .+ admin users create you@example\.com --admin --password-stdin --config config\/keyway\.yaml/, 'where the Admin UI is and how to create the first admin')

  const home = mkdtempSync(join(tmpdir(), 'keyway-home-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  const fromElsewhere = quickStartSteps(config, { ...terminal.io, cwd: PACKAGE_ROOT, env: { npm_lifecycle_event: 'start', INIT_CWD: home } }, false)
  t.match(fromElsewhere[0], `--config ${shownPath(config.file, home)}`, 'npm start typed elsewhere: INIT_CWD decides, paths are absolute (quoted if need be)')
  t.ok(shownPath(config.file, home).includes(config.file), 'absolute')

  writeFileSync(config.policy, readFileSync(config.policy, 'utf8').replace(/accounts:.*\n/, "accounts:\n  - { id: svc_0123456789abcdef, type: service, name: demo-job, roles: [demo] }\n"))
  const later = io(config, true)
  t.equal(await runGateway(config, later.io), 0)
  t.notMatch(later.out.join(''), 'services create', 'no command to create what exists')
  t.same(quickStartSteps(config, later.io, true), [])
})

t.test('the gateway logs once which data path it uses and exposes keyway_build_info; forward.nodeInternals: off switches the fast path off', async (t) => {
  const world = await createWorld(t, { policy })
  for (const setting of ['on', 'off'] as const) {
    const config = loadConfig({ file: world.config.file, env: { KEYWAY_FORWARD_NODE_INTERNALS: setting, KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0', KEYWAY_GATEWAY_METRICS: '' } })
    const running = await startGateway(config, { logger: world.logger, clock: world.clock })
    const fast = setting === 'on'
    const line = await world.logs.waitFor((l) => l.event === 'data_path' && l.fast_path === fast)
    t.match(line, { node_version: process.version, fast_path: fast }, `one data_path line (${setting})`)
    if (!fast) t.match(line.reason, /switched off/)
    const text = await running.registry.metrics()
    t.match(text, `keyway_build_info{version="${VERSION}",node_version="${process.version}",fast_path="${fast}"} 1`, `keyway_build_info (${setting})`)
    await running.close()
  }
})

t.test('the gateway starts the admin listener (admin.listen): an admin signs in; close() stops it', async (t) => {
  const world = await createWorld(t, { policy })
  const { createUser } = await import('../src/admin/index.js')
  await createUser({ policyFile: world.config.policy, credentialsFile: world.config.credentials, clock: world.clock, issuer: 'keyway-test', audience: 'keyway-test' }, 'root@example.com', { password: 'a long password', admin: true })
  const config = loadConfig({ file: world.config.file, env: { KEYWAY_ADMIN_LISTEN: '127.0.0.1:0', KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0' } })
  const running = await startGateway(config, { logger: world.logger, clock: world.clock })
  t.teardown(() => running.close())
  const at = running.admin!.address()!
  t.equal(at.address, '127.0.0.1')
  const res = await fetch(`http://127.0.0.1:${at.port}/v1/admin/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'root@example.com', password: 'a long password', token: true }) })
  t.equal(res.status, 200)
  const body = (await res.json()) as { token: string; csrfToken: string }
  t.match(body.token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a login token when asked')
  const accounts = await fetch(`http://127.0.0.1:${at.port}/v1/admin/accounts`, { headers: { authorization: `Bearer ${body.token}` } })
  t.equal(accounts.status, 200, 'the login token works as a bearer through the gateway verifier')
  t.ok(world.logs.lines.some((l) => l.event === 'admin_listening'))
  await running.close()
  await t.rejects(fetch(`http://127.0.0.1:${at.port}/v1/admin/openapi.json`), 'closed with the gateway')
})

t.test('a non-loopback admin listener without TLS stops the gateway start', async (t) => {
  const world = await createWorld(t, { policy })
  const config = loadConfig({ file: world.config.file, env: { KEYWAY_ADMIN_LISTEN: '0.0.0.0:0', KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0' } })
  await t.rejects(startGateway(config, { logger: world.logger, clock: world.clock }), { code: 'ERR_ADMIN_INSECURE_LISTEN' })
})

t.test('keyway admin serve: the admin API on its own; it sees policy edits made after it started; stops on the stop signal', async (t) => {
  const world = await createWorld(t, { policy })
  const { createUser } = await import('../src/admin/index.js')
  const { runAdminServer } = await import('../src/daemon.js')
  const { PassThrough } = await import('node:stream')
  const ctx = { policyFile: world.config.policy, credentialsFile: world.config.credentials, clock: world.clock, issuer: 'keyway-test', audience: 'keyway-test' }
  const config = loadConfig({ file: world.config.file, env: { KEYWAY_ADMIN_LISTEN: '127.0.0.1:0' } })
  const stop = new AbortController()
  const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough(), env: {}, cwd: world.dir, stopSignal: stop.signal }
  const done = runAdminServer(config, io, { logger: world.logger, clock: world.clock })
  t.teardown(() => stop.abort())
  const line = await world.logs.waitFor((l) => l.event === 'admin_listening')
  const port = Number(String(line.address).split(':').pop())
  await createUser(ctx, 'root@example.com', { password: 'a long password', admin: true })
  const login = await fetch(`http://127.0.0.1:${port}/v1/admin/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'root@example.com', password: 'a long password', token: true }) })
  t.equal(login.status, 200)
  const { token } = (await login.json()) as { token: string }
  const accounts = await fetch(`http://127.0.0.1:${port}/v1/admin/accounts`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(accounts.status, 200, 'a user created after the start can use a login token: the policy is read fresh')
  stop.abort()
  t.equal(await done, 0)
})
