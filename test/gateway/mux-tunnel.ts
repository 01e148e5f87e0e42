/**
 * The gateway's multiplexed tunnels (ALPN keyway/2), end to end in-process: a
 * real Gateway (startGateway from the test world) on 127.0.0.1:0 with real
 * TLS, a client-side MuxConnection (what the sidecar uses) or a raw TLS
 * client writing hand-made frames, and counting upstreams.
 */
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import * as tls from 'node:tls'
import type { KeywayError } from '../../src/errors.js'
import { ALPN_MUX, FRAME_HEADER, FrameType, MuxConnection, encodeFrame, type MuxStream, type StreamResetError } from '../../src/mux/index.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { encodeHello } from '../../src/protocol/index.js'
import { LOOPBACK, readAll, sha256OfStream, writeRandom } from '../helpers/net.js'
import { countingUpstream, type CountingUpstream } from '../helpers/upstream.js'
import { closedStream, errorOf, rawFrame, roundTrip } from '../helpers/mux.js'
import { until, within } from '../helpers/until.js'
import { createWorld, ManualClock, openTunnel, type LogLine, type World } from '../helpers/world.js'

const KiB = 1024
const MiB = 1024 * 1024

/** db and cache reach the echo upstream, drop the sink upstream. svc_etl: db and drop (role); svc_bi: cache (direct grant). */
function policyFor(echoPort: number, sinkPort: number): PolicyDoc {
  return {
    version: 1,
    settings: { portOverrides: true, autoConnect: true },
    resources: [
      { name: 'db', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${echoPort}`, portOverride: 15432 },
      { name: 'cache', kind: 'datasource', type: 'redis', address: `127.0.0.1:${echoPort}`, portOverride: 16379 },
      { name: 'drop', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${sinkPort}`, portOverride: 15433 },
    ],
    roles: [{ name: 'etl', grants: ['db', 'drop'] }],
    accounts: [
      { id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] },
      { id: 'svc_bi', type: 'service', name: 'bi', roles: [], grants: [{ resource: 'cache' }] },
    ],
  }
}

interface Setup {
  echo: CountingUpstream
  sink: CountingUpstream
  world: World
  etl: string
  bi: string
  running: Awaited<ReturnType<World['startGateway']>>
  port: number
}

async function setup(t: Test, options: { clock?: ManualClock; gateway?: Record<string, unknown> } = {}): Promise<Setup> {
  const echo = await countingUpstream(t, 'echo')
  const sink = await countingUpstream(t, 'sink')
  const world = await createWorld(t, { policy: policyFor(echo.port, sink.port), ...options })
  const etl = await world.serviceToken('svc_etl')
  const bi = await world.serviceToken('svc_bi')
  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  return { echo, sink, world, etl, bi, running, port }
}

/** A TLS connection to the gateway negotiating keyway/2 (half-open capable); destroyed on teardown. */
async function connectMuxTls(t: Test, port: number, caPem: string): Promise<tls.TLSSocket> {
  // tls.connect honours allowHalfOpen; its types omit it.
  const options: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: LOOPBACK,
    port,
    ca: caPem,
    servername: 'localhost',
    ALPNProtocols: [ALPN_MUX],
    allowHalfOpen: true,
  }
  const socket = tls.connect(options)
  t.teardown(() => socket.destroy())
  await once(socket, 'secureConnect')
  if (socket.alpnProtocol !== ALPN_MUX) throw new Error(`the gateway negotiated ${String(socket.alpnProtocol)}, not ${ALPN_MUX}`)
  return socket
}

/** A sidecar-side multiplexed connection to the gateway. */
interface Client {
  conn: MuxConnection
  socket: tls.TLSSocket
  goaways: { code: string; message: string }[]
  /** Resolves once the client connection has closed, with the violation if it ended for one. */
  closed: Promise<KeywayError | undefined>
  /** Resolves with the first GOAWAY. */
  goaway: Promise<{ code: string; message: string }>
}

async function muxClient(t: Test, port: number, caPem: string): Promise<Client> {
  const socket = await connectMuxTls(t, port, caPem)
  const goaways: { code: string; message: string }[] = []
  let onClosed!: (err: KeywayError | undefined) => void
  const closed = new Promise<KeywayError | undefined>((resolve) => {
    onClosed = resolve
  })
  let onGoaway!: (g: { code: string; message: string }) => void
  const goaway = new Promise<{ code: string; message: string }>((resolve) => {
    onGoaway = resolve
  })
  const conn = new MuxConnection(socket, {
    role: 'client',
    onGoaway: (code, message) => {
      goaways.push({ code, message })
      onGoaway({ code, message })
    },
    onClose: (err) => onClosed(err),
  })
  t.teardown(() => conn.destroy())
  return { conn, socket, goaways, closed, goaway }
}

/** How the gateway answered an OPEN: ACCEPT with its JSON body, or RESET with its code. */
type Outcome = { ok: true; session: string; body: Record<string, unknown> } | { ok: false; reason: string; message: string; code: string | undefined }

interface Opened {
  stream: MuxStream
  /** Settles with the gateway's answer; rejects only when none comes within 5 s. */
  outcome: Promise<Outcome>
}

/** Sends an OPEN with `payload`; the stream tolerates 'error' (tests assert on the outcome). */
function openRaw(conn: MuxConnection, payload: Buffer): Opened {
  const stream = conn.open(payload)
  stream.on('error', () => {})
  const answer = new Promise<Outcome>((resolve) => {
    stream.whenAccepted((err, body) => {
      if (err) {
        const e = err as StreamResetError
        resolve({ ok: false, reason: e.reason, message: e.message, code: e.code })
        return
      }
      const parsed = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8')) as Record<string, unknown>
      resolve({ ok: true, session: String(parsed.session), body: parsed })
    })
  })
  return { stream, outcome: within(answer, 5_000, `the answer to OPEN ${stream.id}`) }
}

function openStream(conn: MuxConnection, token: string, resource: string): Opened {
  return openRaw(conn, encodeHello({ token, resource }))
}

/** Opens a stream and requires it to be accepted. */
async function openAccepted(t: Test, conn: MuxConnection, token: string, resource: string): Promise<{ stream: MuxStream; session: string }> {
  const { stream, outcome } = openStream(conn, token, resource)
  const o = await within(outcome, 5_000, `the answer to an OPEN for ${resource}`)
  if (!o.ok) throw new Error(`OPEN for ${resource} refused: ${o.reason} ${o.message}`)
  t.ok(o.ok, `stream ${stream.id} to ${resource} accepted`)
  return { stream, session: o.session }
}

/** Sends `data`, ends the stream, and resolves with everything read until the peer's end. */
async function exchange(stream: MuxStream, data: Buffer): Promise<Buffer> {
  const back = readAll(stream)
  // roundTrip() may have paused it: a new 'data' listener does not resume an explicitly paused stream.
  stream.resume()
  stream.end(data)
  return within(back, 15_000, `the echo of ${data.length} bytes on stream ${stream.id}`)
}

/** The first log line (past or future) that matches; fails instead of hanging. */
function logged(world: World, pred: (l: LogLine) => boolean): Promise<LogLine> {
  return within(world.logs.waitFor(pred), 5_000, `a log line matching ${pred.toString()}`)
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** One frame as a raw client reads it. */
interface Frame {
  type: number
  stream: number
  payload: Buffer
}

/** A raw TLS client speaking keyway/2 by hand: writes frames, parses what the gateway sends. */
async function rawMux(t: Test, port: number, caPem: string) {
  const socket = await connectMuxTls(t, port, caPem)
  socket.on('error', () => {})
  const frames: Frame[] = []
  let waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = []
  let buffered = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= FRAME_HEADER) {
      const length = buffered.readUIntBE(1, 3)
      if (buffered.length < FRAME_HEADER + length) break
      const frame: Frame = { type: buffered[0]!, stream: buffered.readUInt32BE(4), payload: Buffer.from(buffered.subarray(FRAME_HEADER, FRAME_HEADER + length)) }
      buffered = buffered.subarray(FRAME_HEADER + length)
      frames.push(frame)
      waiters = waiters.filter((w) => (w.pred(frame) ? (w.resolve(frame), false) : true))
    }
  })
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    socket,
    frames,
    ended,
    closed,
    /** Resolves with the first frame (past or future) that matches. */
    waitFrame(pred: (f: Frame) => boolean, what: string): Promise<Frame> {
      const seen = frames.find(pred)
      if (seen) return Promise.resolve(seen)
      return within(new Promise<Frame>((resolve) => waiters.push({ pred, resolve })), 5_000, what)
    },
  }
}

function problemOf(frame: Frame): { code?: string; message?: string } {
  return JSON.parse(frame.payload.toString('utf8')) as { code?: string; message?: string }
}

// ---------------------------------------------------------------------------

t.test('a granted stream is accepted with a session id and carries 4 MiB byte-exact each way; the session ends "done"', async (t) => {
  const { echo, world, etl, port, running } = await setup(t)
  const client = await muxClient(t, port, world.caPem)
  const { stream, session } = await openAccepted(t, client.conn, etl, 'db')
  t.match(session, /^[0-9a-f]{12}\.[A-Za-z0-9_-]{12}$/, 'ACCEPT carries {"session":"<instance>.<id>"}')
  t.match(await logged(world, (l) => l.event === 'session_start'), { session, account: 'svc_etl', resource: 'db', token_fp: /^sha256:[0-9a-f]{16}$/ })
  // The gateway's dial completes before the upstream's accept callback runs: wait for it.
  await within(echo.waitAccepted(1), 5_000, 'the upstream to accept')
  t.equal(echo.accepted, 1, 'the upstream was dialled once')

  // More than the 1 MiB window each way: the flow control must return credit end to end.
  const [sent, got] = await within(Promise.all([writeRandom(stream, 4 * MiB), sha256OfStream(stream)]), 30_000, '4 MiB through the echo upstream')
  t.same(got, sent, 'client → upstream → client byte-exact')
  await until(() => echo.digests[0] !== undefined, 20_000, 'the upstream to see our FIN')
  t.equal(echo.digests[0], sent.sha256, 'the upstream received exactly what the client sent')
  await within(closedStream(stream), 5_000, 'the stream to close')
  t.equal(stream.errored, null, 'the stream closed without a RESET')
  const end = await logged(world, (l) => l.event === 'session_end' && l.session === session)
  t.match(end, { account: 'svc_etl', resource: 'db', bytes_in: 4 * MiB, bytes_out: 4 * MiB, reason: 'done' })
  await until(() => running.gateway.openTunnels === 0, 20_000, 'the tunnel to be released')
  t.equal(client.conn.closed, false, 'the connection outlives its stream')
  t.equal(client.conn.usable, true)
  t.notOk(world.logs.text().includes(etl), 'no token in the logs')
})

t.test('half-close is carried both ways: the upstream sees the FIN, then answers on its still-open side', async (t) => {
  const { sink, world, etl, port } = await setup(t)
  const client = await muxClient(t, port, world.caPem)
  const { stream, session } = await openAccepted(t, client.conn, etl, 'drop')
  const back = readAll(stream)
  stream.end('request, then FIN')
  await until(() => sink.digests[0] !== undefined, 20_000, "the upstream to see the client's FIN")
  t.equal(sink.digests[0], sha256('request, then FIN'), 'the upstream got the bytes, then EOF')
  t.equal(sink.open.size, 1, "the upstream's side is still open")
  const up = [...sink.open][0]!
  up.end('answer after your FIN')
  t.equal((await within(back, 5_000, 'the answer')).toString(), 'answer after your FIN', 'bytes after the client FIN reach the client, then its EOF')
  await within(closedStream(stream), 5_000, 'the stream to close')
  t.equal(stream.errored, null, 'closed cleanly, no RESET')
  t.match(await logged(world, (l) => l.event === 'session_end' && l.session === session), { reason: 'done', bytes_in: 17, bytes_out: 21 })
})

t.test('50 concurrent streams on one connection are each byte-exact; openTunnels counts streams; the connection count goes 1 → 0', async (t) => {
  const { echo, world, etl, port, running } = await setup(t)
  const gw = running.gateway
  const client = await muxClient(t, port, world.caPem)
  await until(() => gw.multiplexedConnections === 1, 20_000, 'the gateway to take the connection')
  t.equal(gw.openTunnels, 0, 'a connection with no stream is no tunnel')

  const N = 50
  const opened = await within(Promise.all(Array.from({ length: N }, () => openAccepted(t, client.conn, etl, 'db'))), 10_000, `${N} ACCEPTs`)
  t.equal(gw.openTunnels, N, 'every stream is a tunnel')
  t.equal(gw.multiplexedConnections, 1, 'on one connection')
  t.equal(gw.sessions.size, N)
  await within(echo.waitAccepted(N), 5_000, `the upstream to accept ${N} connections`)
  t.equal(echo.accepted, N, 'one upstream connection per stream')
  t.equal(new Set(opened.map((o) => o.session)).size, N, 'distinct session ids')

  const results = await within(
    Promise.all(
      opened.map(async ({ stream }, i) => {
        // 1 byte to ~300 KiB, each stream its own bytes.
        const data = randomBytes(1 + ((i * 6151) % (300 * KiB)))
        const back = await exchange(stream, data)
        return back.equals(data)
      }),
    ),
    30_000,
    `${N} echoes`,
  )
  t.equal(results.filter(Boolean).length, N, 'every stream got exactly its own bytes back')
  await until(() => gw.openTunnels === 0, 20_000, 'every tunnel to be released')
  t.equal(gw.sessions.size, 0)
  t.equal(world.logs.events('session_end').filter((l) => l.reason === 'done').length, N, `${N} sessions ended "done"`)
  t.equal(gw.multiplexedConnections, 1, 'the connection stays while the client keeps it')

  // The client closes its connection (TLS close_notify and FIN).
  client.socket.end()
  t.equal(await within(client.closed, 5_000, 'the client connection to close'), undefined, 'closed without a violation')
  await until(() => gw.multiplexedConnections === 0, 20_000, 'the gateway to drop the connection')
  t.equal(gw.openTunnels, 0)
})

t.test('refusals arrive as RESET with the code, never dial, and leave the connection usable', async (t) => {
  const { echo, world, etl, bi, port, running } = await setup(t)
  const client = await muxClient(t, port, world.caPem)
  const hello = encodeHello({ token: etl, resource: 'db' })
  const badVersion = Buffer.from(hello)
  badVersion[3] = 2
  const cases: { name: string; payload: Buffer; reason: string | RegExp }[] = [
    { name: 'no grant', payload: encodeHello({ token: bi, resource: 'db' }), reason: 'ERR_GRANT_DENIED' },
    // The same answer as no grant: a token cannot tell which names exist.
    { name: 'unknown resource', payload: encodeHello({ token: etl, resource: 'nope' }), reason: 'ERR_GRANT_DENIED' },
    { name: 'a forged signature', payload: encodeHello({ token: etl.slice(0, -4) + 'AAAA', resource: 'db' }), reason: /^ERR_TOKEN_(SIGNATURE|MALFORMED)$/ },
    { name: 'a garbage token', payload: encodeHello({ token: 'garbage', resource: 'db' }), reason: 'ERR_TOKEN_MALFORMED' },
    { name: 'not a hello', payload: Buffer.from('GET / HTTP/1.1\r\n\r\n'), reason: 'ERR_HANDSHAKE_MALFORMED' },
    { name: 'a hello followed by extra bytes', payload: Buffer.concat([hello, Buffer.from('extra')]), reason: 'ERR_HANDSHAKE_MALFORMED' },
    { name: 'a truncated hello', payload: hello.subarray(0, 10), reason: 'ERR_HANDSHAKE_MALFORMED' },
    { name: 'an empty OPEN', payload: Buffer.alloc(0), reason: 'ERR_HANDSHAKE_MALFORMED' },
    { name: 'a hello of version 2', payload: badVersion, reason: 'ERR_HANDSHAKE_VERSION' },
    // Over gateway.handshakeMaxBytes (8,192 by default) but under 1 MiB: that stream alone is refused, as a long keyway/1 hello.
    { name: 'an OPEN over handshakeMaxBytes', payload: encodeHello({ token: etl + 'x'.repeat(9_000), resource: 'db' }), reason: 'ERR_HANDSHAKE_TOO_LARGE' },
  ]
  for (const c of cases) {
    const { stream, outcome } = openRaw(client.conn, c.payload)
    const o = await within(outcome, 5_000, `the answer to ${c.name}`)
    t.match(o, { ok: false, reason: c.reason, code: 'ECONNRESET' }, `${c.name}: RESET ${String(c.reason)}`)
    if (o.ok) stream.destroy()
    await within(closedStream(stream), 5_000, `${c.name}: the stream to close`)
    t.ok(stream.destroyed, `${c.name}: the stream is gone`)
  }
  t.equal(world.logs.events('session_start').length, 0, 'no session started')
  const denied = world.logs.events('tunnel_denied')
  t.equal(denied.length, cases.length, 'every refusal is logged')
  t.match(denied[0], { code: 'ERR_GRANT_DENIED', account: 'svc_bi', resource: 'db' })
  await until(() => running.gateway.openTunnels === 0, 20_000, 'refused streams to be released')

  t.same(client.goaways, [], 'no GOAWAY')
  t.equal(client.conn.usable, true, 'the connection is still usable')
  const { stream } = await openAccepted(t, client.conn, etl, 'db')
  t.equal((await exchange(stream, Buffer.from('after the refusals'))).toString(), 'after the refusals', 'a next stream works')
  // A dial for a refused stream would have reached the upstream before this one.
  t.equal(echo.accepted, 1, 'only the granted stream dialled the upstream')
  t.notOk(world.logs.text().includes(etl) || world.logs.text().includes(bi), 'no token in the logs')
})

t.test('revoking a grant resets that stream with its code; other streams, on this and another connection, run on', async (t) => {
  const { echo, world, etl, bi, port, running } = await setup(t)
  const a = await muxClient(t, port, world.caPem)
  const b = await muxClient(t, port, world.caPem)
  const doomed = await openAccepted(t, a.conn, etl, 'db')
  const neighbour = await openAccepted(t, a.conn, bi, 'cache')
  const other = await openAccepted(t, b.conn, bi, 'cache')
  for (const s of [doomed, neighbour, other]) t.equal((await roundTrip(s.stream, Buffer.from('ping'))).toString(), 'ping')
  t.equal(running.gateway.sessions.size, 3)
  await until(() => echo.open.size === 3, 20_000, 'three upstream connections')

  const reset = errorOf(doomed.stream)
  world.editPolicy((doc) => {
    doc.roles = [{ name: 'etl', grants: [] }]
  })
  await running.reload()
  const err = await within(reset, 5_000, 'the revoked stream to be reset')
  t.equal(err.code, 'ECONNRESET')
  t.equal(err.reason, 'ERR_GRANT_DENIED', 'RESET carries the revocation code')
  t.match(await logged(world, (l) => l.event === 'session_revoked'), { session: doomed.session, account: 'svc_etl', resource: 'db', code: 'ERR_GRANT_DENIED' })
  t.match(await logged(world, (l) => l.event === 'session_end' && l.session === doomed.session), { reason: 'revoked:ERR_GRANT_DENIED' })
  await until(() => echo.open.size === 2, 20_000, "the revoked session's upstream connection to close")
  t.equal(running.gateway.sessions.size, 2)
  t.equal(world.logs.events('session_revoked').length, 1, 'only that session was revoked')

  t.equal(a.conn.closed, false, 'the connection of the revoked stream stays up')
  t.same([a.goaways, b.goaways], [[], []])
  t.equal((await exchange(neighbour.stream, Buffer.from('same connection'))).toString(), 'same connection', "another account's stream on the same connection runs on")
  t.equal((await exchange(other.stream, Buffer.from('other connection'))).toString(), 'other connection', "another account's stream on another connection runs on")
  t.match(await within(openStream(a.conn, etl, 'db').outcome, 5_000, 'a new OPEN'), { ok: false, reason: 'ERR_GRANT_DENIED' }, 'a new stream for the revoked grant is refused')
})

t.test('maxConnectionsPerAccount counts streams: the 4th concurrent stream of an account is refused', async (t) => {
  const { echo, world, etl, bi, port, running } = await setup(t, { gateway: { maxConnectionsPerAccount: 3 } })
  const a = await muxClient(t, port, world.caPem)
  const b = await muxClient(t, port, world.caPem)
  const three = await Promise.all([0, 1, 2].map(() => openAccepted(t, a.conn, etl, 'db')))
  t.equal(three.length, 3)
  t.match(await openStream(a.conn, etl, 'db').outcome, { ok: false, reason: 'ERR_ACCOUNT_CONN_LIMIT' }, 'the 4th on the same connection')
  t.match(await openStream(b.conn, etl, 'db').outcome, { ok: false, reason: 'ERR_ACCOUNT_CONN_LIMIT' }, 'the 4th on another connection')
  const others = await openAccepted(t, a.conn, bi, 'cache')
  t.ok(others.session, "another account's stream is not limited by this account's count")
  t.equal((await roundTrip(others.stream, Buffer.from('ping'))).toString(), 'ping')
  // The dials of the refused streams would have come before the one just used.
  t.equal(echo.accepted, 4, 'refused streams never dial')
  t.equal(world.logs.events('tunnel_denied').filter((l) => l.code === 'ERR_ACCOUNT_CONN_LIMIT').length, 2)

  // A slot comes back when a stream ends.
  t.equal((await exchange(three[0]!.stream, Buffer.from('bye'))).toString(), 'bye')
  await until(() => running.gateway.sessions.size === 3, 20_000, 'the ended session to be released')
  const again = await openAccepted(t, b.conn, etl, 'db')
  t.equal((await exchange(again.stream, Buffer.from('my turn'))).toString(), 'my turn', 'the freed slot is usable')
})

t.test('maxConnections counts streams and the connection carrying them: one stream more is refused, a connection more turned away', async (t) => {
  // docs/protocol.md: the connection itself takes one gateway.maxConnections slot; with 3, one connection carries 2 streams.
  const { echo, world, etl, port, running } = await setup(t, { gateway: { maxConnections: 3 } })
  const client = await muxClient(t, port, world.caPem)
  const two = await Promise.all([0, 1].map(() => openAccepted(t, client.conn, etl, 'db')))
  t.equal(running.gateway.openTunnels, 2)
  t.match(await openStream(client.conn, etl, 'db').outcome, { ok: false, reason: 'ERR_CONN_LIMIT' }, 'one stream more is refused')
  t.equal((await roundTrip(two[1]!.stream, Buffer.from('ping'))).toString(), 'ping')
  t.equal(echo.accepted, 2, 'the refused stream never dialled')
  const v1 = await openTunnel(t, port, world.caPem, etl, 'db')
  t.match(v1.reply, { ok: false, code: 'ERR_CONN_LIMIT' }, 'a keyway/1 tunnel counts against the same limit')
  t.equal(client.conn.usable, true, 'the connection survives the refusal')
  const late = await muxClient(t, port, world.caPem)
  t.match(await within(late.goaway, 5_000, 'the GOAWAY of a connection over the limit'), { code: 'ERR_CONN_LIMIT' }, 'a connection over the limit is turned away')
  t.equal(await within(late.closed, 5_000, 'the connection over the limit to close'), undefined)
  t.equal(world.logs.events('tunnel_denied').filter((l) => l.code === 'ERR_CONN_LIMIT').length, 3, 'stream, keyway/1 tunnel and connection refusals logged')
  await until(() => running.gateway.multiplexedConnections === 1, 20_000, 'the gateway to drop the connection it turned away')

  t.equal((await exchange(two[0]!.stream, Buffer.from('bye'))).toString(), 'bye')
  await until(() => running.gateway.openTunnels === 1, 20_000, 'the ended stream to be released')
  const again = await openAccepted(t, client.conn, etl, 'db')
  t.equal((await exchange(again.stream, Buffer.from('room again'))).toString(), 'room again', 'a freed slot is usable')
})

t.test('close() drains: GOAWAY ERR_SHUTTING_DOWN, a live stream carries bytes until it ends, then close() resolves; a late OPEN is refused', async (t) => {
  // A manual clock: the drain grace never runs out on its own, so close() resolves only when the stream ends.
  const clock = new ManualClock(Date.now())
  const { world, etl, port, running } = await setup(t, { clock })
  const client = await muxClient(t, port, world.caPem)
  const raw = await rawMux(t, port, world.caPem)
  const { stream, session } = await openAccepted(t, client.conn, etl, 'db')
  t.equal((await roundTrip(stream, Buffer.from('before'))).toString(), 'before')
  await until(() => running.gateway.multiplexedConnections === 2, 20_000, 'both connections at the gateway')

  let resolved = false
  const closing = running.gateway.close().then(() => {
    resolved = true
  })
  t.match(await within(client.goaway, 5_000, 'the GOAWAY'), { code: 'ERR_SHUTTING_DOWN' })
  t.equal(client.conn.usable, false, 'the client opens no new stream here')
  t.throws(() => client.conn.open(encodeHello({ token: etl, resource: 'db' })), { code: 'ERR_GATEWAY_UNAVAILABLE' }, 'open() refuses after GOAWAY')
  const goaway = await raw.waitFrame((f) => f.type === FrameType.GOAWAY, 'the raw client GOAWAY')
  t.match(problemOf(goaway), { code: 'ERR_SHUTTING_DOWN' }, 'every connection gets the GOAWAY')

  // An OPEN sent anyway after the GOAWAY.
  raw.socket.write(encodeFrame(FrameType.OPEN, 1, encodeHello({ token: etl, resource: 'db' })))
  const refused = await raw.waitFrame((f) => f.stream === 1 && (f.type === FrameType.RESET || f.type === FrameType.ACCEPT), 'the answer to the late OPEN')
  t.equal(refused.type, FrameType.RESET, 'the late OPEN is refused')
  t.match(problemOf(refused), { code: 'ERR_SHUTTING_DOWN' })

  t.equal((await roundTrip(stream, Buffer.from('during the drain'))).toString(), 'during the drain', 'the live stream carries bytes after the GOAWAY')
  t.equal(resolved, false, 'close() waits for the live stream')
  t.equal((await exchange(stream, Buffer.from('last words'))).toString(), 'last words')
  await within(closing, 5_000, 'close() to resolve once the stream ended')
  t.match(await logged(world, (l) => l.event === 'session_end' && l.session === session), { reason: 'done' })
  t.match(await logged(world, (l) => l.event === 'gateway_closed'), { forced: 0 })
  t.equal(stream.errored, null, 'the drained stream was never reset')
  await within(client.closed, 5_000, 'the gateway to close the drained connection')
  t.equal(running.gateway.multiplexedConnections, 0)
})

t.test('a keyway/2 connection without a stream accepted within handshakeTimeout gets GOAWAY ERR_HANDSHAKE_TIMEOUT and is closed (injected clock)', async (t) => {
  const clock = new ManualClock(Date.now())
  const { world, etl, bi, port, running } = await setup(t, { clock, gateway: { handshakeTimeout: '5s' } })
  const gw = running.gateway
  const idle = await muxClient(t, port, world.caPem)
  const refusedOnly = await muxClient(t, port, world.caPem)
  const busy = await muxClient(t, port, world.caPem)
  await until(() => gw.multiplexedConnections === 3, 20_000, 'the gateway to take the three connections')
  t.match(await openStream(refusedOnly.conn, bi, 'db').outcome, { ok: false, reason: 'ERR_GRANT_DENIED' })
  const { stream } = await openAccepted(t, busy.conn, etl, 'db')

  clock.advance(4_999)
  t.equal(gw.multiplexedConnections, 3, 'nothing closed before the deadline')
  t.same([idle.goaways, refusedOnly.goaways, busy.goaways], [[], [], []], 'no GOAWAY before the deadline')
  clock.advance(2)
  t.match(await within(idle.goaway, 5_000, 'the GOAWAY of the idle connection'), { code: 'ERR_HANDSHAKE_TIMEOUT' })
  t.equal(await within(idle.closed, 5_000, 'the idle connection to be closed'), undefined, 'the idle connection is closed (no violation)')
  t.match(await within(refusedOnly.goaway, 5_000, 'the GOAWAY of the refused-only connection'), { code: 'ERR_HANDSHAKE_TIMEOUT' }, 'a refused OPEN does not keep a connection')
  await within(refusedOnly.closed, 5_000, 'the refused-only connection to be closed')
  t.equal(world.logs.events('tunnel_abandoned').length, 2, 'both logged tunnel_abandoned')
  await until(() => gw.multiplexedConnections === 1, 20_000, 'the gateway to drop both')

  t.equal(busy.conn.closed, false, 'a connection with a stream accepted in time stays')
  t.same(busy.goaways, [])
  t.equal((await exchange(stream, Buffer.from('still here'))).toString(), 'still here')
  const next = await openAccepted(t, busy.conn, etl, 'db')
  t.equal((await exchange(next.stream, Buffer.from('and later'))).toString(), 'and later', 'it takes streams after the deadline too')
  await until(() => gw.sessions.size === 0, 20_000, 'the sessions to end')
  clock.advance(10_000)
  t.equal(busy.conn.closed, false, 'once a stream was accepted, handshakeTimeout no longer applies')
  t.same(busy.goaways, [])
})

t.test('a refused OPEN earns no time: the handshakeTimeout deadline still counts from the TLS handshake (injected clock)', async (t) => {
  // docs/protocol.md: "closed (GOAWAY, then FIN) after gateway.handshakeTimeout
  // until one of its streams has been accepted (refused OPENs earn no time)".
  const clock = new ManualClock(Date.now())
  const { world, bi, port, running } = await setup(t, { clock, gateway: { handshakeTimeout: '5s' } })
  const client = await muxClient(t, port, world.caPem)
  await until(() => running.gateway.multiplexedConnections === 1, 20_000, 'the gateway to take the connection')
  clock.advance(4_000)
  t.match(await openStream(client.conn, bi, 'db').outcome, { ok: false, reason: 'ERR_GRANT_DENIED' }, 'a refused OPEN at 4 s')
  t.equal(client.conn.closed, false)
  clock.advance(1_001)
  t.match(await within(client.goaway, 5_000, 'the GOAWAY'), { code: 'ERR_HANDSHAKE_TIMEOUT' }, 'GOAWAY 5 s after the TLS handshake, not 5 s after the refusal')
  await within(client.closed, 5_000, 'the connection to be closed')
})

t.test('after a stream was accepted, a connection left without streams is closed after idleTimeout: GOAWAY, mux_idle (injected clock)', async (t) => {
  const clock = new ManualClock(Date.now())
  const { world, etl, port, running } = await setup(t, { clock, gateway: { handshakeTimeout: '5s', idleTimeout: '1m' } })
  const client = await muxClient(t, port, world.caPem)
  const { stream } = await openAccepted(t, client.conn, etl, 'db')
  // The session has its own idleTimeout: bytes move half-way, and no limit runs on the connection meanwhile.
  clock.advance(59_000)
  t.equal((await roundTrip(stream, Buffer.from('tick'))).toString(), 'tick')
  clock.advance(59_000)
  t.same(client.goaways, [], 'no idle limit on a connection with a live stream')
  t.equal(client.conn.closed, false)
  t.equal((await exchange(stream, Buffer.from('done'))).toString(), 'done')
  await until(() => running.gateway.openTunnels === 0, 20_000, 'the stream to be released')
  clock.advance(59_999)
  t.same(client.goaways, [], 'not before idleTimeout')
  clock.advance(2)
  t.match(await within(client.goaway, 5_000, 'the idle GOAWAY'), { code: 'ERR_SHUTTING_DOWN' })
  t.equal(await within(client.closed, 5_000, 'the connection to be closed'), undefined)
  t.match(await logged(world, (l) => l.event === 'mux_idle'), { idle_ms: 60_000 })
  await until(() => running.gateway.multiplexedConnections === 0, 20_000, 'the gateway to drop it')
})

/** Frames that break a rule, sent after stream 1 was opened and accepted. */
const VIOLATIONS: { name: string; frames: (etl: string) => Buffer; what: RegExp }[] = [
  { name: 'a frame of unknown type 99', frames: () => rawFrame(99, 1), what: /unknown frame type 99/ },
  { name: 'DATA on a stream never opened', frames: () => rawFrame(FrameType.DATA, 7, Buffer.from('x')), what: /DATA on stream 7, never opened/ },
  // Control payloads are bounded by gateway.handshakeMaxBytes (8,192 by default); an OPEN is refused alone up to 1 MiB.
  { name: 'a RESET over handshakeMaxBytes', frames: () => rawFrame(FrameType.RESET, 1, Buffer.alloc(9_000, 0x20)), what: /control frame of 9000 bytes exceeds 8192/ },
  { name: 'an OPEN over 1 MiB', frames: () => openHeader(3, MiB + 1), what: /control frame of 1048577 bytes exceeds 8192/ },
]

/** Just the header of an OPEN announcing `length` bytes: the gateway judges the frame by it. */
function openHeader(stream: number, length: number): Buffer {
  const header = Buffer.alloc(FRAME_HEADER)
  header[0] = FrameType.OPEN
  header.writeUIntBE(length, 1, 3)
  header.writeUInt32BE(stream, 4)
  return header
}

for (const v of VIOLATIONS) {
  t.test(`a protocol violation (${v.name}) closes the connection with GOAWAY ERR_PROTOCOL_VIOLATION; others run on`, async (t) => {
    const { echo, world, etl, port, running } = await setup(t)
    const gw = running.gateway
    const good = await muxClient(t, port, world.caPem)
    const kept = await openAccepted(t, good.conn, etl, 'db')
    const raw = await rawMux(t, port, world.caPem)
    // A live stream on the offending connection: the violation must end it too.
    raw.socket.write(encodeFrame(FrameType.OPEN, 1, encodeHello({ token: etl, resource: 'db' })))
    const accept = await raw.waitFrame((f) => f.stream === 1 && (f.type === FrameType.ACCEPT || f.type === FrameType.RESET), 'the answer to the OPEN')
    t.equal(accept.type, FrameType.ACCEPT)
    const rawSession = String((JSON.parse(accept.payload.toString()) as { session?: unknown }).session)
    t.equal(gw.sessions.size, 2)

    raw.socket.write(v.frames(etl))
    await within(raw.ended, 5_000, 'the gateway to end the connection')
    const last = raw.frames.at(-1)
    t.equal(last?.type, FrameType.GOAWAY, 'the last frame is a GOAWAY')
    t.equal(last?.stream, 0)
    t.match(problemOf(last!), { code: 'ERR_PROTOCOL_VIOLATION', message: v.what })
    t.match(await logged(world, (l) => l.event === 'mux_violation'), { level: 'warn', code: 'ERR_PROTOCOL_VIOLATION', msg: v.what })
    t.match(await logged(world, (l) => l.event === 'session_end' && l.session === rawSession), { reason: 'reset' }, "the connection's live stream ended with it")
    await until(() => gw.multiplexedConnections === 1 && gw.sessions.size === 1, 20_000, 'the gateway to drop the connection and its stream')
    // The raw client is half-open capable: it sees the gateway's FIN and closes its own side.
    raw.socket.end()
    await within(raw.closed, 5_000, 'the raw socket to close')

    t.equal(good.conn.closed, false, 'the other connection is untouched')
    t.equal((await exchange(kept.stream, Buffer.from('unaffected'))).toString(), 'unaffected', 'its live stream runs on')
    const fresh = await muxClient(t, port, world.caPem)
    const s = await openAccepted(t, fresh.conn, etl, 'db')
    t.equal((await exchange(s.stream, Buffer.from('new connection'))).toString(), 'new connection', 'the gateway still serves new connections')
    t.equal(echo.accepted, 3)
  })
}

t.test('keyway/1 tunnels work side by side with keyway/2 streams', async (t) => {
  const { echo, world, etl, bi, port, running } = await setup(t)
  const gw = running.gateway
  const client = await muxClient(t, port, world.caPem)
  const muxed = await openAccepted(t, client.conn, etl, 'db')
  const v1 = await openTunnel(t, port, world.caPem, bi, 'cache')
  t.match(v1.reply, { ok: true })
  t.equal(gw.openTunnels, 2, 'one stream and one keyway/1 tunnel')
  t.equal(gw.multiplexedConnections, 1)
  const v1Back = readAll(v1.socket)
  v1.socket.resume()
  v1.socket.end('over keyway/1')
  const [a, b] = await Promise.all([exchange(muxed.stream, Buffer.from('over keyway/2')), v1Back])
  t.equal(a.toString(), 'over keyway/2')
  t.equal(b.toString(), 'over keyway/1')
  t.equal(echo.accepted, 2, 'one upstream connection each')
  await until(() => gw.openTunnels === 0, 20_000, 'both tunnels to be released')
  t.equal(world.logs.events('session_end').filter((l) => l.reason === 'done').length, 2)
})

t.test('a peer that resets a stream before the gateway answers cannot crash it; the attempt counts as abandoned', async (t) => {
  const { world, etl, port, running } = await setup(t)
  const hello = encodeHello({ token: etl, resource: 'db' })
  // OPEN and RESET in one write: the RESET is parsed while the token check is still pending.
  const a = await rawMux(t, port, world.caPem)
  a.socket.write(Buffer.concat([rawFrame(FrameType.OPEN, 1, hello), rawFrame(FrameType.RESET, 1)]))
  t.match(await logged(world, (l) => l.event === 'tunnel_abandoned'), { client: /^127\.0\.0\.1:/, stream: 1 }, 'logged as abandoned')
  await until(() => running.gateway.openTunnels === 0, 20_000, 'no stream left counted')
  t.same(world.logs.events('session_start'), [], 'no session was started for it')
  // Still serving, on the same connection and on a new one.
  a.socket.write(rawFrame(FrameType.OPEN, 3, hello))
  const accepted = await a.waitFrame((f) => f.type === FrameType.ACCEPT && f.stream === 3, 'stream 3 accepted')
  t.ok(accepted, 'the connection still serves')
  const client = await muxClient(t, port, world.caPem)
  const { stream } = await openAccepted(t, client.conn, etl, 'db')
  t.ok((await roundTrip(stream, Buffer.from('alive'))).equals(Buffer.from('alive')), 'the gateway still serves')
  t.match(await running.registry.metrics(), /keyway_gateway_sessions_total\{result="handshake_error"\} 1\b/, 'counted as a handshake error')
})

t.test('a session the gateway ends (the upstream resets) reaches the client as RESET ERR_SESSION_CLOSED saying why', async (t) => {
  const { echo, world, etl, port } = await setup(t)
  const client = await muxClient(t, port, world.caPem)
  const { stream } = await openAccepted(t, client.conn, etl, 'db')
  await within(echo.waitAccepted(1), 5_000, 'the upstream to accept')
  const failed = errorOf(stream)
  for (const socket of echo.open) socket.resetAndDestroy()
  const err = await within(failed, 5_000, 'the RESET')
  t.equal(err.code, 'ECONNRESET')
  t.equal(err.reason, 'ERR_SESSION_CLOSED')
  t.match(err.message, /session closed: reset/)
})
