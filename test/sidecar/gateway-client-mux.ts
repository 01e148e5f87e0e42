/**
 * GatewayClient in multiplexed mode (ALPN keyway/2) against a real in-process
 * Gateway: one TLS connection per gateway shared by concurrent tunnels,
 * refusals, the keyway/1 fallback, draining (GOAWAY), connection loss and the
 * tunnel-reply timeout.
 */
import t, { type Test } from 'tap'
import { once } from 'node:events'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { setImmediate as tick } from 'node:timers/promises'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { forward, type ForwardResult } from '../../src/forward/index.js'
import { FRAME_HEADER, FrameType, MuxStream } from '../../src/mux/index.js'
import type { RunningGateway } from '../../src/daemon.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { GatewayClient, type ConnectTls, type GatewayClientOptions, type Tunnel } from '../../src/sidecar/index.js'
import { startFakeGateway } from '../helpers/fake-gateway.js'
import { LOOPBACK, listen, readAll, socketPair } from '../helpers/net.js'
import { roundTrip } from '../helpers/mux.js'
import { countingUpstream, type CountingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld, type World } from '../helpers/world.js'
import { TOKEN, sinkLogger, testPki, type LogSink } from '../fixtures/sidecar/harness.js'

function policyFor(upstreamPort: number): PolicyDoc {
  return {
    version: 1,
    settings: { portOverrides: true, autoConnect: true },
    resources: [
      { name: 'db', kind: 'datasource', type: 'postgres', address: `${LOOPBACK}:${upstreamPort}`, portOverride: 15432 },
      { name: 'cache', kind: 'datasource', type: 'redis', address: `${LOOPBACK}:${upstreamPort}`, portOverride: 16379 },
    ],
    roles: [{ name: 'etl', grants: ['db'] }],
    accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] }],
  }
}

/** A connectTls that counts dials and remembers the ALPN list each one offered. */
function recordingDial(): { connectTls: ConnectTls; offers: string[][] } {
  const offers: string[][] = []
  return {
    offers,
    connectTls: (options) => {
      offers.push([...((options.ALPNProtocols ?? []) as string[])])
      return tls.connect(options)
    },
  }
}

interface Setup {
  upstream: CountingUpstream
  world: World
  token: string
  running: RunningGateway
  port: number
}

/** An echo upstream, a world whose policy grants `db` (not `cache`) to svc_etl, and a running gateway. */
async function gatewayWorld(t: Test, gateway: Record<string, unknown> = {}): Promise<Setup> {
  const upstream = await countingUpstream(t, 'echo')
  const world = await createWorld(t, { policy: policyFor(upstream.port), gateway })
  const token = await world.serviceToken('svc_etl')
  const running = await world.startGateway()
  return { upstream, world, token, running, port: running.gateway.address()!.port }
}

/** A client with a manual clock (no timeout fires unless a test advances it) and a log sink. */
function makeClient(
  t: Test,
  world: World,
  ports: number[],
  extra: Partial<GatewayClientOptions> = {},
): { client: GatewayClient; dial: ReturnType<typeof recordingDial>; sink: LogSink; clock: ManualClock } {
  const dial = recordingDial()
  const { logger, sink } = sinkLogger()
  const clock = new ManualClock()
  const client = new GatewayClient({
    gateways: ports.map((port) => ({ host: LOOPBACK, port })),
    ca: world.caPem,
    servername: 'localhost',
    clock,
    logger,
    connectTls: dial.connectTls,
    random: () => 1,
    ...extra,
  })
  t.teardown(() => client.close())
  return { client, dial, sink, clock }
}

/** Destroys the tunnel's socket on teardown. */
function own(t: Test, tunnel: Tunnel): Tunnel {
  t.teardown(() => {
    tunnel.socket.destroy()
  })
  return tunnel
}

/** Writes `data` on the tunnel, half-closes, and resolves with everything read until its end. */
function echoDirect(socket: Duplex, data: Buffer): Promise<Buffer> {
  const all = readAll(socket)
  // A tunnel is handed over paused: a 'data' listener alone would not start it.
  socket.resume()
  socket.end(data)
  return all
}

/** Hands the tunnel to forward() against a loopback TCP pair, sends `data` from the far end, resolves with the echo and the session result. */
async function echoThroughForward(t: Test, tunnel: Tunnel, data: Buffer): Promise<{ echoed: Buffer; result: ForwardResult }> {
  const [local, localPeer] = await socketPair(t)
  t.equal(tunnel.rest.length, 0, 'a multiplexed tunnel has no bytes after the reply')
  const session = forward(tunnel.socket, localPeer, { halfCloseTimeoutMs: 0 })
  const echoed = await echoDirect(local, data)
  return { echoed, result: await session.done }
}

/** A TCP relay in front of a gateway whose connections a test can cut abruptly. */
async function relay(t: Test, targetPort: number): Promise<{ port: number; accepted: () => number; cut: () => void }> {
  const pairs = new Set<[net.Socket, net.Socket]>()
  let accepted = 0
  const { port } = await listen(t, (front) => {
    accepted++
    const back = net.connect({ host: LOOPBACK, port: targetPort, allowHalfOpen: true })
    const pair: [net.Socket, net.Socket] = [front, back]
    pairs.add(pair)
    front.on('error', () => {})
    back.on('error', () => {})
    front.once('close', () => back.destroy())
    back.once('close', () => {
      front.destroy()
      pairs.delete(pair)
    })
    front.pipe(back)
    back.pipe(front)
  })
  t.teardown(() => {
    for (const [front, back] of pairs) {
      front.destroy()
      back.destroy()
    }
  })
  return {
    port,
    accepted: () => accepted,
    cut: () => {
      // RST towards the client, a plain close towards the gateway.
      for (const [front, back] of pairs) {
        front.resetAndDestroy()
        back.destroy()
      }
    },
  }
}

t.test('default options: 20 concurrent tunnels share one TLS connection and each carries its bytes exactly', async (t) => {
  const { world, token, running, port, upstream } = await gatewayWorld(t)
  const { client, dial } = makeClient(t, world, [port])
  const tunnels = (await Promise.all(Array.from({ length: 20 }, () => client.openTunnel('db', token)))).map((x) => own(t, x))

  t.equal(client.multiplexedConnections, 1, 'one multiplexed connection on the client')
  t.equal(running.gateway.multiplexedConnections, 1, 'one multiplexed connection on the gateway')
  t.equal(dial.offers.length, 1, 'one TLS dial for 20 tunnels')
  t.same(dial.offers[0], ['keyway/2', 'keyway/1'], 'the dial offers keyway/2, then keyway/1')
  await until(() => upstream.accepted === 20, 20_000, 'the upstream to accept 20 connections')
  t.equal(running.gateway.openTunnels, 20)

  const sessions = new Set<string>()
  for (const tunnel of tunnels) {
    t.ok(tunnel.socket instanceof MuxStream, 'the socket is a MuxStream')
    t.notOk(tunnel.socket instanceof tls.TLSSocket, 'not a TLS socket')
    t.ok(tunnel.session.length > 0, 'a session id')
    t.equal(tunnel.gateway, `${LOOPBACK}:${port}`)
    t.equal(tunnel.rest.length, 0)
    sessions.add(tunnel.session)
  }
  t.equal(sessions.size, 20, 'every tunnel has its own session')

  // Half go through forward() as the sidecar uses them, half are used directly;
  // the first carries several flow-control windows' worth.
  const payloads = tunnels.map((_, i) => randomBytes(i === 0 ? 3 * 1024 * 1024 + 17 : 1 + i * 37_001))
  const results = await Promise.all(
    tunnels.map(async (tunnel, i) => {
      const data = payloads[i]!
      if (i % 2 === 0) {
        const { echoed, result } = await echoThroughForward(t, tunnel, data)
        return { echoed, data, result }
      }
      return { echoed: await echoDirect(tunnel.socket, data), data, result: undefined }
    }),
  )
  results.forEach(({ echoed, data, result }, i) => {
    t.equal(echoed.length, data.length, `tunnel ${i}: length`)
    t.ok(echoed.equals(data), `tunnel ${i}: byte-exact`)
    if (result !== undefined) t.match(result, { reason: 'done', aToB: data.length, bToA: data.length }, `tunnel ${i}: forward() finished cleanly`)
  })
  await until(() => running.gateway.sessions.size === 0, 20_000, 'every gateway session to end')
  t.equal(client.multiplexedConnections, 1, 'the connection outlives its streams')
  t.equal(running.gateway.multiplexedConnections, 1)

  // A later tunnel reuses it.
  const later = own(t, await client.openTunnel('db', token))
  t.ok((await echoDirect(later.socket, Buffer.from('again'))).equals(Buffer.from('again')))
  t.equal(dial.offers.length, 1, 'still one TLS dial')
  t.equal(client.state().up, true)
})

t.test('a refusal rejects with the gateway code (refused), the client stays up and the connection is reused', async (t) => {
  const { world, token, running, port, upstream } = await gatewayWorld(t)
  const { client, dial } = makeClient(t, world, [port])

  const denied = (await client.openTunnel('cache', token).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(denied, 'ERR_GRANT_DENIED'), `ERR_GRANT_DENIED (got ${String((denied as { code?: unknown }).code)})`)
  t.equal(denied.detail?.refused, true, 'detail.refused')
  t.equal(denied.detail?.gateway, `${LOOPBACK}:${port}`)
  t.equal(denied.detail?.resource, 'cache')
  t.match(client.state(), { up: true, failures: 0 })
  t.equal(client.multiplexedConnections, 1, 'the connection survives the refusal')

  const unknown = (await client.openTunnel('nope', token).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(unknown, 'ERR_GRANT_DENIED'), 'an unknown resource is answered as one without a grant')
  t.equal(unknown.detail?.refused, true)

  const tunnel = own(t, await client.openTunnel('db', token))
  t.ok(tunnel.socket instanceof MuxStream)
  t.ok((await echoDirect(tunnel.socket, Buffer.from('after a refusal'))).equals(Buffer.from('after a refusal')))
  t.equal(dial.offers.length, 1, 'one TLS connection served the refusals and the tunnel')
  t.equal(running.gateway.multiplexedConnections, 1)
  t.equal(upstream.accepted, 1, 'refused streams never dialled the upstream')
  t.match(client.state(), { up: true, failures: 0 })
  t.equal(world.logs.events('tunnel_denied').length, 2)
})

t.test('multiplex: false uses one keyway/1 TLS connection per tunnel', async (t) => {
  const { world, token, running, port } = await gatewayWorld(t)
  const { client, dial } = makeClient(t, world, [port], { multiplex: false })
  const tunnels = (await Promise.all(Array.from({ length: 3 }, () => client.openTunnel('db', token)))).map((x) => own(t, x))
  for (const tunnel of tunnels) {
    t.ok(tunnel.socket instanceof tls.TLSSocket, 'a TLS socket')
    t.equal((tunnel.socket as tls.TLSSocket).alpnProtocol, 'keyway/1')
    t.ok(tunnel.session.length > 0)
  }
  t.equal(dial.offers.length, 3, 'one TLS connection per tunnel')
  t.ok(
    dial.offers.every((o) => o.length === 1 && o[0] === 'keyway/1'),
    'keyway/2 is never offered',
  )
  t.equal(client.multiplexedConnections, 0)
  t.equal(running.gateway.multiplexedConnections, 0)
  const data = randomBytes(200_000)
  const { echoed, result } = await echoThroughForward(t, tunnels[0]!, data)
  t.ok(echoed.equals(data), 'byte-exact through forward()')
  t.equal(result.reason, 'done')
  t.ok((await echoDirect(tunnels[1]!.socket, Buffer.from('direct'))).equals(Buffer.from('direct')))
})

t.test('fallback: a keyway/1-only gateway gets TLS connections per tunnel; gateway_no_multiplex is logged once', async (t) => {
  const pki = await testPki()
  const fake = await startFakeGateway(t, {
    pki,
    token: TOKEN,
    view: { settings: { portOverrides: true, autoConnect: true }, resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: 15432 }] },
  })
  const dial = recordingDial()
  const { logger, sink } = sinkLogger()
  const clock = new ManualClock()
  const client = new GatewayClient({
    gateways: [{ host: LOOPBACK, port: fake.port }],
    ca: pki.caCertPem,
    servername: 'localhost',
    clock,
    logger,
    connectTls: dial.connectTls,
  })
  t.teardown(() => client.close())

  // Concurrent callers while the first dial is still deciding, then one more after.
  const first = (await Promise.all(Array.from({ length: 3 }, () => client.openTunnel('pg', TOKEN)))).map((x) => own(t, x))
  const later = own(t, await client.openTunnel('pg', TOKEN))
  for (const tunnel of [...first, later]) {
    t.ok(tunnel.socket instanceof tls.TLSSocket, 'a TLS socket')
    t.notOk(tunnel.socket instanceof MuxStream)
    t.equal((tunnel.socket as tls.TLSSocket).alpnProtocol, 'keyway/1')
    t.match(tunnel.session, /^ses_/)
  }
  t.equal(fake.counts.tunnels, 4)
  t.equal(dial.offers.length, 4, 'one TLS connection per tunnel')
  t.same(dial.offers[0], ['keyway/2', 'keyway/1'], 'the first dial offered keyway/2')
  t.same(dial.offers[3], ['keyway/1'], 'once the gateway is known to be keyway/1-only, keyway/2 is not offered again')
  t.equal(client.multiplexedConnections, 0)
  const noMux = sink.events('gateway_no_multiplex')
  t.equal(noMux.length, 1, 'gateway_no_multiplex logged once')
  t.match(noMux[0], { gateway: fake.address })

  const data = randomBytes(100_000)
  t.ok((await echoDirect(later.socket, data)).equals(data), 'byte-exact')
  const { echoed } = await echoThroughForward(t, first[0]!, data)
  t.ok(echoed.equals(data), 'byte-exact through forward()')
  t.equal(client.state().up, true)

  // A minute on, the gateway may have been upgraded: keyway/2 is offered again.
  clock.advance(60_000)
  own(t, await client.openTunnel('pg', TOKEN))
  t.same(dial.offers[4], ['keyway/2', 'keyway/1'], 'keyway/2 offered again after a minute')
})

t.test('close() while the multiplexed connection is still connecting: it is not kept', async (t) => {
  const { world, token, port, running } = await gatewayWorld(t)
  const { client } = makeClient(t, world, [port])
  const pending = client.openTunnel('db', token)
  client.close()
  const outcome = await pending.then(
    (tunnel) => tunnel,
    (err: unknown) => err,
  )
  if (!(outcome instanceof Error)) (outcome as Tunnel).socket.destroy()
  t.ok(outcome instanceof Error, 'the tunnel attempt fails')
  t.equal(client.multiplexedConnections, 0, 'no connection kept on the client')
  await until(() => running.gateway.multiplexedConnections === 0, 20_000, 'the gateway to see the connection go')
})

t.test('drain: GOAWAY drops the connection on the client, the live tunnel runs on, the next tunnel goes to the other gateway', async (t) => {
  const { world, token, port: portA, running: runningA, upstream } = await gatewayWorld(t, { drainGrace: '20s' })
  const runningB = await world.startGateway()
  const portB = runningB.gateway.address()!.port
  const { client, sink } = makeClient(t, world, [portA, portB])

  const live = own(t, await client.openTunnel('db', token))
  t.equal(live.gateway, `${LOOPBACK}:${portA}`)
  t.ok((await roundTrip(live.socket, Buffer.from('before the drain'))).equals(Buffer.from('before the drain')))
  t.equal(client.multiplexedConnections, 1)

  const closing = runningA.close()
  let closed = false
  void closing.then(() => {
    closed = true
  })
  await until(() => client.multiplexedConnections === 0, 20_000, 'the client to drop the connection on GOAWAY')
  t.match(await sink.waitFor((l) => l.event === 'gateway_goaway'), { gateway: `${LOOPBACK}:${portA}`, code: 'ERR_SHUTTING_DOWN' })
  t.equal(runningA.gateway.multiplexedConnections, 1, 'the gateway keeps the connection for the live stream')

  const during = randomBytes(300_000)
  t.ok((await roundTrip(live.socket, during)).equals(during), 'the live tunnel keeps working during the drain')

  const next = own(t, await client.openTunnel('db', token))
  t.equal(next.gateway, `${LOOPBACK}:${portB}`, 'the next tunnel goes to the other gateway')
  t.ok(next.socket instanceof MuxStream)
  t.ok((await echoDirect(next.socket, Buffer.from('on B'))).equals(Buffer.from('on B')))
  t.equal(client.multiplexedConnections, 1, 'one connection: to B')
  t.equal(runningB.gateway.multiplexedConnections, 1)
  t.match(client.state(), { up: true, failures: 0, gateway: `${LOOPBACK}:${portB}` })
  t.equal(closed, false, 'A still drains while its tunnel lives')

  t.ok((await echoDirect(live.socket, Buffer.from('the end'))).equals(Buffer.from('the end')), 'the live tunnel ends cleanly')
  await closing
  t.match(await world.logs.waitFor((l) => l.event === 'gateway_closed'), { forced: 0 }, 'A closed once its tunnel ended, nothing forced')
  t.equal(upstream.accepted, 2)
})

t.test('connection loss: open tunnels error ECONNRESET; the next tunnel opens a new connection and the client stays up', async (t) => {
  const { world, token, port, running } = await gatewayWorld(t)
  const cutter = await relay(t, port)
  const { client, dial } = makeClient(t, world, [cutter.port])

  const direct = own(t, await client.openTunnel('db', token))
  const forwarded = own(t, await client.openTunnel('db', token))
  t.equal(dial.offers.length, 1)
  t.equal(cutter.accepted(), 1)
  t.ok((await roundTrip(direct.socket, Buffer.from('one'))).equals(Buffer.from('one')))

  const [local, localPeer] = await socketPair(t)
  const session = forward(forwarded.socket, localPeer, { halfCloseTimeoutMs: 0 })
  local.on('error', () => {})
  local.write('two')
  const [back] = (await once(local, 'data')) as [Buffer]
  t.equal(back.toString(), 'two')

  const directError = new Promise<NodeJS.ErrnoException>((resolve) => direct.socket.once('error', resolve))
  const directClosed = new Promise<void>((resolve) => direct.socket.once('close', () => resolve()))
  cutter.cut()

  const err = await directError
  t.equal(err.code, 'ECONNRESET', 'the direct tunnel errors ECONNRESET')
  t.equal((err as NodeJS.ErrnoException & { reason?: string }).reason, 'ERR_GATEWAY_UNAVAILABLE')
  await directClosed
  const result = await session.done
  t.equal(result.reason, 'reset', 'forward() ends with reset')
  t.equal(result.error?.code, 'ECONNRESET')
  await until(() => client.multiplexedConnections === 0, 20_000, 'the client to forget the lost connection')
  await until(() => running.gateway.multiplexedConnections === 0 && running.gateway.sessions.size === 0, 20_000, 'the gateway to clean up')

  const next = own(t, await client.openTunnel('db', token))
  t.ok(next.socket instanceof MuxStream)
  t.ok((await echoDirect(next.socket, Buffer.from('three'))).equals(Buffer.from('three')))
  t.equal(dial.offers.length, 2, 'a new TLS connection')
  t.equal(cutter.accepted(), 2)
  t.equal(client.multiplexedConnections, 1)
  t.equal(running.gateway.multiplexedConnections, 1)
  t.match(client.state(), { up: true, failures: 0 })
  t.equal(client.retryInMs(), 0, 'no backoff')
})

t.test('connection loss in the same tick as openTunnel: retried once on a new connection, the client stays up', async (t) => {
  const { world, token, port, running } = await gatewayWorld(t)
  const cutter = await relay(t, port)
  const { client, dial, sink } = makeClient(t, world, [cutter.port])
  const first = own(t, await client.openTunnel('db', token))
  first.socket.on('error', () => {})

  cutter.cut()
  // The client cannot have seen the loss yet: the stream opens on the dead connection.
  t.equal(client.multiplexedConnections, 1, 'the dead connection is still on the books')
  const tunnel = own(t, await client.openTunnel('db', token))
  t.ok(tunnel.socket instanceof MuxStream)
  t.ok((await echoDirect(tunnel.socket, Buffer.from('retried'))).equals(Buffer.from('retried')))
  t.equal(dial.offers.length, 2, 'one more TLS connection')
  t.equal(cutter.accepted(), 2)
  t.equal(client.multiplexedConnections, 1)
  await until(() => running.gateway.multiplexedConnections === 1, 20_000, 'the gateway to drop the old connection')
  t.match(client.state(), { up: true, failures: 0 })
  t.equal(sink.events('gateway_attempt_failed').length, 0, 'not counted as a failed attempt')
  t.equal(sink.events('gateway_down').length, 0)
})

t.test('a keyway/2 gateway that never answers OPEN: ERR_HANDSHAKE_TIMEOUT after connectTimeoutMs, and the stream is reset', async (t) => {
  const pki = await testPki()
  const frames: { type: number; id: number }[] = []
  let buffered = Buffer.alloc(0)
  const silent = tls.createServer({ key: pki.keyPem, cert: pki.certPem, ALPNProtocols: ['keyway/2'] }, (s) => {
    s.on('error', () => {})
    s.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= FRAME_HEADER) {
        const length = buffered.readUIntBE(1, 3)
        if (buffered.length < FRAME_HEADER + length) break
        frames.push({ type: buffered[0]!, id: buffered.readUInt32BE(4) })
        buffered = buffered.subarray(FRAME_HEADER + length)
      }
    })
  })
  const sockets = new Set<net.Socket>()
  silent.on('connection', (s: net.Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  silent.listen({ host: LOOPBACK, port: 0 })
  await once(silent, 'listening')
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    silent.close()
  })
  const waitFrame = (pred: (f: { type: number; id: number }) => boolean): Promise<void> =>
    until(() => frames.some(pred), 20_000, 'a frame at the silent gateway')

  const { logger } = sinkLogger()
  const clock = new ManualClock()
  const client = new GatewayClient({
    gateways: [{ host: LOOPBACK, port: (silent.address() as net.AddressInfo).port }],
    ca: pki.caCertPem,
    servername: 'localhost',
    clock,
    logger,
    connectTimeoutMs: 3_000,
  })
  t.teardown(() => client.close())

  let settled = false
  const pending = client.openTunnel('db', TOKEN).then(
    (tunnel) => {
      settled = true
      return tunnel as unknown
    },
    (e: unknown) => {
      settled = true
      return e
    },
  )
  await waitFrame((f) => f.type === FrameType.OPEN && f.id === 1)
  t.equal(client.multiplexedConnections, 1)
  clock.advance(2_999)
  await tick()
  await tick()
  t.equal(settled, false, 'still waiting 1 ms before the limit')
  clock.advance(1)
  const err = (await pending) as KeywayError
  t.ok(isKeywayError(err, 'ERR_HANDSHAKE_TIMEOUT'), `ERR_HANDSHAKE_TIMEOUT (got ${String((err as { code?: unknown }).code)}: ${String((err as Error).message)})`)
  t.match(err.message, /3000 ms/)
  t.equal(err.detail?.refused, undefined, 'a timeout is not a refusal')
  await waitFrame((f) => f.type === FrameType.RESET && f.id === 1)
  t.pass('the stream was reset on the wire')
  t.equal(client.state().up, true, 'a slow answer is not a dead gateway')
  t.equal(client.multiplexedConnections, 1, 'the connection stays for the next tunnel')
})

t.test('close() also ends a connection that is draining after GOAWAY', async (t) => {
  const { world, token, port, running } = await gatewayWorld(t, { drainGrace: '20s' })
  const { client } = makeClient(t, world, [port])
  const live = own(t, await client.openTunnel('db', token))
  t.ok((await roundTrip(live.socket, Buffer.from('x'))).equals(Buffer.from('x')))
  const closing = running.close()
  await until(() => client.multiplexedConnections === 0, 20_000, 'the client to take the GOAWAY')
  client.close()
  await until(() => live.socket.destroyed, 20_000, 'the draining connection and its tunnel to end')
  await until(() => running.gateway.multiplexedConnections === 0 && running.gateway.sessions.size === 0, 20_000, 'the gateway to see it')
  await closing
})
