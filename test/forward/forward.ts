import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type * as net from 'node:net'
import { Duplex } from 'node:stream'
import * as tls from 'node:tls'
import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { forward, isConnectionReset, type ForwardOptions, type ForwardSession } from '../../src/forward/index.js'
import type { ReadSink } from '../../src/read-buffer/index.js'
import {
  LOOPBACK,
  connect,
  countWrites,
  listenOnce,
  readAll,
  sha256OfStream,
  socketPair,
  readExactly,
  waitClosed,
  writeRandom,
  type Teardown,
} from '../helpers/net.js'
import { within } from '../helpers/until.js'

const MiB = 1024 * 1024

/**
 * client ⇄ a ─forward─ b ⇄ upstream, all loopback TCP. `a` is the accepted end
 * of the client's connection, `b` the dialled end of the upstream's.
 */
interface Rig {
  client: net.Socket
  a: net.Socket
  b: net.Socket
  upstream: net.Socket
  session: ForwardSession
}

async function rig(t: Teardown, options: ForwardOptions = {}, pair: { allowHalfOpen?: boolean } = {}): Promise<Rig> {
  const [client, a] = await socketPair(t, pair)
  const [b, upstream] = await socketPair(t, pair)
  const session = forward(a, b, options)
  return { client, a, b, upstream, session }
}

/** Resolves at the socket's EOF, discarding what comes before. */
function eof(socket: net.Socket): Promise<unknown> {
  // An empty stream emits 'end' without being read.
  if (socket.readableEnded) return Promise.resolve()
  const ended = once(socket, 'end')
  socket.resume()
  return ended
}

/** A tls.Server on 127.0.0.1 with the fixture certificate; `accepted` is its first secure connection. */
async function listenTls(t: Teardown): Promise<{ server: tls.Server; cert: Buffer; accepted: Promise<[tls.TLSSocket]> }> {
  const fixtures = new URL('../fixtures/forward/', import.meta.url)
  const cert = readFileSync(new URL('cert.pem', fixtures))
  const key = readFileSync(new URL('key.pem', fixtures))
  const server = tls.createServer({ cert, key, allowHalfOpen: true })
  t.teardown(() => server.close())
  server.listen({ port: 0, host: LOOPBACK })
  await once(server, 'listening')
  return { server, cert, accepted: once(server, 'secureConnection') as Promise<[tls.TLSSocket]> }
}

/** The test side of a connection may be reset by the forwarder; that is expected. */
function tolerateErrors(...sockets: net.Socket[]): void {
  for (const s of sockets) s.on('error', () => {})
}

t.test('echo through the forwarder, then a clean close both ways', async (t) => {
  const { client, a, b, upstream, session } = await rig(t)
  upstream.pipe(upstream)
  client.write('hello')
  const [first] = (await once(client, 'data')) as [Buffer]
  t.equal(first.toString(), 'hello')
  t.equal(session.bytesAToB, 5, 'live counter a→b')
  t.equal(session.bytesBToA, 5, 'live counter b→a')
  client.end(' world')
  const rest = await readAll(client)
  t.equal(rest.toString(), ' world')
  const result = await session.done
  t.equal(result.reason, 'done')
  t.equal(result.aToB, 11)
  t.equal(result.bToA, 11)
  t.type(result.durationMs, 'number')
  t.notOk(result.error)
  t.ok(a.destroyed && b.destroyed, 'both forwarder sockets are closed')
})

t.test('64 MiB each way at once arrive intact', async (t) => {
  const { client, upstream, session } = await rig(t)
  const [sentUp, sentDown, gotUp, gotDown] = await Promise.all([
    writeRandom(client, 64 * MiB),
    writeRandom(upstream, 64 * MiB),
    sha256OfStream(upstream),
    sha256OfStream(client),
  ])
  t.same(gotUp, sentUp, 'client → upstream')
  t.same(gotDown, sentDown, 'upstream → client')
  const result = await session.done
  t.equal(result.reason, 'done')
  t.equal(result.aToB, 64 * MiB)
  t.equal(result.bToA, 64 * MiB)
})

t.test('half-close client → upstream: the other direction keeps flowing', async (t) => {
  const { client, upstream, session } = await rig(t)
  const upstreamGot = readAll(upstream)
  client.end('query')
  t.equal((await upstreamGot).toString(), 'query', 'upstream sees the request and then EOF')
  t.notOk(upstream.writableEnded, 'upstream can still write')
  const clientGot = sha256OfStream(client)
  const sent = await writeRandom(upstream, 8 * MiB)
  t.same(await clientGot, sent, 'client receives the whole answer after its own FIN')
  const result = await session.done
  t.equal(result.reason, 'done')
  t.equal(result.aToB, 5)
  t.equal(result.bToA, 8 * MiB)
})

t.test('half-close upstream → client: the other direction keeps flowing', async (t) => {
  const { client, upstream, session } = await rig(t)
  const clientGot = readAll(client)
  upstream.end('banner')
  t.equal((await clientGot).toString(), 'banner')
  t.notOk(client.writableEnded)
  const upstreamGot = sha256OfStream(upstream)
  const sent = await writeRandom(client, 8 * MiB)
  t.same(await upstreamGot, sent)
  const result = await session.done
  t.equal(result.reason, 'done')
  t.equal(result.aToB, 8 * MiB)
  t.equal(result.bToA, 6)
})

t.test('sockets created without allowHalfOpen still carry a half-close', async (t) => {
  const { client, upstream, session } = await rig(t, {}, { allowHalfOpen: false })
  // The test's own ends must allow half-open to observe it.
  client.allowHalfOpen = true
  upstream.allowHalfOpen = true
  const upstreamGot = readAll(upstream)
  client.end('q')
  t.equal((await upstreamGot).toString(), 'q')
  const clientGot = readAll(client)
  upstream.end('answer after FIN')
  t.equal((await clientGot).toString(), 'answer after FIN')
  t.equal((await session.done).reason, 'done')
})

t.test('backpressure: a client that stops reading bounds what the forwarder buffers', async (t) => {
  const { client, a, b, upstream, session } = await rig(t)
  client.pause()
  let maxBuffered = 0
  let pausedB = 0
  const buffered = (): number => a.writableLength + a.readableLength + b.writableLength + b.readableLength
  // Buffers grow only when the forwarder writes a chunk it read from b.
  b.on('data', () => {
    maxBuffered = Math.max(maxBuffered, buffered())
  })
  let resumed = false
  let writtenAtStall = 0
  let written = 0
  // Every buffer on the path is full once the forwarder has paused b, its write
  // to a waits for 'drain' and the upstream's own write waits too: nothing
  // moves until the client reads. Either of the last two events may come last.
  const checkStall = (): void => {
    if (resumed || !b.isPaused() || !a.writableNeedDrain || !upstream.writableNeedDrain) return
    resumed = true
    writtenAtStall = written
    client.resume()
  }
  b.on('pause', () => {
    pausedB++
    checkStall()
  })
  const total = 64 * MiB
  const clientGot = sha256OfStream(client)
  const sent = await writeRandom(upstream, total, {
    chunkSize: MiB,
    onWrite: () => {
      written += MiB
      checkStall()
    },
  })
  t.ok(resumed, 'the path stalled while the client did not read')
  t.ok(writtenAtStall < total, `upstream was blocked after ${writtenAtStall / MiB} MiB`)
  t.ok(pausedB > 0, 'the forwarder paused its reader')
  t.ok(maxBuffered < 1 * MiB, `forwarder buffered at most ${maxBuffered} bytes`)
  t.same(await clientGot, sent, 'everything arrives once the client reads')
  client.end()
  const result = await session.done
  t.equal(result.reason, 'done')
  t.equal(result.bToA, total)
})

t.test('idle timeout', async (t) => {
  t.test('fires when nothing moves', async (t) => {
    const { client, upstream, a, b, session } = await rig(t, { idleTimeoutMs: 100 })
    tolerateErrors(client, upstream)
    const started = Date.now()
    const result = await session.done
    t.equal(result.reason, 'idle_timeout')
    t.ok(Date.now() - started >= 90, 'not before the timeout')
    t.ok(a.destroyed && b.destroyed)
    // Closed with FIN: each peer sees a clean EOF.
    await Promise.all([eof(client), eof(upstream)])
  })

  t.test('fires when the client stops reading and every buffer is full', async (t) => {
    const { client, upstream, session } = await rig(t, { idleTimeoutMs: 200 })
    tolerateErrors(client, upstream)
    client.pause()
    // Never finishes: the forwarder closes the path first.
    writeRandom(upstream, 1024 * MiB).catch(() => {})
    const result = await session.done
    t.equal(result.reason, 'idle_timeout')
    t.ok(result.bToA > 0 && result.bToA < 1024 * MiB, `${result.bToA} bytes moved before the stall`)
  })

  t.test('fires when the upstream stops reading and every buffer is full', async (t) => {
    const { client, upstream, session } = await rig(t, { idleTimeoutMs: 200 })
    tolerateErrors(client, upstream)
    upstream.pause()
    writeRandom(client, 1024 * MiB).catch(() => {})
    const result = await session.done
    t.equal(result.reason, 'idle_timeout')
    t.ok(result.aToB > 0 && result.aToB < 1024 * MiB)
  })

  // Only a carries the timer: traffic in either direction must refresh it.
  for (const direction of ['a→b', 'b→a'] as const) {
    t.test(`traffic one way only (${direction}) keeps the session alive`, async (t) => {
      // The manual clock: a loaded machine cannot stretch the 50 ms between writes past the timeout.
      const clock = new ManualClock()
      const { client, upstream, session } = await rig(t, { idleTimeoutMs: 150, clock })
      const [from, to] = direction === 'a→b' ? [client, upstream] : [upstream, client]
      let received = 0
      to.on('data', (chunk: Buffer) => {
        received += chunk.length
      })
      // 12 writes 50 ms apart span 4 idle periods; each byte has crossed before time moves on.
      for (let i = 0; i < 12; i++) {
        from.write('x')
        while (received < i + 1) await once(to, 'data')
        clock.advance(50)
      }
      t.equal(session.bytesAToB + session.bytesBToA, 12)
      client.end()
      upstream.end()
      const result = await session.done
      t.equal(result.reason, 'done', 'not idle_timeout')
      t.equal(received, 12)
    })
  }
})

t.test('maximum lifetime (manual clock)', async (t) => {
  const clock = new ManualClock()
  const { client, upstream, session } = await rig(t, { maxLifetimeMs: 60_000, clock })
  tolerateErrors(client, upstream)
  upstream.pipe(upstream)
  clock.advance(59_999)
  client.write('still alive')
  const [echo] = (await once(client, 'data')) as [Buffer]
  t.equal(echo.toString(), 'still alive')
  clock.advance(1)
  const result = await session.done
  t.equal(result.reason, 'lifetime')
  t.equal(result.durationMs, 60_000, 'duration from the injected clock')
  t.equal(clock.pending, 0, 'no timer left behind')
})

t.test('half-close timeout (manual clock)', async (t) => {
  t.test('the other direction never ends', async (t) => {
    const clock = new ManualClock()
    const { client, upstream, session } = await rig(t, { halfCloseTimeoutMs: 5_000, clock })
    tolerateErrors(client, upstream)
    const upstreamGot = readAll(upstream)
    client.end('bye')
    await upstreamGot
    t.equal(clock.pending, 1, 'timer armed by the first EOF')
    clock.advance(4_999)
    upstream.write('late but in time')
    const [late] = (await once(client, 'data')) as [Buffer]
    t.equal(late.toString(), 'late but in time')
    clock.advance(1)
    const result = await session.done
    t.equal(result.reason, 'half_close_timeout')
    t.equal(clock.pending, 0)
  })

  t.test('a clean finish clears the timer', async (t) => {
    const clock = new ManualClock()
    const { client, upstream, session } = await rig(t, { halfCloseTimeoutMs: 5_000, maxLifetimeMs: 60_000, clock })
    upstream.pipe(upstream)
    client.end('x')
    await readAll(client)
    const result = await session.done
    t.equal(result.reason, 'done')
    t.equal(clock.pending, 0)
  })
})

t.test('RST mid-transfer', async (t) => {
  t.test('from the client', async (t) => {
    const { client, a, b, upstream, session } = await rig(t)
    tolerateErrors(upstream)
    const upstreamWrites = writeRandom(upstream, 256 * MiB).then(
      () => 'finished',
      (err: NodeJS.ErrnoException) => err.code,
    )
    await once(client, 'data')
    client.resetAndDestroy()
    const result = await session.done
    t.equal(result.reason, 'reset')
    t.ok(result.error && isConnectionReset({ code: result.error.code }), `first error ${result.error?.code}`)
    t.ok(a.destroyed && b.destroyed, 'both forwarder sockets destroyed')
    const upstreamSaw = await upstreamWrites
    t.ok(isConnectionReset({ code: upstreamSaw }), `the reset is passed on to the upstream (${upstreamSaw})`)
    await waitClosed(upstream)
  })

  t.test('from the upstream', async (t) => {
    const { client, a, b, upstream, session } = await rig(t)
    tolerateErrors(client)
    const clientWrites = writeRandom(client, 256 * MiB).then(
      () => 'finished',
      (err: NodeJS.ErrnoException) => err.code,
    )
    await once(upstream, 'data')
    upstream.resetAndDestroy()
    const result = await session.done
    t.equal(result.reason, 'reset')
    t.ok(result.error && isConnectionReset({ code: result.error.code }), `first error ${result.error?.code}`)
    t.ok(a.destroyed && b.destroyed)
    const clientSaw = await clientWrites
    t.ok(isConnectionReset({ code: clientSaw }), `the reset is passed on to the client (${clientSaw})`)
    await waitClosed(client)
  })

  t.test('while idle', async (t) => {
    const { client, upstream, session } = await rig(t)
    const clientError = once(client, 'error') as Promise<[NodeJS.ErrnoException]>
    upstream.resetAndDestroy()
    const result = await session.done
    t.equal(result.reason, 'reset')
    t.equal(result.error?.code, 'ECONNRESET')
    const [err] = await clientError
    t.equal(err.code, 'ECONNRESET', 'the client sees a reset, not a clean EOF')
  })

  t.test('after a half-close, into a peer that has gone (EPIPE/ECONNRESET)', async (t) => {
    const { client, upstream, session } = await rig(t)
    tolerateErrors(upstream)
    // The client closes completely; its FIN looks like a half-close to the forwarder.
    client.destroy()
    await eof(upstream)
    // The kernel answers further data with RST.
    writeRandom(upstream, 64 * MiB).catch(() => {})
    const result = await session.done
    t.equal(result.reason, 'reset')
    t.ok(result.error && isConnectionReset({ code: result.error.code }), `first error ${result.error?.code}`)
  })
})

t.test('close(reason) destroys both sides and reports the reason once', async (t) => {
  const { client, a, b, upstream, session } = await rig(t)
  tolerateErrors(client, upstream)
  upstream.pipe(upstream)
  client.write('ping')
  await once(client, 'data')
  session.close('revoked:ERR_GRANT_DENIED')
  session.close('shutdown')
  const result = await session.done
  t.equal(result.reason, 'revoked:ERR_GRANT_DENIED')
  t.equal(result.aToB, 4)
  t.equal(result.bToA, 4)
  t.ok(a.destroyed && b.destroyed)
  await Promise.all([eof(client), eof(upstream)])
  session.close('after the end')
  t.equal((await session.done).reason, 'revoked:ERR_GRANT_DENIED')
})

t.test('end(reason): graceful drain', async (t) => {
  const { client, upstream, session } = await rig(t)
  // Each peer closes its side when it sees ours closed.
  const clientEnded = eof(client).then(() => client.end())
  const upstreamEnded = eof(upstream).then(() => upstream.end())
  upstream.write('last words')
  const [last] = (await once(client, 'data')) as [Buffer]
  t.equal(last.toString(), 'last words')
  session.end('shutdown')
  session.end('ignored')
  await Promise.all([clientEnded, upstreamEnded])
  const result = await session.done
  t.equal(result.reason, 'shutdown')
  t.equal(result.bToA, 10)
})

t.test('end() then a peer that never closes: half-close timeout', async (t) => {
  const clock = new ManualClock()
  const { client, upstream, session } = await rig(t, { clock, halfCloseTimeoutMs: 1_000 })
  tolerateErrors(client, upstream)
  session.end('shutdown')
  await Promise.all([eof(client), eof(upstream)])
  clock.advance(1_000)
  t.equal((await session.done).reason, 'half_close_timeout')
})

t.test('initialAToB is delivered first and exactly', async (t) => {
  const { client, upstream, session } = await rig(t, { initialAToB: Buffer.from('PREFACE|') })
  const upstreamGot = readAll(upstream)
  client.end('rest')
  t.equal((await upstreamGot).toString(), 'PREFACE|rest')
  upstream.end()
  const result = await session.done
  t.equal(result.aToB, 12)
  t.equal(result.reason, 'done')
})

t.test('a socket the caller paused and unshifted into is resumed, unshifted bytes first', async (t) => {
  const [client, a] = await socketPair(t)
  const [b, upstream] = await socketPair(t)
  client.write('HEADERpayload')
  // A handshake reader: consume exactly 6 bytes, push the rest back.
  const [chunk] = (await once(a, 'data')) as [Buffer]
  a.pause()
  t.equal(chunk.subarray(0, 6).toString(), 'HEADER')
  a.unshift(chunk.subarray(6))
  const session = forward(a, b)
  const upstreamGot = readAll(upstream)
  client.end('!')
  t.equal((await upstreamGot).toString(), 'payload!')
  upstream.end()
  t.equal((await session.done).aToB, 8)
})

t.test('a socket destroyed before forward() ends the session as a reset', async (t) => {
  const [, a] = await socketPair(t)
  const [b, upstream] = await socketPair(t)
  tolerateErrors(upstream)
  a.destroy()
  await waitClosed(a)
  const result = await forward(a, b).done
  t.equal(result.reason, 'reset')
  t.ok(b.destroyed)
})

t.test('EOF consumed before forward() is carried through', async (t) => {
  const [client, a] = await socketPair(t)
  const [b, upstream] = await socketPair(t)
  client.end()
  a.resume()
  await once(a, 'end')
  a.pause()
  const session = forward(a, b)
  await eof(upstream)
  upstream.end('late answer')
  t.equal((await readAll(client)).toString(), 'late answer')
  t.equal((await session.done).reason, 'done')
})

t.test('TLS on the client side: echo, bulk and half-close through TLSSocket', async (t) => {
  const fixtures = new URL('../fixtures/forward/', import.meta.url)
  const cert = readFileSync(new URL('cert.pem', fixtures))
  const key = readFileSync(new URL('key.pem', fixtures))
  const sockets: net.Socket[] = []
  t.teardown(() => {
    for (const s of sockets) s.destroy()
  })
  const variants = [
    { serverHalfOpen: true, clientEndsFirst: true },
    { serverHalfOpen: true, clientEndsFirst: false },
    // tls.createServer's default: forward() must turn half-open on itself.
    { serverHalfOpen: false, clientEndsFirst: true },
    { serverHalfOpen: false, clientEndsFirst: false },
  ]
  for (const { serverHalfOpen, clientEndsFirst } of variants) t.test(`allowHalfOpen ${serverHalfOpen}, ${clientEndsFirst ? 'client' : 'upstream'} half-closes first`, async (t) => {
    const server = tls.createServer({ cert, key, allowHalfOpen: serverHalfOpen })
    t.teardown(() => server.close())
    server.listen({ port: 0, host: LOOPBACK })
    await once(server, 'listening')
    const port = (server.address() as net.AddressInfo).port
    const accepted = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>
    const client = tls.connect({ host: LOOPBACK, port, ca: cert })
    // Read when 'end' is emitted; tls.connect's typings lack the option.
    client.allowHalfOpen = true
    sockets.push(client)
    await once(client, 'secureConnect')
    const [a] = await accepted
    sockets.push(a)
    const [b, upstream] = await socketPair(t)
    const session = forward(a, b)
    if (clientEndsFirst) {
      const upstreamGot = sha256OfStream(upstream)
      const sent = await writeRandom(client, 8 * MiB)
      t.same(await upstreamGot, sent, 'client → upstream over TLS, then close_notify')
      const clientGot = sha256OfStream(client)
      const answer = await writeRandom(upstream, 8 * MiB)
      t.same(await clientGot, answer, 'answer after the client half-closed')
    } else {
      const clientGot = sha256OfStream(client)
      const sent = await writeRandom(upstream, 8 * MiB)
      t.same(await clientGot, sent, 'upstream → client over TLS, then EOF')
      const upstreamGot = sha256OfStream(upstream)
      const answer = await writeRandom(client, 8 * MiB)
      t.same(await upstreamGot, answer, 'client keeps sending after the upstream half-closed')
    }
    const result = await session.done
    t.equal(result.reason, 'done')
    t.equal(result.aToB, 8 * MiB)
    t.equal(result.bToA, 8 * MiB)
  })
})

t.test('a TLS peer that vanishes mid-stream is a reset', async (t) => {
  const fixtures = new URL('../fixtures/forward/', import.meta.url)
  const cert = readFileSync(new URL('cert.pem', fixtures))
  const key = readFileSync(new URL('key.pem', fixtures))
  const [rawClient, rawA] = await socketPair(t)
  const a = new tls.TLSSocket(rawA, { isServer: true, cert, key })
  const client = tls.connect({ socket: rawClient, ca: cert, checkServerIdentity: () => undefined })
  t.teardown(() => {
    a.destroy()
    client.destroy()
  })
  await once(client, 'secureConnect')
  const [b, upstream] = await socketPair(t)
  // The test's TLS client reads from a handle reset under it (EINVAL).
  tolerateErrors(upstream, client)
  const session = forward(a, b)
  writeRandom(upstream, 256 * MiB).catch(() => {})
  await once(client, 'data')
  rawClient.resetAndDestroy()
  const result = await session.done
  t.equal(result.reason, 'reset')
  t.ok(a.destroyed && b.destroyed)
})

t.test('forward() refuses the same socket twice', async (t) => {
  const [client] = await socketPair(t)
  t.throws(() => forward(client, client), TypeError)
})

t.test('a fault that is not a reset (TLS garbage) is reported as error', async (t) => {
  // A tls.Server socket: a bare `new TLSSocket(s, { isServer: true })` never
  // emits TLS errors (Node releases control to the Server only).
  const { server, cert, accepted } = await listenTls(t)
  const rawClient = await connect(t, (server.address() as net.AddressInfo).port)
  const client = tls.connect({ socket: rawClient, ca: cert, checkServerIdentity: () => undefined })
  t.teardown(() => client.destroy())
  tolerateErrors(client, rawClient)
  await once(client, 'secureConnect')
  const [a] = await accepted
  t.teardown(() => a.destroy())
  const [b, upstream] = await socketPair(t)
  const session = forward(a, b)
  // A TLS record header announcing application data, then nonsense.
  rawClient.write(Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x40]), Buffer.alloc(64, 0xab)]))
  const result = await session.done
  t.equal(result.reason, 'error')
  t.match(result.error?.code, /^ERR_SSL_/, `TLS error ${result.error?.code}`)
  t.notOk(isConnectionReset({ code: result.error?.code }))
  await eof(upstream)
  t.pass('the upstream is closed with FIN, not reset')
})

t.test('durationMs comes from the injected now(); noDelay false is accepted', async (t) => {
  let time = 1_000
  const { client, upstream, session } = await rig(t, { now: () => (time += 250), noDelay: false })
  upstream.pipe(upstream)
  client.end('x')
  t.equal((await readAll(client)).toString(), 'x')
  const result = await session.done
  t.equal(result.durationMs, 250)
  t.equal(result.reason, 'done')
})

t.test('an upstream reset reaches a TLS client as a close (TLS sockets cannot be reset)', async (t) => {
  const { server, cert, accepted } = await listenTls(t)
  const client = tls.connect({ host: LOOPBACK, port: (server.address() as net.AddressInfo).port, ca: cert })
  t.teardown(() => client.destroy())
  tolerateErrors(client)
  await once(client, 'secureConnect')
  const [a] = await accepted
  t.teardown(() => a.destroy())
  const [b, upstream] = await socketPair(t)
  const session = forward(a, b)
  upstream.resetAndDestroy()
  const result = await session.done
  t.equal(result.reason, 'reset')
  await waitClosed(client)
  t.ok(a.destroyed)
})

/** A lending source like a multiplexed stream: the test hands its reads to the session's sink directly. */
class Lender extends Duplex {
  sink: ReadSink | undefined
  constructor() {
    super({ allowHalfOpen: true })
  }
  setReadSink(sink: ReadSink): void {
    this.sink = sink
  }
  releaseReadBuffer(): void {}
  reclaimReadBuffers(): void {}
  setNoDelay(): this {
    return this
  }
  setTimeout(): this {
    return this
  }
  override _read(): void {}
  override _write(_chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    callback()
  }
}

t.test('record-sized reads from a lending source: the first of a turn goes at once, the rest are combined, and all go before a reset ends the session', async (t) => {
  const { accepted, port } = await listenOnce(t)
  const far = await connect(t, port)
  far.on('error', () => {})
  const up = await accepted
  const writes = countWrites(up)
  const src = new Lender()
  src.on('error', () => {})
  const session = forward(src, up)
  let got = Buffer.alloc(0)
  far.on('data', (d: Buffer) => (got = Buffer.concat([got, d])))
  const records = [Buffer.alloc(16 * 1024, 1), Buffer.alloc(16 * 1024, 2), Buffer.alloc(16 * 1024, 3)]
  src.sink!.read(src, records[0]!)
  t.equal(writes(), 1, 'the first record of the turn is written at once')
  src.sink!.read(src, records[1]!)
  src.sink!.read(src, records[2]!)
  t.equal(writes(), 1, 'the rest of the turn waits to be combined')
  // The peer resets the stream in the same turn (its RESET came in the same read).
  src.destroy(Object.assign(new Error('reset by peer'), { code: 'ECONNRESET' }))
  const result = await within(session.done, 5_000, 'session end')
  t.equal(result.reason, 'reset')
  t.equal(writes(), 2, 'the combined records went out in one write before the reset')
  await within(
    new Promise<void>((resolve) => {
      if (far.readableEnded || far.destroyed) return resolve()
      far.once('end', resolve)
      far.once('close', resolve)
    }),
    5_000,
    'EOF or a reset at the far end',
  )
  t.ok(got.equals(Buffer.concat(records)), `the far end got every byte before the reset (${got.length} of ${3 * 16 * 1024})`)
  t.equal(result.aToB, 3 * 16 * 1024, 'counted')
})

t.test('a tap sees each direction\'s chunks until it says no more', async (t) => {
  const seen = { a: [] as string[], b: [] as string[] }
  const tap = {
    aToB: (c: Buffer) => (seen.a.push(c.toString()), seen.a.length < 2),
    bToA: (c: Buffer) => (seen.b.push(c.toString()), true),
  }
  const { client, upstream } = await rig(t, { tap, initialAToB: Buffer.from('hello') })
  t.equal((await readExactly(upstream, 5)).toString(), 'hello')
  client.write('one')
  t.equal((await readExactly(upstream, 3)).toString(), 'one')
  client.write('two')
  t.equal((await readExactly(upstream, 3)).toString(), 'two')
  upstream.write('back')
  t.equal((await readExactly(client, 4)).toString(), 'back')
  t.same(seen, { a: ['hello', 'one'], b: ['back'] }, 'the initial bytes first; nothing after false')
})

t.test('closeAt: b\'s bytes go up to the point, then the last words, then EOF; a\'s bytes stop at once', async (t) => {
  const clock = new ManualClock()
  const { client, upstream, session } = await rig(t, { clock })
  upstream.write('AAAA')
  t.equal((await readExactly(client, 4)).toString(), 'AAAA')
  const upstreamGot: Buffer[] = []
  upstream.on('data', (c: Buffer) => upstreamGot.push(c))
  session.closeAt('revoked:ERR_GRANT_DENIED', 'ERR_GRANT_DENIED', {
    until: (c) => (c.includes('|') ? c.indexOf('|') + 1 : -1),
    last: Buffer.from('<bye>'),
    waitMs: 1_000,
  })
  client.write('dropped')
  upstream.write('BB')
  t.equal((await readExactly(client, 2)).toString(), 'BB', 'no point yet: all of it goes')
  upstream.write('C|next message')
  const reading = readAll(client)
  client.resume()
  const rest = await reading
  t.equal(rest.toString(), 'C|<bye>', 'cut at the point, then the last words and EOF')
  client.end()
  const result = await session.done
  t.equal(result.reason, 'revoked:ERR_GRANT_DENIED')
  t.equal(Buffer.concat(upstreamGot).toString(), '', 'nothing from a after closeAt reached b')
})

t.test('closeAt without a point says the last words at once; a point that never comes closes without them', async (t) => {
  const clock = new ManualClock()
  const now = await rig(t, { clock })
  now.session.closeAt('revoked:ERR_TOKEN_EXPIRED', 'ERR_TOKEN_EXPIRED', { last: Buffer.from('<bye>'), waitMs: 1_000 })
  t.equal((await readAll(now.client)).toString(), '<bye>')
  // The peer never closes: after waitMs the session ends anyway.
  clock.advance(1_000)
  t.equal((await now.session.done).reason, 'revoked:ERR_TOKEN_EXPIRED')

  const never = await rig(t, { clock })
  never.upstream.write('AAAA')
  t.equal((await readExactly(never.client, 4)).toString(), 'AAAA')
  never.session.closeAt('revoked:ERR_TOKEN_EXPIRED', 'ERR_TOKEN_EXPIRED', { until: () => -1, last: Buffer.from('<bye>'), waitMs: 1_000 })
  const reading = readAll(never.client)
  never.client.resume()
  clock.advance(1_000)
  t.equal((await reading).toString(), '', 'no last words mid-message')
  t.equal((await never.session.done).reason, 'revoked:ERR_TOKEN_EXPIRED')
})

t.test('closeAt on a session whose a has ended still closes it, without last words', async (t) => {
  const clock = new ManualClock()
  const { client, upstream, session } = await rig(t, { clock })
  const reading = readAll(client)
  upstream.end('bye')
  t.equal((await reading).toString(), 'bye', 'b\'s EOF ended a')
  session.closeAt('revoked:ERR_GRANT_DENIED', 'ERR_GRANT_DENIED', { last: Buffer.from('<late>'), waitMs: 1_000 })
  t.equal((await session.done).reason, 'revoked:ERR_GRANT_DENIED')
})
