import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { formatListenAddress, listenOn, type ListenErrors } from '../../src/net/index.js'

const LOOPBACK = '127.0.0.1'
const ERRORS: ListenErrors = {
  inUse: (where) => `cannot listen on ${where}: in use`,
  failed: (where, err) => `cannot listen on ${where}: ${err.message}`,
}

function server(t: Test): net.Server {
  const s = net.createServer()
  t.teardown(() => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())))
  return s
}

t.test('listens on a TCP address and leaves no error listener behind', async (t) => {
  const s = server(t)
  await listenOn(s, { host: LOOPBACK, port: 0 }, ERRORS)
  t.ok(s.listening)
  t.equal(s.listenerCount('error'), 0, 'a later error is the caller\'s')
})

t.test('a taken TCP port is ERR_PORT_IN_USE with the system error as cause', async (t) => {
  const holder = server(t)
  await listenOn(holder, { host: LOOPBACK, port: 0 }, ERRORS)
  const port = (holder.address() as net.AddressInfo).port
  const err = (await listenOn(server(t), { host: LOOPBACK, port }, { ...ERRORS, detail: { resource: 'pg' } }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_PORT_IN_USE'))
  t.equal(err.message, `cannot listen on 127.0.0.1:${port}: in use`)
  t.equal((err.cause as NodeJS.ErrnoException).code, 'EADDRINUSE')
  t.same(err.detail, { resource: 'pg' })
})

t.test('Unix-socket paths: listens, and a path in use is ERR_PORT_IN_USE', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-listen-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'control.sock')
  await listenOn(server(t), { path }, ERRORS)
  const err = (await listenOn(server(t), { path }, ERRORS).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_PORT_IN_USE'))
  t.equal(err.message, `cannot listen on ${path}: in use`)
})

t.test('any other listen error has the caller\'s code (ERR_CONFIG_INVALID by default) and the system code in detail', async (t) => {
  const path = join(tmpdir(), 'keyway-no-such-folder-' + process.pid, 'x.sock')
  const err = (await listenOn(server(t), { path }, ERRORS).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_CONFIG_INVALID'))
  t.match(err.message, `cannot listen on ${path}: `)
  const internal = (await listenOn(server(t), { path }, { ...ERRORS, failedCode: 'ERR_INTERNAL', detail: { port: 1 } }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(internal, 'ERR_INTERNAL'))
  t.match(internal.detail, { port: 1, code: /^E[A-Z]+$/ })
})

t.test('formatListenAddress: host:port with IPv6 in brackets, or the path', async (t) => {
  t.equal(formatListenAddress({ host: '127.0.0.1', port: 80 }), '127.0.0.1:80')
  t.equal(formatListenAddress({ host: '::1', port: 80 }), '[::1]:80')
  t.equal(formatListenAddress({ path: '/run/keyway/control.sock' }), '/run/keyway/control.sock')
})
