import { getEventListeners } from 'node:events'
import t from 'tap'
import { isKeywayError } from '../../src/errors.js'
import { dialTcp, forward, type DialFunc } from '../../src/forward/index.js'
import { noDelayFlag } from '../../src/read-buffer/index.js'
import { LOOPBACK, fullBacklogServer, listenEcho, readAll, socketPair } from '../helpers/net.js'
import { refusedPort } from '../helpers/ports.js'

t.test('dials a listening upstream: half-open allowed, Nagle off, no listeners left but the guard', async (t) => {
  const { port } = await listenEcho(t)
  const controller = new AbortController()
  const socket = await dialTcp(LOOPBACK, port, { timeoutMs: 1_000, signal: controller.signal })
  t.teardown(() => socket.destroy())
  t.equal(socket.remotePort, port)
  t.equal(socket.remoteAddress, LOOPBACK)
  t.equal(socket.allowHalfOpen, true)
  t.notOk(socket.timeout, 'connect timeout cleared')
  t.equal(noDelayFlag(socket), true, 'TCP_NODELAY set (Node internal flag)')
  t.equal(socket.listenerCount('connect'), 0)
  t.equal(socket.listenerCount('timeout'), 0)
  t.equal(socket.listenerCount('error'), 1, 'one guard against errors before the caller attaches')
  t.equal(getEventListeners(controller.signal, 'abort').length, 0, 'abort listener removed')
  socket.end('ping')
  t.equal((await readAll(socket)).toString(), 'ping', 'half-close round trip through the echo server')
})

t.test('refused → ERR_UPSTREAM_UNREACHABLE with the system error as cause', async (t) => {
  const port = await refusedPort()
  const controller = new AbortController()
  const err = await dialTcp(LOOPBACK, port, { timeoutMs: 1_000, signal: controller.signal }).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(isKeywayError(err, 'ERR_UPSTREAM_UNREACHABLE'), String(err))
  if (!isKeywayError(err)) return
  t.equal((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED')
  t.same(err.detail, { host: LOOPBACK, port, code: 'ECONNREFUSED' })
  t.match(err.message, `${LOOPBACK}:${port}`)
  t.equal(getEventListeners(controller.signal, 'abort').length, 0)
})

t.test('an upstream that never accepts → ERR_UPSTREAM_TIMEOUT after timeoutMs', async (t) => {
  const { port } = await fullBacklogServer(t)
  const started = Date.now()
  const err = await dialTcp(LOOPBACK, port, { timeoutMs: 200 }).then(
    () => undefined,
    (e: unknown) => e,
  )
  const elapsed = Date.now() - started
  t.ok(isKeywayError(err, 'ERR_UPSTREAM_TIMEOUT'), String(err))
  t.ok(elapsed >= 190 && elapsed < 10_000, `gave up after ${elapsed} ms (timeout 200 ms; bound 10 s)`)
})

t.test('abort while connecting rejects with the signal reason', async (t) => {
  const { port } = await fullBacklogServer(t)
  const controller = new AbortController()
  const pending = dialTcp(LOOPBACK, port, { timeoutMs: 10_000, signal: controller.signal })
  const reason = new Error('shutting down')
  // The SYN is out and, with the accept queue full, unanswered.
  controller.abort(reason)
  await t.rejects(pending, reason)
  t.equal(getEventListeners(controller.signal, 'abort').length, 0)
})

t.test('an already aborted signal rejects without dialling', async (t) => {
  const controller = new AbortController()
  controller.abort()
  await t.rejects(dialTcp(LOOPBACK, 1, { timeoutMs: 1_000, signal: controller.signal }), { name: 'AbortError' })
})

t.test('dialTcp is a DialFunc and its socket feeds forward()', async (t) => {
  const dial: DialFunc = dialTcp
  const { port } = await listenEcho(t)
  const [client, a] = await socketPair(t)
  const b = await dial(LOOPBACK, port, { timeoutMs: 1_000 })
  t.teardown(() => b.destroy())
  const session = forward(a, b)
  client.end('through the gateway')
  t.equal((await readAll(client)).toString(), 'through the gateway')
  const result = await session.done
  t.equal(result.reason, 'done')
  t.equal(result.aToB, 19)
  t.equal(result.bToA, 19)
})
