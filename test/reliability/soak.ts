/**
 * Soak: random open, write, half-close and reset actions across accounts and
 * resources, checked for leaks and for byte-exact transfers.
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { encodeHello } from '../../src/protocol/index.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld, readReply } from '../helpers/world.js'
import { fdsBackTo, gatewayWith, memory, MiB, openFds, scale, tlsOverRaw, watchEscapes } from '../helpers/reliability.js'

t.test('property 22: soak: random open, write, half-close and reset actions leak no handle, keep the heap within 10%, and every completed transfer is byte-exact', async (t) => {
  const actions = scale(3_000, 10_000)
  const ups = [await countingUpstream(t), await countingUpstream(t), await countingUpstream(t)]
  const resources = ups.map((u, i) => ({ name: `res-${i}`, kind: 'datasource' as const, type: 'postgres', address: `127.0.0.1:${u.port}` }))
  const world = await createWorld(t, {
    policy: {
      version: 1,
      resources,
      roles: [{ name: 'all', grants: resources.map((r) => r.name) }],
      accounts: [0, 1, 2, 3].map((i) => ({ id: `svc_${i}`, type: 'service' as const, name: `job-${i}`, roles: ['all'] })),
    },
  })
  const tokens = [await world.serviceToken('svc_0'), await world.serviceToken('svc_1'), await world.serviceToken('svc_2'), await world.serviceToken('svc_3')]
  // A logger that keeps nothing: the test's own log capture would look like a leak.
  let lines = 0
  const logger = pino({ level: 'info' }, new Writable({ write: (_c, _e, cb) => (lines++, cb()) }))
  const running = await gatewayWith(t, world, { logger })
  const port = running.gateway.address()!.port
  const escapes = watchEscapes(t)

  interface Conn { tls: import('node:tls').TLSSocket; raw: import('node:net').Socket; sent: ReturnType<typeof createHash>; got: ReturnType<typeof createHash>; ended: boolean; closed: boolean; done: Promise<'exact' | 'mismatch' | 'cut'> }
  const live: Conn[] = []
  const stats = { open: 0, write: 0, halfClose: 0, reset: 0, exact: 0, mismatch: 0, cut: 0, bytes: 0 }
  const rand = (n: number) => Math.floor(Math.random() * n)
  const open = async () => {
    const { raw, tls } = await tlsOverRaw({ teardown: () => undefined }, port, world.caPem)
    const replied = readReply(tls)
    tls.write(encodeHello({ token: tokens[rand(tokens.length)]!, resource: resources[rand(resources.length)]!.name }))
    const { reply, rest } = await replied
    if (!reply.ok) throw new Error(reply.code)
    const c = { tls, raw, sent: createHash('sha256'), got: createHash('sha256').update(rest), ended: false, closed: false } as Conn
    c.done = new Promise((resolve) => {
      tls.on('data', (chunk: Buffer) => c.got.update(chunk))
      tls.once('end', () => {
        c.closed = true
        tls.destroy()
        resolve(c.ended ? (c.got.digest('hex') === c.sent.digest('hex') ? 'exact' : 'mismatch') : 'cut')
      })
      tls.once('close', () => ((c.closed = true), resolve('cut')))
    })
    tls.resume()
    live.push(c)
  }
  const step = async () => {
    const pick = live.filter((c) => !c.ended && !c.closed)
    const r = rand(10)
    if (pick.length === 0 || (r < 3 && live.length < 64)) {
      stats.open++
      return open()
    }
    const c = pick[rand(pick.length)]!
    if (r < 7) {
      stats.write++
      const data = randomBytes(1 + rand(64 * 1024))
      stats.bytes += data.length
      c.sent.update(data)
      c.tls.write(data)
    } else if (r < 9) {
      stats.halfClose++
      c.ended = true
      c.tls.end()
    } else {
      stats.reset++
      c.ended = true
      c.closed = true
      c.raw.resetAndDestroy()
    }
  }
  const settle = async () => {
    for (const c of live) if (!c.ended) ((c.ended = true), c.tls.end())
    const results = await Promise.all(live.map((c) => c.done))
    for (const r of results) stats[r]++
    live.length = 0
    await until(() => running.gateway.sessions.size === 0 && running.gateway.openTunnels === 0 && ups.every((u) => u.open.size === 0), 10_000, 'every session to end')
  }
  // Warm up (JIT, TLS session state, verifier cache), then take the baselines.
  for (let i = 0; i < 200; i++) await step()
  await settle()
  const fds = openFds()
  const heap0 = memory().heapUsed
  const counted = { ...stats }
  for (let i = 0; i < actions; i++) {
    await step()
    if (i % 500 === 499) await settle()
  }
  await settle()
  const heap1 = memory().heapUsed
  const fdsAfter = await fdsBackTo(fds)
  const did = Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v - counted[k as keyof typeof stats]]))
  t.comment(`${actions} actions: ${JSON.stringify(did)}; ${(did.bytes! / MiB).toFixed(1)} MiB; heap ${(heap0 / MiB).toFixed(1)} → ${(heap1 / MiB).toFixed(1)} MiB; descriptors ${fds} → ${fdsAfter}; ${lines} log lines`)
  t.equal(did.mismatch, 0, 'every completed transfer byte-exact (SHA-256 both ways through an echo)')
  t.ok(did.exact! > 0, `${did.exact} transfers completed and checked`)
  t.ok(fdsAfter <= fds, `no leaked descriptor (${fdsAfter} <= ${fds})`)
  t.ok(heap1 <= heap0 * 1.1, `heap within 10%: ${(heap0 / MiB).toFixed(1)} → ${(heap1 / MiB).toFixed(1)} MiB`)
  t.match(await running.registry.metrics(), /keyway_gateway_sessions_active 0/)
  t.same(escapes.errors, [], 'no exception escaped')
})
