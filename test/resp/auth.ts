import t from 'tap'
import * as net from 'node:net'
import { authenticateRedis, encodeCommand, probeRedis, ReplyReader, type RedisLoginOptions } from '../../src/resp/index.js'
import type { ResourceCredential } from '../../src/policy/index.js'
import { createDevPki } from '../../src/pki/index.js'
import { startRedis } from '../helpers/redis.js'

const DEFAULT_PASSWORD = 'default pass with spaces\r\nand a newline'
const APP_PASSWORD = 'app-secret-9c1'

function credential(username: string | undefined): ResourceCredential {
  return { username, secret: { env: 'UNUSED' }, database: undefined, upstreamTls: 'disable', upstreamCa: undefined }
}

function options(username: string | undefined, password: string): RedisLoginOptions {
  return { credential: credential(username), host: '127.0.0.1', password: async () => ({ password, ca: undefined }) }
}

async function dial(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve)
    s.once('error', reject)
  })
  return s
}

/** Sends `args` on `s` and reads one reply line. */
async function command(s: net.Socket, ...args: string[]): Promise<string> {
  const reader = new ReplyReader(s)
  s.write(encodeCommand(args))
  try {
    return await reader.line()
  } finally {
    reader.detach()
  }
}

t.test('AUTH against a real redis-server: ACL user, default user, wrong secret, probe', async (t) => {
  const redis = await startRedis(t, { requirePass: DEFAULT_PASSWORD, users: [{ name: 'app', password: APP_PASSWORD }] })
  t.teardown(() => redis.stop())

  await t.test('an ACL user logs in (AUTH user password) and the connection runs as that user', async (t) => {
    const s = await dial(redis.port)
    t.teardown(() => s.destroy())
    const session = await authenticateRedis(s, options('app', APP_PASSWORD))
    t.equal(session.upstream, s, 'no TLS: the same socket')
    t.equal(session.toClient.length, 0, 'the +OK was swallowed')
    t.equal(await command(s, 'ACL', 'WHOAMI'), '$3', 'bulk reply of 3 bytes: "app"')
  })

  await t.test('without a username the default user logs in with the password alone (binary-safe)', async (t) => {
    const s = await dial(redis.port)
    t.teardown(() => s.destroy())
    await authenticateRedis(s, options(undefined, DEFAULT_PASSWORD))
    t.equal(await command(s, 'PING'), '+PONG')
  })

  await t.test('a wrong secret is ERR_UPSTREAM_LOGIN_FAILED with the server reply', async (t) => {
    const s = await dial(redis.port)
    t.teardown(() => s.destroy())
    await t.rejects(authenticateRedis(s, options('app', 'wrong')), {
      code: 'ERR_UPSTREAM_LOGIN_FAILED',
      message: /refused the login as "app": WRONGPASS/,
      detail: { server_message: /^WRONGPASS/ },
    })
  })

  await t.test('an unreadable secret is the resolver error, and nothing is sent', async (t) => {
    const s = await dial(redis.port)
    t.teardown(() => s.destroy())
    const failing: RedisLoginOptions = {
      ...options('app', ''),
      password: async () => {
        throw Object.assign(new Error('no secret'), { code: 'ERR_CREDENTIAL_UNAVAILABLE' })
      },
    }
    await t.rejects(authenticateRedis(s, failing), { message: 'no secret' })
  })

  await t.test('the probe logs in and PINGs; a wrong secret fails it', async (t) => {
    const ok = await dial(redis.port)
    t.teardown(() => ok.destroy())
    await probeRedis(ok, options('app', APP_PASSWORD))
    const bad = await dial(redis.port)
    t.teardown(() => bad.destroy())
    await t.rejects(probeRedis(bad, options(undefined, 'wrong')), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /default user: WRONGPASS/ })
  })

  await t.test('a server that is not Redis fails the login, and one that closes too', async (t) => {
    const server = net.createServer((c) => {
      c.on('error', () => {})
      c.once('data', () => c.end('HTTP/1.1 400 Bad Request\r\n\r\n'))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => server.close())
    const s = await dial((server.address() as net.AddressInfo).port)
    t.teardown(() => s.destroy())
    await t.rejects(authenticateRedis(s, options('app', 'x')), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /answered AUTH with "HTTP\/1.1 400 Bad Request": not Redis/ })
    const closer = net.createServer((c) => c.destroy())
    await new Promise<void>((resolve) => closer.listen(0, '127.0.0.1', resolve))
    t.teardown(() => closer.close())
    const s2 = await dial((closer.address() as net.AddressInfo).port)
    t.teardown(() => s2.destroy())
    await t.rejects(authenticateRedis(s2, options('app', 'x')), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /closed the connection during the login/ })
  })
})

t.test('TLS upstream: verify-full against the test CA logs in; a wrong CA fails before any secret is sent; require encrypts without checking', async (t) => {
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const other = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const redis = await startRedis(t, { users: [{ name: 'app', password: APP_PASSWORD }], tls: { certPem: pki.certPem, keyPem: pki.keyPem } })
  t.teardown(() => redis.stop())
  const tlsOptions = (mode: 'require' | 'verify-full', ca: string | undefined): RedisLoginOptions => ({
    credential: { ...credential('app'), upstreamTls: mode },
    host: '127.0.0.1',
    password: async () => ({ password: APP_PASSWORD, ca }),
  })
  const s = await dial(redis.port)
  t.teardown(() => s.destroy())
  const session = await authenticateRedis(s, tlsOptions('verify-full', pki.caCertPem))
  t.not(session.upstream, s, 'the upstream is the TLS socket over it')
  t.teardown(() => session.upstream.destroy())
  t.equal(await command(session.upstream as net.Socket, 'PING'), '+PONG')
  const bad = await dial(redis.port)
  t.teardown(() => bad.destroy())
  await t.rejects(authenticateRedis(bad, tlsOptions('verify-full', other.caCertPem)), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /TLS to the upstream failed/ })
  const req = await dial(redis.port)
  t.teardown(() => req.destroy())
  const loose = await authenticateRedis(req, tlsOptions('require', undefined))
  t.teardown(() => loose.upstream.destroy())
  t.equal(await command(loose.upstream as net.Socket, 'PING'), '+PONG')
  await probeRedis(await dial(redis.port), tlsOptions('verify-full', pki.caCertPem))
})
