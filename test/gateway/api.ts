import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { request, type RequestOptions } from 'node:https'
import { join } from 'node:path'
import { hashPassword } from '../../src/auth/index.js'
import { formatCredentials } from '../../src/credentials/index.js'
import { createWorld, ManualClock } from '../helpers/world.js'

const policy = {
  version: 1 as const,
  resources: [],
  accounts: [{ id: 'usr_ada', type: 'user' as const, email: 'ada@example.com', roles: [] }],
}

async function setup(t: Test) {
  const clock = new ManualClock(Date.now())
  const world = await createWorld(t, { policy, clock })
  writeFileSync(join(world.dir, 'credentials.yaml'), formatCredentials(new Map([['usr_ada', { passwordHash: await hashPassword('correct horse battery') }]])), { mode: 0o600 })
  const running = await world.startGateway()
  return { clock, world, running, port: running.gateway.address()!.port }
}

function login(port: number, caPem: string, email: string, password: string) {
  return new Promise<{ status: number; retryAfter: string | undefined; body: { code?: string; token?: string } }>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/v1/login', method: 'POST', ca: caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'], agent: false } as RequestOptions,
      (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString()))
        res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined, body: JSON.parse(text) as never }))
      },
    )
    req.on('error', reject)
    req.end(JSON.stringify({ email, password }))
  })
}

t.test('failed logins: audited as login_failed with account and address, counted, then held back with a growing delay', async (t) => {
  const { clock, world, running, port } = await setup(t)
  for (let i = 0; i < 6; i++) t.match(await login(port, world.caPem, 'ada@example.com', `wrong ${i}`), { status: 401, body: { code: 'ERR_LOGIN_FAILED' } })
  const throttled = await login(port, world.caPem, 'ada@example.com', 'correct horse battery')
  t.match(throttled, { status: 429, retryAfter: '1', body: { code: 'ERR_LOGIN_THROTTLED' } }, 'the right password waits too: no guess is checked')
  clock.advance(1_000)
  const ok = await login(port, world.caPem, 'ADA@example.com', 'correct horse battery')
  t.match(ok, { status: 200, body: { token: /^[\w-]+\.[\w-]+\.[\w-]+$/ } }, 'after the delay, the password read from the credentials file works')
  const failed = world.logs.events('login_failed')
  t.equal(failed.length, 7)
  t.match(failed[0], { level: 'warn', code: 'ERR_LOGIN_FAILED', account: 'usr_ada', account_name: 'ada@example.com', client: /^127\.0\.0\.1:\d+$/ })
  t.match(failed[6], { code: 'ERR_LOGIN_THROTTLED' })
  t.match(await login(port, world.caPem, 'nobody@example.com', 'x'), { status: 401, body: { code: 'ERR_LOGIN_FAILED' } })
  t.match(world.logs.events('login_failed')[7], { account: undefined, account_name: 'nobody@example.com' }, 'an unknown account is logged as typed')
  t.match(world.logs.events('login'), [{ account: 'usr_ada', client: /^127\.0\.0\.1:/ }])
  const metrics = await running.registry.metrics()
  t.match(metrics, /keyway_gateway_login_failures_total\{code="ERR_LOGIN_FAILED"\} 7/)
  t.match(metrics, /keyway_gateway_login_failures_total\{code="ERR_LOGIN_THROTTLED"\} 1/)
  t.notOk(/wrong \d|correct horse/.test(world.logs.text()), 'no password in the logs')
})
