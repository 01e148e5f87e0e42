import t from 'tap'
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { encodeCommand } from '../../src/resp/index.js'
import { idlePort } from '../helpers/ports.js'
import { cleanEnv } from '../helpers/processes.js'
import { startRedis } from '../helpers/redis.js'
import { startStack, type Stack } from '../helpers/stack.js'

const run = promisify(execFile)
// Only the gateway's secret files hold these: the job sends no password at all.
const APP_PASSWORD = 'redis app secret 51d2'
const DEFAULT_PASSWORD = 'redis default secret 0b7e'

/** Sends `commands` (then QUIT) on one connection to 127.0.0.1:`port`; resolves with every reply byte, as text, once the server closes. */
function exchange(port: number, commands: string[][]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', reject)
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
    s.setTimeout(30_000, () => s.destroy(new Error('no end of the replies within 30 s')))
    s.write(Buffer.concat([...commands.map((c) => encodeCommand(c)), encodeCommand(['QUIT'])]))
  })
}

function generationOf(stack: Stack): number {
  return Math.max(0, ...stack.gateway.lines.filter((l) => l.event === 'policy_reloaded').map((l) => l.generation as number))
}

async function adminAndReload(stack: Stack, ...args: string[]): Promise<void> {
  const before = generationOf(stack)
  await stack.admin(...args)
  await stack.gateway.waitLog((l) => l.event === 'policy_reloaded' && (l.generation as number) > before)
}

/** `GET /readyz/NAME` on the sidecar's control endpoint, polled until `want` (generous deadline). */
async function readyzUntil(control: string, name: string, want: (status: number, body: Record<string, unknown>) => boolean, ms = 30_000): Promise<{ status: number; body: Record<string, unknown> }> {
  const deadline = Date.now() + ms
  for (;;) {
    const res = await fetch(`http://${control}/readyz/${encodeURIComponent(name)}`)
    const got = { status: res.status, body: (await res.json()) as Record<string, unknown> }
    if (want(got.status, got.body)) return got
    if (Date.now() > deadline) throw new Error(`/readyz/${name} never matched: last ${JSON.stringify(got)}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

t.test('the gateway logs in to Redis with the resource credentials: the job holds no password', async (t) => {
  const redis = await startRedis(t, { requirePass: DEFAULT_PASSWORD, users: [{ name: 'app', password: APP_PASSWORD }] })
  t.teardown(() => redis.stop())
  const stack = await startStack(t)
  const secret = join(stack.dir, 'cache-password')
  writeFileSync(secret, `${APP_PASSWORD}\n`, { mode: 0o600 })
  const defaultSecret = join(stack.dir, 'cache-default-password')
  writeFileSync(defaultSecret, DEFAULT_PASSWORD, { mode: 0o600 })
  const wrong = join(stack.dir, 'cache-wrong-password')
  writeFileSync(wrong, 'not the redis password\n', { mode: 0o600 })
  const cachePort = await idlePort()
  await adminAndReload(stack, 'resources', 'add', 'cache', '--kind', 'datasource', '--type', 'redis', '--address', `127.0.0.1:${redis.port}`, '--port-override', String(cachePort), '--username', 'app', '--password-file', secret)
  await adminAndReload(stack, 'roles', 'grant', 'etl', 'cache')
  const sidecar = await stack.sidecar(await stack.service('cache-job', 'etl'))

  // Direct, without a password, Redis refuses: only the gateway can log in.
  t.match(await exchange(redis.port, [['GET', 'k']]), /^-NOAUTH/, 'the server requires AUTH')

  await t.test('SET, GET, PING and a 100-command pipeline through sidecar and gateway, as the ACL user', async (t) => {
    t.equal(await exchange(cachePort, [['SET', 'greeting', 'hello'], ['GET', 'greeting'], ['PING'], ['ACL', 'WHOAMI']]), '+OK\r\n$5\r\nhello\r\n+PONG\r\n$3\r\napp\r\n+OK\r\n')
    const incrs = Array.from({ length: 100 }, () => ['INCR', 'counter'])
    const expected = Array.from({ length: 100 }, (_, i) => `:${i + 1}\r\n`).join('') + '+OK\r\n'
    t.equal(await exchange(cachePort, incrs), expected, 'every reply in order, none swallowed')
    const start = await stack.gateway.waitLog((l) => l.event === 'session_start' && l.resource === 'cache')
    t.match(start, { account_name: 'cache-job', resource: 'cache', upstream_user: 'app' }, 'the audit says which upstream user')
    // A real client, with no password configured.
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(cachePort), 'GET', 'greeting'], { env: cleanEnv({ REDISCLI_AUTH: '' }) })
    t.equal(stdout.trim(), 'hello', 'redis-cli reads what was written')
  })

  await t.test('/readyz/cache is ready: the gateway logged in and PINGed', async (t) => {
    t.match(await readyzUntil(sidecar.control, 'cache', (s) => s === 200), { status: 200, body: { ready: true, resource: 'cache' } })
    const waited = await sidecar.run(['wait', '--resource', 'cache', '--resource', 'warehouse', '--timeout', '30'])
    t.equal(waited.code, 0, waited.stderr)
  })

  await t.test('without a username, the default user logs in with the password alone (AUTH <password>)', async (t) => {
    await adminAndReload(stack, 'resources', 'set', 'cache', '--clear-credentials', '--password-file', defaultSecret)
    t.equal(await exchange(cachePort, [['ACL', 'WHOAMI'], ['GET', 'greeting']]), '$7\r\ndefault\r\n$5\r\nhello\r\n+OK\r\n')
    t.match(await stack.gateway.waitLog((l) => l.event === 'session_start' && l.resource === 'cache' && l.upstream_user === 'default'), { upstream_user: 'default' })
  })

  await t.test('a wrong secret: the client reads ERR_UPSTREAM_LOGIN_FAILED, the log and the metric say why; readiness says not ready until the fix', async (t) => {
    await adminAndReload(stack, 'resources', 'set', 'cache', '--username', 'app', '--password-file', wrong)
    const said = await exchange(cachePort, [['PING']])
    t.match(said, /^-ERR keyway ERR_UPSTREAM_LOGIN_FAILED: the upstream refused the login as "app": WRONGPASS[^\r\n]*\r\n$/, 'one error reply, then the connection closes')
    t.match(await stack.gateway.waitLog((l) => l.event === 'upstream_login_failed' && l.resource === 'cache'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', upstream_user: 'app', type: 'redis' })
    const metrics = await (await fetch(`http://127.0.0.1:${stack.gatewayMetricsPort}/metrics`)).text()
    t.match(metrics, /keyway_gateway_upstream_login_failures_total\{resource="cache",code="ERR_UPSTREAM_LOGIN_FAILED"\} 1/)
    const notReady = await readyzUntil(sidecar.control, 'cache', (s) => s === 503)
    t.match(notReady.body, { ready: false, code: 'ERR_UPSTREAM_LOGIN_FAILED', reason: /WRONGPASS/ })
    const waited = await sidecar.run(['wait', '--resource', 'cache', '--timeout', '1'])
    t.equal(waited.code, 1)
    t.match(waited.stderr, /ERR_NOT_READY: .*resource cache not ready: ERR_UPSTREAM_LOGIN_FAILED/)
    const fixedAt = Date.now()
    await adminAndReload(stack, 'resources', 'set', 'cache', '--password-file', secret)
    await readyzUntil(sidecar.control, 'cache', (s) => s === 200)
    t.comment(`ready ${Date.now() - fixedAt} ms after the fix was written`)
    t.match(await exchange(cachePort, [['PING']]), /^\+PONG\r\n/)
  })

  await t.test('Redis down: not ready with ERR_UPSTREAM_UNREACHABLE', async (t) => {
    await redis.stop()
    const down = await readyzUntil(sidecar.control, 'cache', (s) => s === 503)
    t.match(down.body, { ready: false, code: 'ERR_UPSTREAM_UNREACHABLE', reason: /resource "cache" is unreachable/ })
    t.notMatch(JSON.stringify(down.body), String(redis.port), 'the upstream address stays at the gateway')
  })

  const logs = stack.gateway.stderr() + sidecar.daemon.stderr()
  t.notOk(logs.includes(APP_PASSWORD) || logs.includes(DEFAULT_PASSWORD), 'no secret is ever logged')
})
