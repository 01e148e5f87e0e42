import t from 'tap'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import pg from 'pg'
import { createDevPki } from '../../src/pki/index.js'
import { injectLogin, SaltedPasswordCache } from '../../src/pgwire/index.js'
import type { ResourceCredential } from '../../src/policy/index.js'
import type { Teardown } from '../helpers/net.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'

const PASSWORD = 'only-the-gateway-knows'

const credential = (extra: Partial<ResourceCredential> = {}): ResourceCredential => ({
  username: 'app',
  secret: { env: 'UNUSED' },
  database: undefined,
  upstreamTls: 'disable',
  upstreamCa: undefined,
  ...extra,
})

/**
 * A minimal gateway without tunnel: each local connection is logged in to
 * `server` with injectLogin, then piped. Failures are reported to `failures`.
 */
async function injector(t: Teardown, server: Postgres, cred: ResourceCredential, options: { host?: string; ca?: string; cache?: SaltedPasswordCache } = {}) {
  const failures: { code: string; message: string; detail: unknown }[] = []
  const cache = options.cache ?? new SaltedPasswordCache()
  const sockets = new Set<Socket>()
  const listener = createServer((client) => {
    sockets.add(client)
    client.on('error', () => {})
    const upstream = connect(server.port, '127.0.0.1')
    sockets.add(upstream)
    upstream.on('error', () => {})
    upstream.once('connect', () => {
      injectLogin(client, undefined, upstream, { resource: 'warehouse', credential: cred, host: options.host ?? '127.0.0.1', cache, password: async () => ({ password: PASSWORD, ca: options.ca }) })
        .then((r) => {
          if (r.kind === 'cancel') return client.end()
          sockets.add(r.upstream)
          client.write(r.toClient)
          if (r.toUpstream.length > 0) r.upstream.write(r.toUpstream)
          client.pipe(r.upstream).pipe(client)
          client.resume()
          r.upstream.resume()
        })
        .catch((err: { code: string; message: string; detail: unknown }) => {
          failures.push({ code: err.code, message: err.message, detail: err.detail })
          client.destroy()
          upstream.destroy()
        })
    })
  })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => listener.close(resolve))
  })
  return { port: (listener.address() as AddressInfo).port, failures, cache }
}

async function query(t: Teardown, port: number, sql: string, config: pg.ClientConfig = {}): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'someone', database: 'postgres', connectionTimeoutMillis: 10_000, ...config })
  c.on('error', () => {})
  t.teardown(() => c.end().catch(() => undefined))
  await c.connect()
  return (await c.query(sql)).rows as Record<string, unknown>[]
}

async function withUser(t: Teardown, server: Postgres): Promise<void> {
  const admin = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE ROLE app LOGIN PASSWORD '${PASSWORD}'`)
  await admin.end()
}

t.test('TLS upstream (hostssl only): verify-full against the CA, require, and the failures', async (t) => {
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const other = await createDevPki({ hosts: ['localhost'] })
  const server = await startPostgres(t, { auth: 'scram', tls: { certPem: pki.certPem, keyPem: pki.keyPem } })
  t.teardown(() => server.stop())
  await withUser(t, server)

  const full = await injector(t, server, credential({ upstreamTls: 'verify-full', upstreamCa: '/ca.pem' }), { host: 'localhost', ca: pki.caCertPem })
  t.same(await query(t, full.port, 'SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), [{ u: 'app', ssl: true }], 'verify-full: logged in over TLS')

  const required = await injector(t, server, credential({ upstreamTls: 'require' }), { ca: other.caCertPem })
  t.same(await query(t, required.port, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), [{ ssl: true }], 'require: encrypted, the server not checked')

  const wrongCa = await injector(t, server, credential({ upstreamTls: 'verify-full' }), { host: 'localhost', ca: other.caCertPem })
  await t.rejects(query(t, wrongCa.port, 'SELECT 1'))
  t.match(wrongCa.failures, [{ code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /TLS to the upstream failed/ }], 'verify-full refuses a server its CA did not sign')

  const wrongName = await injector(t, server, credential({ upstreamTls: 'verify-full' }), { host: 'db.example', ca: pki.caCertPem })
  await t.rejects(query(t, wrongName.port, 'SELECT 1'))
  t.match(wrongName.failures, [{ code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /TLS to the upstream failed.*db\.example/ }], 'verify-full checks the host name')

  const plain = await injector(t, server, credential())
  await t.rejects(query(t, plain.port, 'SELECT 1'))
  t.match(plain.failures, [{ code: 'ERR_UPSTREAM_LOGIN_FAILED', detail: { sqlstate: '28000', server_message: /no pg_hba.conf entry/ } }], 'without TLS the server refuses, and says why')
})

t.test('SCRAM: the salted password is computed once for many connections; md5 servers work too', async (t) => {
  const server = await startPostgres(t, { auth: 'scram' })
  t.teardown(() => server.stop())
  await withUser(t, server)
  const inj = await injector(t, server, credential())
  for (let i = 0; i < 3; i++) t.same(await query(t, inj.port, 'SELECT current_user AS u'), [{ u: 'app' }])
  t.equal(inj.cache.size, 1, 'one PBKDF2 for three logins')

  const md5 = await startPostgres(t, { auth: 'md5' })
  t.teardown(() => md5.stop())
  await withUser(t, md5)
  const viaMd5 = await injector(t, md5, credential({ database: 'template1' }))
  t.same(await query(t, viaMd5.port, 'SELECT current_user AS u, current_database() AS d'), [{ u: 'app', d: 'template1' }], 'md5, and the pinned database wins over the client\'s')
  t.equal(viaMd5.cache.size, 0, 'no SCRAM, nothing salted')
})

t.test('a client that insists on TLS to the local port is told the server does not support it', async (t) => {
  const server = await startPostgres(t, { auth: 'scram' })
  t.teardown(() => server.stop())
  await withUser(t, server)
  const inj = await injector(t, server, credential())
  await t.rejects(query(t, inj.port, 'SELECT 1', { ssl: { rejectUnauthorized: true } }), { message: /does not support SSL/ })
  t.same(await query(t, inj.port, 'SELECT 1 AS ok'), [{ ok: 1 }], 'the same client without sslmode=require works')
})
