import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs'
import * as http from 'node:http'
import { dirname, join } from 'node:path'
import { isKeywayError, KeywayError as KeywayErrorClass, type ErrorCode, type KeywayError } from '../../src/errors.js'
import { Registry } from 'prom-client'
import { silentLogger } from '../../src/observe/index.js'
import { ControlClient, resolveControlEndpoint, startControlServer } from '../../src/sidecar/index.js'
import { LOOPBACK } from '../helpers/fake-gateway.js'
import { tempRuntimeDir } from '../helpers/runtime-dir.js'
import { occupyPort, portOf, sidecarWorld, dial, roundTrip, type World } from '../fixtures/sidecar/harness.js'
import { idlePort } from '../helpers/ports.js'
import type { Teardown } from '../helpers/net.js'
import { cleanNode, nodeForUser } from '../helpers/node-for-user.js'

async function withControl(t: Test, world: World, options: { controlTcp?: boolean } = {}) {
  const runtimeDir = tempRuntimeDir(t)
  const server = await startControlServer({
    address: { host: LOOPBACK, port: 0 },
    runtimeDir,
    controlTcp: options.controlTcp ?? false,
    target: world.sidecar,
    registry: world.registry,
    logger: silentLogger(),
  })
  t.teardown(() => server.close())
  const port = server.address()!.port
  const socket = server.socketPath
  return { port, socket, runtimeDir, server, client: new ControlClient({ kind: 'unix', path: socket }) }
}

/** An HTTP request to a TCP port or a Unix socket path. */
function request(to: number | string, method: string, path: string, options: { body?: string; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    const where = typeof to === 'number' ? { host: LOOPBACK, port: to } : { socketPath: to }
    const req = http.request({ ...where, method, path, agent: false, headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

const VIEW = (port: number) => ({
  settings: { portOverrides: true, autoConnect: false },
  resources: [
    { name: 'pg', kind: 'datasource' as const, type: 'postgres', portOverride: port },
    { name: 'web', kind: 'website' as const, type: 'http', portOverride: null },
  ],
})

t.test('status, connect and disconnect through the control API', async (t) => {
  const pgPort = await idlePort()
  const world = await sidecarWorld(t, { view: VIEW(pgPort) })
  const { client } = await withControl(t, world)

  const before = await client.status()
  t.match(before, {
    ready: true,
    reason: null,
    account: { name: 'ci-runner' },
    tokenFingerprint: /^sha256:[0-9a-f]{16}$/,
    gateway: { up: true, gateway: world.fake.address },
    settings: { portOverrides: true, autoConnect: false },
    resources: [
      { name: 'pg', kind: 'datasource', type: 'postgres', localAddress: '', state: 'not connected', sessions: 0 },
      { name: 'web', kind: 'website', type: 'http', localAddress: '', state: 'not connected', sessions: 0 },
    ],
  })

  t.same(await client.connect('pg'), { resource: 'pg', localAddress: `127.0.0.1:${pgPort}` })
  const web = await client.connect('web')
  t.match(web.localAddress, /^127\.0\.0\.1:\d+$/)
  const socket = await dial(t, portOf(web.localAddress))
  t.equal((await roundTrip(socket, Buffer.from('GET /'))).toString(), 'GET /')
  t.match((await client.status()).resources, [{ name: 'pg', state: 'bound' }, { name: 'web', state: 'bound', localAddress: web.localAddress }])

  t.same(await client.disconnect('pg'), { resource: 'pg' })
  const notConnected = (await client.disconnect('pg').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(notConnected, 'ERR_NOT_CONNECTED'))
  const denied = (await client.connect('secret').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(denied, 'ERR_GRANT_DENIED'))
  t.equal(denied.detail?.status, 404)
})

t.test('a refusal relayed from the gateway answers the status of its code in the one error table', async (t) => {
  let refusal: ErrorCode = 'ERR_ACCOUNT_SUSPENDED'
  const target = {
    snapshot: () => ({}) as never,
    connect: () => Promise.reject(new KeywayErrorClass(refusal, `cannot connect: ${refusal}`)),
    disconnect: (resource: string) => Promise.resolve({ resource }),
    ready: () => undefined,
  }
  const server = await startControlServer({
    address: { host: LOOPBACK, port: 0 },
    runtimeDir: tempRuntimeDir(t),
    controlTcp: false,
    target,
    registry: new Registry(),
    logger: silentLogger(),
  })
  t.teardown(() => server.close())
  const port = server.socketPath
  const json = { 'content-type': 'application/json' }
  for (const [code, status] of [['ERR_ACCOUNT_SUSPENDED', 403], ['ERR_ACCOUNT_UNKNOWN', 401], ['ERR_TOKEN_EXPIRED', 401], ['ERR_INTERNAL', 500]] as const) {
    refusal = code
    const res = await request(port, 'POST', '/v1/connect', { body: '{"resource":"pg"}', headers: json })
    t.equal(res.status, status, code)
    t.match(JSON.parse(res.body), { code })
  }
})

t.test('errors are {code, message} with a 4xx status', async (t) => {
  const taken = await occupyPort(t)
  const world = await sidecarWorld(t, { view: VIEW(taken.port) })
  const { socket: port } = await withControl(t, world)
  const json = { 'content-type': 'application/json' }

  const inUse = await request(port, 'POST', '/v1/connect', { body: '{"resource":"pg"}', headers: json })
  t.equal(inUse.status, 409)
  t.match(JSON.parse(inUse.body), { code: 'ERR_PORT_IN_USE', message: new RegExp(`"pg".*${taken.port}`) })

  const notJson = await request(port, 'POST', '/v1/connect', { body: 'resource=pg', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(notJson.status, 400)
  t.match(JSON.parse(notJson.body), { code: 'ERR_USAGE', message: /application\/json/ })

  const badBody = await request(port, 'POST', '/v1/connect', { body: '{"resource":', headers: json })
  t.equal(badBody.status, 400)
  t.match(JSON.parse(badBody.body), { code: 'ERR_USAGE' })

  const noResource = await request(port, 'POST', '/v1/disconnect', { body: '{}', headers: json })
  t.equal(noResource.status, 400)
  t.match(JSON.parse(noResource.body), { code: 'ERR_USAGE', message: /resource/ })

  const wrongMethod = await request(port, 'GET', '/v1/connect')
  t.equal(wrongMethod.status, 405)
  t.equal(wrongMethod.headers.allow, 'POST')

  const unknown = await request(port, 'GET', '/v1/nothing')
  t.equal(unknown.status, 404)
  t.match(JSON.parse(unknown.body), { code: 'ERR_NOT_FOUND' })
})

t.test('a request addressed to a non-loopback host is refused (DNS rebinding)', async (t) => {
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  const { port } = await withControl(t, world)
  for (const path of ['/v1/status', '/metrics', '/readyz']) {
    const res = await request(port, 'GET', path, { headers: { host: 'attacker.example:7070' } })
    t.equal(res.status, 403, path)
    t.match(JSON.parse(res.body), { code: 'ERR_USAGE', message: /loopback/ })
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
    t.equal((await request(port, 'GET', '/readyz', { headers: { host } })).status, 200, host)
  }
})

t.test('/healthz, /readyz and /metrics', async (t) => {
  const pgPort = await idlePort()
  const world = await sidecarWorld(t, { view: { ...VIEW(pgPort), settings: { portOverrides: true, autoConnect: true } } })
  const { port, client } = await withControl(t, world)
  t.equal((await request(port, 'GET', '/healthz')).status, 200)
  t.same(await client.readyz(), { ready: true })
  const metrics = await request(port, 'GET', '/metrics')
  t.equal(metrics.status, 200)
  for (const name of [
    'keyway_sidecar_sessions_active',
    'keyway_sidecar_sessions_total',
    'keyway_sidecar_bytes_total',
    'keyway_sidecar_resources_bound 2',
    'keyway_sidecar_gateway_up 1',
    'keyway_sidecar_sync_total{result="ok"} 1',
  ]) {
    t.ok(metrics.body.includes(name), name)
  }

  await world.fake.down()
  world.clock.advance(1_000)
  await world.sidecar.sync()
  const ready = await request(port, 'GET', '/readyz')
  t.equal(ready.status, 503)
  t.match(JSON.parse(ready.body), { status: 'not ready', reason: /^gateway unreachable: / })
  t.match(await client.readyz(), { ready: false, reason: /gateway unreachable/ })
  t.equal((await request(port, 'GET', '/healthz')).status, 200, 'alive while the gateway is down')
})

t.test('only loopback: a non-loopback control address is refused', async (t) => {
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  for (const host of ['0.0.0.0', '192.168.1.10', '::']) {
    const err = (await startControlServer({ address: { host, port: 0 }, runtimeDir: tempRuntimeDir(t), target: world.sidecar, registry: world.registry, logger: silentLogger() }).catch(
      (e: unknown) => e,
    )) as KeywayError
    t.ok(isKeywayError(err, 'ERR_CONFIG_INVALID'), host)
    t.match(err.message, /sidecar\.control must be a loopback address/)
  }
})

t.test('a control port in use is ERR_PORT_IN_USE', async (t) => {
  const taken = await occupyPort(t)
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  const err = (await startControlServer({ address: { host: LOOPBACK, port: taken.port }, runtimeDir: tempRuntimeDir(t), target: world.sidecar, registry: world.registry, logger: silentLogger() }).catch(
    (e: unknown) => e,
  )) as KeywayError
  t.ok(isKeywayError(err, 'ERR_PORT_IN_USE'))
  t.match(err.message, new RegExp(`127\\.0\\.0\\.1:${taken.port}`))
})

t.test('a control client with no sidecar behind: ERR_SIDECAR_UNREACHABLE', async (t) => {
  const port = await idlePort()
  const err = (await new ControlClient({ host: LOOPBACK, port }).status().catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_SIDECAR_UNREACHABLE'))
  t.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`))
})

t.test('the TCP endpoint keeps /healthz, /readyz and /metrics; the control API there is 401 ERR_CONTROL_UNAUTHORIZED by default', async (t) => {
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  const { port, socket, server } = await withControl(t, world)
  t.equal(server.tokenFile, undefined, 'no bearer secret is written')
  for (const path of ['/healthz', '/readyz', '/metrics']) t.equal((await request(port, 'GET', path)).status, 200, `${path} on TCP`)
  const json = { 'content-type': 'application/json' }
  for (const [method, path] of [['GET', '/v1/status'], ['POST', '/v1/connect'], ['POST', '/v1/disconnect'], ['GET', '/v1/anything']] as const) {
    const res = await request(port, method, path, { body: '{"resource":"pg"}', headers: { ...json, authorization: 'Bearer guessed' } })
    t.equal(res.status, 401, `${method} ${path} on TCP`)
    t.equal(res.headers['www-authenticate'], 'Bearer')
    t.match(JSON.parse(res.body), { code: 'ERR_CONTROL_UNAUTHORIZED', message: new RegExp(`Unix socket ${socket.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`) })
  }
  t.same(world.sidecar.status().map((r) => r.state), ['not connected', 'not connected'], 'nothing was bound through TCP')
  t.equal((await request(socket, 'GET', '/v1/status')).status, 200, 'the Unix socket answers')
})

t.test('with controlTcp the TCP control API needs the bearer secret of control.token (0600); the CLI endpoint reads it', async (t) => {
  const pgPort = await idlePort()
  const world = await sidecarWorld(t, { view: VIEW(pgPort) })
  const { port, runtimeDir, server } = await withControl(t, world, { controlTcp: true })
  t.equal(server.tokenFile, join(runtimeDir, 'control.token'))
  t.equal(statSync(server.tokenFile!).mode & 0o777, 0o600)
  const secret = readFileSync(server.tokenFile!, 'utf8').trim()
  for (const authorization of [undefined, 'Bearer ', `Bearer ${secret.slice(0, -1)}`, `Bearer ${secret}x`, `Basic ${secret}`]) {
    const res = await request(port, 'GET', '/v1/status', { headers: authorization === undefined ? {} : { authorization } })
    t.equal(res.status, 401, `Authorization: ${authorization ?? '(none)'}`)
    t.match(JSON.parse(res.body), { code: 'ERR_CONTROL_UNAUTHORIZED', message: /control\.token/ })
  }
  t.equal((await request(port, 'GET', '/v1/status', { headers: { authorization: `Bearer ${secret}` } })).status, 200)

  const endpoint = resolveControlEndpoint({ control: `127.0.0.1:${port}`, runtimeDir, env: {} })
  t.same(endpoint, { kind: 'tcp', address: { host: '127.0.0.1', port }, bearer: secret })
  t.same(await new ControlClient(endpoint).connect('pg'), { resource: 'pg', localAddress: `127.0.0.1:${pgPort}` })
  const anonymous = (await new ControlClient({ host: LOOPBACK, port }).status().catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(anonymous, 'ERR_CONTROL_UNAUTHORIZED'))
  t.equal(anonymous.detail?.status, 401)
  t.same(resolveControlEndpoint({ runtimeDir, env: {} }), { kind: 'unix', path: join(runtimeDir, 'control.sock') }, 'without --control: the socket')
  t.same(
    resolveControlEndpoint({ runtimeDir, env: { KEYWAY_CONTROL: `127.0.0.1:${port}` } }),
    { kind: 'unix', path: join(runtimeDir, 'control.sock') },
    'KEYWAY_CONTROL (the health port) does not move the commands off the socket',
  )

  await server.close()
  t.notOk(existsSync(server.tokenFile!), 'the secret is removed on close')
  t.notOk(existsSync(server.socketPath), 'and the socket')
})

/** uid and gid of `nobody`, when this test runs as root. */
function nobody(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'))
  const [, , uid, gid] = line?.split(':') ?? []
  return uid && gid ? { uid: Number(uid), gid: Number(gid) } : undefined
}

/** Runs a probe as another user: each line it prints is `what=STATUS` or `what=ERRCODE`. */
async function probeAs(t: Teardown, user: { uid: number; gid: number }, socket: string, port: number): Promise<Record<string, string>> {
  const code = `
const http = require('node:http')
const ask = (what, options) => new Promise((resolve) => {
  const req = http.request({ ...options, agent: false }, (res) => { res.resume(); resolve(what + '=' + res.statusCode) })
  req.on('error', (err) => resolve(what + '=' + (err.code || err.message)))
  req.end()
})
Promise.all([
  ask('socket', { socketPath: ${JSON.stringify(socket)}, path: '/v1/status' }),
  ask('tcp', { host: '127.0.0.1', port: ${port}, path: '/v1/status' }),
  ask('tcp_disconnect', { host: '127.0.0.1', port: ${port}, path: '/v1/disconnect', method: 'POST', headers: { 'content-type': 'application/json' } }),
  ask('healthz', { host: '127.0.0.1', port: ${port}, path: '/healthz' }),
]).then((lines) => console.log(lines.join('\\n')))`
  const child = spawn(...cleanNode(nodeForUser(t, user), ['-e', code]), { uid: user.uid, gid: user.gid, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (err += c.toString()))
  const [exit] = (await once(child, 'exit')) as [number | null]
  if (exit !== 0) throw new Error(`the probe as uid ${user.uid} exited ${exit}: ${err}`)
  return Object.fromEntries(out.trim().split('\n').map((l) => l.split('=') as [string, string]))
}

t.test('the probe as a test: another local user (nobody) cannot use the control API, on the socket or on TCP', { skip: nobody() === undefined ? 'needs root, to run a child as nobody' : false }, async (t) => {
  const user = nobody()!
  const world = await sidecarWorld(t, { view: { ...VIEW(await idlePort()), settings: { portOverrides: true, autoConnect: true } } })
  // umask 000 and a parent anyone may enter: only the runtime directory's own mode stands in the way.
  const before = process.umask(0)
  t.teardown(() => void process.umask(before))
  const runtimeDir = tempRuntimeDir(t)
  chmodSync(dirname(runtimeDir), 0o755)
  const server = await startControlServer({ address: { host: LOOPBACK, port: 0 }, runtimeDir, target: world.sidecar, registry: world.registry, logger: silentLogger() })
  t.teardown(() => server.close())
  t.equal(statSync(runtimeDir).mode & 0o777, 0o700)
  const port = server.address()!.port
  const seen = await probeAs(t, user, server.socketPath, port)
  t.equal(seen.socket, 'EACCES', 'the control socket is out of reach')
  t.equal(seen.tcp, '401', 'the TCP control API answers 401')
  t.equal(seen.tcp_disconnect, '401', 'and cannot unbind a resource')
  t.equal(seen.healthz, '200', 'the probes still work')
  t.equal((await request(server.socketPath, 'GET', '/v1/status')).status, 200, 'the owner still can')
})

t.test('shared with a group: directory 0750 and socket 0660, so a member of the group can use it', { skip: nobody() === undefined ? 'needs root, to run a child as nobody' : false }, async (t) => {
  const user = nobody()!
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  const runtimeDir = tempRuntimeDir(t)
  chmodSync(dirname(runtimeDir), 0o755)
  const server = await startControlServer({ address: { host: LOOPBACK, port: 0 }, runtimeDir, gid: user.gid, target: world.sidecar, registry: world.registry, logger: silentLogger() })
  t.teardown(() => server.close())
  t.equal(statSync(runtimeDir).mode & 0o777, 0o750)
  t.equal(statSync(runtimeDir).gid, user.gid)
  t.equal(statSync(server.socketPath).mode & 0o777, 0o660)
  const seen = await probeAs(t, user, server.socketPath, server.address()!.port)
  t.equal(seen.socket, '200', 'a member of the group reaches the control API')
})

t.test('GET /readyz/<resource>: 200 when the gateway says ready, 503 with code and reason when not, 404 for an ungranted one; on TCP without a secret', async (t) => {
  const asked: string[] = []
  const target = {
    snapshot: () => ({}) as never,
    connect: async () => ({}) as never,
    disconnect: async () => ({}) as never,
    ready: () => undefined,
    async resourceReady(resource: string) {
      asked.push(resource)
      if (resource === 'pg db') return { ready: true as const }
      if (resource === 'cache') return { ready: false as const, code: 'ERR_UPSTREAM_LOGIN_FAILED' as const, reason: 'ERR_UPSTREAM_LOGIN_FAILED: WRONGPASS' }
      return { ready: false as const, code: 'ERR_GRANT_DENIED' as const, reason: 'ERR_GRANT_DENIED: access denied' }
    },
  }
  const runtimeDir = tempRuntimeDir(t)
  const server = await startControlServer({ address: { host: LOOPBACK, port: 0 }, runtimeDir, target, registry: new Registry(), logger: silentLogger() })
  t.teardown(() => server.close())
  const port = server.address()!.port
  const ok = await request(port, 'GET', '/readyz/pg%20db')
  t.match(ok, { status: 200 })
  t.same(JSON.parse(ok.body), { ready: true, resource: 'pg db' })
  const no = await request(server.socketPath, 'GET', '/readyz/cache')
  t.equal(no.status, 503)
  t.same(JSON.parse(no.body), { ready: false, resource: 'cache', code: 'ERR_UPSTREAM_LOGIN_FAILED', reason: 'ERR_UPSTREAM_LOGIN_FAILED: WRONGPASS' })
  t.match(await request(port, 'GET', '/readyz/other'), { status: 404, body: /"code":"ERR_GRANT_DENIED"/ })
  t.match(await request(port, 'GET', '/readyz/a/b'), { status: 400, body: /ERR_USAGE/ })
  t.match(await request(port, 'POST', '/readyz/cache'), { status: 405 })
  t.same(asked, ['pg db', 'cache', 'other'])
  const client = new ControlClient({ kind: 'unix', path: server.socketPath })
  t.same(await client.readyz('pg db'), { ready: true })
  t.same(await client.readyz('cache'), { ready: false, reason: 'ERR_UPSTREAM_LOGIN_FAILED: WRONGPASS', code: 'ERR_UPSTREAM_LOGIN_FAILED' })
  t.same(await client.readyz('other'), { ready: false, reason: 'ERR_GRANT_DENIED: access denied', code: 'ERR_GRANT_DENIED' })
  t.same(await client.readyz(), { ready: true }, '/readyz itself is unchanged')
})
