import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import pg from 'pg'
import { REFUSAL_GRACE_MS } from '../../src/gateway/upstream-login.js'
import { encodeCommand } from '../../src/resp/index.js'
import { listen } from '../helpers/net.js'
import { startPostgres } from '../helpers/postgres.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/until.js'
import { createWorld, ManualClock, openTunnel } from '../helpers/world.js'

const PASSWORD = 'gateway-only-secret'

function startup(params: Record<string, string>): Buffer {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0')
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(196608, 4)
  return Buffer.concat([head, body])
}

function sslRequest(): Buffer {
  const b = Buffer.alloc(8)
  b.writeInt32BE(8, 0)
  b.writeInt32BE(80877103, 4)
  return b
}

function query(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`)
  const b = Buffer.alloc(5)
  b.write('Q', 0, 'latin1')
  b.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([b, body])
}

/** The next chunk the socket reads (readReply left it paused). */
function nextChunk(socket: TLSSocket): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const onClose = (): void => reject(new Error('closed'))
    socket.once('data', (chunk: Buffer) => {
      socket.pause()
      socket.off('close', onClose)
      resolve(chunk)
    })
    socket.once('close', onClose)
    socket.resume()
  })
}

/** Reads typed backend messages from `socket` (after `rest`) until `until` is seen. */
async function messagesUntil(socket: TLSSocket, rest: Buffer, until: string): Promise<{ type: string; body: Buffer }[]> {
  let buf = rest
  const out: { type: string; body: Buffer }[] = []
  for (;;) {
    while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
      const len = buf.readInt32BE(1)
      const msg = { type: String.fromCharCode(buf[0]!), body: buf.subarray(5, 1 + len) }
      out.push(msg)
      buf = buf.subarray(1 + len)
      if (msg.type === until || msg.type === 'E') return out
    }
    buf = Buffer.concat([buf, await nextChunk(socket)])
  }
}

t.test('keyway/1: startup bytes sent with the hello reach the injected login; the client gets AuthenticationOk without a password', async (t) => {
  const server = await startPostgres(t, { auth: 'scram' })
  t.teardown(() => server.stop())
  const admin = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE ROLE app LOGIN PASSWORD '${PASSWORD}'`)
  await admin.end()

  const world = await createWorld(t, {
    policy: {
      resources: [{ name: 'warehouse', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${server.port}`, username: 'app', passwordFile: '/placeholder' }],
      accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', grants: [{ resource: 'warehouse' }] }],
    },
  })
  const secret = join(world.dir, 'warehouse-password')
  writeFileSync(secret, PASSWORD, { mode: 0o600 })
  world.editPolicy((doc) => {
    doc.resources![0]!.passwordFile = secret
  })
  const token = await world.serviceToken('svc_etl')
  const gw = await world.startGateway()

  // SSLRequest and StartupMessage pipelined behind the hello: they arrive as the tunnel's initial bytes.
  const tunnel = await openTunnel(t, gw.gateway.address()!.port, world.caPem, token, 'warehouse', Buffer.concat([sslRequest(), startup({ user: 'whoever', database: 'postgres', application_name: 'v1-test' })]))
  t.match(tunnel.reply, { ok: true })
  let rest = tunnel.rest
  while (rest.length < 1) rest = Buffer.concat([rest, await nextChunk(tunnel.socket)])
  t.equal(rest.subarray(0, 1).toString('latin1'), 'N', 'SSLRequest answered N')
  const login = await messagesUntil(tunnel.socket, rest.subarray(1), 'Z')
  t.equal(login[0]?.type, 'R')
  t.equal(login[0]?.body.readInt32BE(0), 0, 'AuthenticationOk first: no password asked of the client')
  t.ok(login.some((m) => m.type === 'K'), 'BackendKeyData relayed')
  t.ok(login.some((m) => m.type === 'S' && m.body.toString().startsWith('application_name\0v1-test')), "the client's parameters were kept")
  tunnel.socket.write(query('SELECT current_user'))
  const answer = await messagesUntil(tunnel.socket, Buffer.alloc(0), 'Z')
  const row = answer.find((m) => m.type === 'D')!
  t.equal(row.body.toString('utf8', 6), 'app', 'logged in upstream as the resource user')
  t.match(world.logs.lines.find((l) => l.event === 'session_start'), { resource: 'warehouse', upstream_user: 'app' })
  tunnel.socket.end()
})

t.test('redis: the AUTH goes before the bytes sent with the hello; the client reads the server, never the +OK', async (t) => {
  const redis = await startRedis(t, { requirePass: 'not-for-clients', users: [{ name: 'app', password: PASSWORD }] })
  t.teardown(() => redis.stop())
  const world = await createWorld(t, {
    policy: {
      resources: [{ name: 'cache', kind: 'datasource', type: 'redis', address: `127.0.0.1:${redis.port}`, username: 'app', passwordEnv: 'KEYWAY_TEST_UNUSED' }],
      accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', grants: [{ resource: 'cache' }] }],
    },
  })
  const secret = join(world.dir, 'cache-password')
  writeFileSync(secret, `${PASSWORD}\n`, { mode: 0o600 })
  world.editPolicy((doc) => {
    delete doc.resources![0]!.passwordEnv
    doc.resources![0]!.passwordFile = secret
  })
  const token = await world.serviceToken('svc_etl')
  const gw = await world.startGateway()
  const tunnel = await openTunnel(t, gw.gateway.address()!.port, world.caPem, token, 'cache', encodeCommand(['ACL', 'WHOAMI']))
  t.match(tunnel.reply, { ok: true })
  let got = tunnel.rest
  while (!got.toString().endsWith('app\r\n')) got = Buffer.concat([got, await nextChunk(tunnel.socket)])
  t.equal(got.toString(), '$3\r\napp\r\n', 'the first reply the client reads answers its own command')
  t.match(world.logs.lines.find((l) => l.event === 'session_start'), { resource: 'cache', upstream_user: 'app' })
  tunnel.socket.end()
})

t.test('redis: an upstream that never answers AUTH: the client reads ERR_UPSTREAM_LOGIN_FAILED after handshake + connect timeout (injected clock), then an orderly close', async (t) => {
  const clock = new ManualClock(Date.now())
  let accepted = 0
  const { port } = await listen(t, (s) => {
    accepted++
    s.on('error', () => {})
  })
  const world = await createWorld(t, {
    clock,
    policy: {
      resources: [{ name: 'cache', kind: 'datasource', type: 'redis', address: `127.0.0.1:${port}`, passwordEnv: 'PATH' }],
      accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', grants: [{ resource: 'cache' }] }],
    },
  })
  const token = await world.serviceToken('svc_etl')
  const gw = await world.startGateway()
  const tunnel = await openTunnel(t, gw.gateway.address()!.port, world.caPem, token, 'cache', encodeCommand(['PING']))
  t.match(tunnel.reply, { ok: true })
  await until(() => accepted === 1, 20_000, 'the gateway to dial the upstream')
  const ended = new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [tunnel.rest]
    tunnel.socket.on('data', (c: Buffer) => chunks.push(c))
    tunnel.socket.once('end', () => resolve(Buffer.concat(chunks)))
    tunnel.socket.resume()
  })
  // A command sent while the login waits stays unread at the gateway; the refusal must still arrive whole.
  tunnel.socket.write(encodeCommand(['GET', 'k']))
  clock.advance(10_000)
  t.match((await ended).toString(), /^-ERR keyway ERR_UPSTREAM_LOGIN_FAILED: the upstream did not complete the login within 10000 ms\r\n$/)
  t.match(await world.logs.waitFor((l) => l.event === 'upstream_login_failed'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', resource: 'cache', type: 'redis', upstream_user: 'default' })
  t.equal(gw.gateway.openTunnels, 1, 'the gateway waits for the client to close its side')
  // A client that never closes its side is cut after the refusal grace, on the same clock.
  clock.advance(REFUSAL_GRACE_MS)
  await until(() => gw.gateway.openTunnels === 0, 20_000, 'the refused tunnel to be closed after the grace')
  t.pass('closed after the grace')
})
