import { once } from 'node:events'
import * as net from 'node:net'
import { Duplex } from 'node:stream'
import * as tls from 'node:tls'
import { createHash, randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { ManualClock } from '../../src/clock.js'
import { dialTcp, forward, type ForwardSession } from '../../src/forward/index.js'
import {
  adoptAccepted,
  forgetReadBuffers,
  hasReadBuffer,
  noDelayFlag,
  readingSocket,
  readNumber,
  reclaimReadBuffers,
  releaseReadBuffer,
  setReadSink,
  useReadBuffer,
} from '../../src/read-buffer/index.js'
import { LOOPBACK, connect, listen, listenOnce, readAll, sha256OfStream, waitClosed, writeRandom, type Teardown } from '../helpers/net.js'
import { until, within } from '../helpers/until.js'
import { createTestPki } from '../helpers/fake-gateway.js'

const MiB = 1024 * 1024

/** A plain hop like the gateway's: accepted socket adopted, upstream dialled with dialTcp, forward() between. */
async function hop(t: Teardown, upstreamPort: number): Promise<{ port: number; sessions: ForwardSession[]; a: net.Socket[]; b: net.Socket[] }> {
  const sessions: ForwardSession[] = []
  const a: net.Socket[] = []
  const b: net.Socket[] = []
  const { port } = await listen(
    t,
    (accepted) => {
      const client = adoptAccepted(accepted)
      a.push(client)
      client.on('error', () => {})
      t.teardown(() => client.destroy())
      void dialTcp(LOOPBACK, upstreamPort, { timeoutMs: 2_000 }).then((upstream) => {
        b.push(upstream)
        t.teardown(() => upstream.destroy())
        sessions.push(forward(client, upstream))
      })
    },
    { pauseOnConnect: true },
  )
  return { port, sessions, a, b }
}

/**
 * Writes 32 MiB from `from` while `to` reads nothing until the hop's socket
 * `pendingOn` has a write left pending, then lets `to` read; asserts the bytes
 * arrived intact.
 */
async function transferWhileHeldBack(t: Test, from: net.Socket, to: net.Socket, pendingOn: net.Socket, chunkSize: number, what: string): Promise<void> {
  const got = sha256OfStream(to)
  to.pause()
  const sending = writeRandom(from, 32 * MiB, { chunkSize })
  await until(() => pendingOn.writableLength > 0, 10_000, `a pending write (${what})`)
  to.resume()
  const sent = await within(sending, 30_000, what)
  t.same(await within(got, 30_000, `${what}: digest`), sent, `${what} intact`)
}

t.test('32 MiB each way arrive intact through reused buffers while the far reader holds back', async (t) => {
  // Each far end reads nothing more until the hop has a write left pending on
  // the buffer it read into: that buffer must not take the next read.
  const upstream = await listenOnce(t, { pauseOnConnect: true })
  const { port, sessions, a, b } = await hop(t, upstream.port)
  const client = await connect(t, port)
  const far = await upstream.accepted
  await until(() => sessions.length === 1, 20_000, 'session')
  t.ok(hasReadBuffer(a[0]), 'the accepted socket reads into reused buffers')
  t.ok(hasReadBuffer(b[0]), 'the dialled socket reads into reused buffers')

  await transferWhileHeldBack(t, client, far, b[0]!, 100_000, 'client → upstream')
  await transferWhileHeldBack(t, far, client, a[0]!, 70_000, 'upstream → client')
  const result = await within(sessions[0]!.done, 5_000, 'session end')
  t.equal(result.reason, 'done')
  t.equal(result.aToB, 32 * MiB)
  t.equal(result.bToA, 32 * MiB)
})

/** Writes `total` random bytes in `size`-byte writes, one per event-loop turn, so the far side reads them one by one. */
async function trickle(stream: net.Socket, total: number, size: number): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256')
  for (let sent = 0; sent < total; sent += size) {
    const chunk = randomBytes(Math.min(size, total - sent))
    hash.update(chunk)
    if (!stream.write(chunk)) await once(stream, 'drain')
    else await new Promise<void>((resolve) => setImmediate(resolve))
  }
  stream.end()
  return { sha256: hash.digest('hex'), bytes: total }
}

t.test('small reads arriving while a write of an earlier one is still pending do not overwrite it', async (t) => {
  // A pending write below the high-water mark does not pause the reader, so
  // the next read must go to a new buffer.
  const upstream = await listenOnce(t, { pauseOnConnect: true })
  const { port, sessions, b } = await hop(t, upstream.port)
  const client = await connect(t, port)
  const far = await upstream.accepted
  await until(() => sessions.length === 1, 20_000, 'session')
  const got = sha256OfStream(far)
  far.pause()
  const sent = trickle(client, 12 * MiB, 3_000)
  // Several small reads queued behind a write the kernel took only part of.
  await until(() => b[0]!.writableLength > 3 * 3_000, 20_000, 'reads queued behind a pending write towards the upstream')
  far.resume()
  t.same(await within(got, 30_000, 'upstream digest'), await sent, 'intact')
})

/** A Duplex with socket manners that keeps every chunk written to it, as a multiplexed stream's connection may. */
class Keeper extends Duplex {
  readonly kept: Buffer[] = []
  readonly finished: Promise<void>
  #done!: () => void
  constructor() {
    super({ allowHalfOpen: true })
    this.finished = new Promise((resolve) => (this.#done = resolve))
  }
  setNoDelay(): this {
    return this
  }
  setTimeout(): this {
    return this
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.kept.push(chunk)
    callback()
  }
  override _final(callback: () => void): void {
    this.#done()
    this.push(null)
    callback()
  }
}

t.test('a destination that keeps the chunks it was given (not a socket) never sees them overwritten', async (t) => {
  const { server, accepted, port } = await listenOnce(t, { pauseOnConnect: true })
  const client = await connect(t, port)
  const a = adoptAccepted(await accepted)
  t.ok(hasReadBuffer(a))
  t.teardown(() => a.destroy())
  const keeper = new Keeper()
  const session = forward(a, keeper)
  const sent = await writeRandom(client, 8 * MiB, { chunkSize: 64 * 1024 })
  await within(keeper.finished, 10_000, 'FIN through the keeper')
  const hash = createHash('sha256')
  let bytes = 0
  for (const chunk of keeper.kept) {
    hash.update(chunk)
    bytes += chunk.length
  }
  t.same({ sha256: hash.digest('hex'), bytes }, sent, 'every kept chunk still holds what was read')
  session.close('test')
  server.close()
})

t.test('bytes a dialled socket read before forward() attached come first, in order', async (t) => {
  const { port: upstreamPort } = await listen(t, (s) => {
    s.on('error', () => {})
    s.write('banner\n')
    s.on('data', (d: Buffer) => s.write(d))
    s.on('end', () => s.end())
  })
  const b = await dialTcp(LOOPBACK, upstreamPort, { timeoutMs: 2_000 })
  t.teardown(() => b.destroy())
  t.ok(hasReadBuffer(b))
  await until(() => b.readableLength > 0, 20_000, 'the banner buffered in the socket')
  const [client, a] = await new Promise<[net.Socket, net.Socket]>((resolve) => {
    void listenOnce(t).then(async ({ port, accepted }) => resolve([await connect(t, port), await accepted]))
  })
  forward(a, b)
  client.end('hello\n')
  t.equal((await within(readAll(client), 5_000, 'client EOF')).toString(), 'banner\nhello\n')
})

t.test('bytes buffered before forward() attached come first, then the rest, in order, while the client holds back', async (t) => {
  const pattern = Buffer.alloc(32 * MiB)
  for (let i = 0; i < pattern.length; i += 4) pattern.writeUInt32BE(i / 4, i)
  const { port: upstreamPort } = await listen(t, (s) => {
    s.on('error', () => {})
    s.end(pattern)
  })
  const b = await dialTcp(LOOPBACK, upstreamPort, { timeoutMs: 2_000 })
  t.teardown(() => b.destroy())
  // The socket's Readable is full and reading has stopped: the rest waits in the kernel.
  await until(() => b.readableLength >= b.readableHighWaterMark, 20_000, 'the Readable full before the session')
  const { port, accepted } = await listenOnce(t)
  const client = await connect(t, port)
  const a = await accepted
  const got = readAll(client)
  client.pause()
  forward(a, b)
  await until(() => a.writableLength > 0, 10_000, 'writes towards the client held back')
  client.resume()
  const received = await within(got, 20_000, 'everything at the client')
  t.equal(received.length, pattern.length)
  t.ok(received.equals(pattern), 'the buffered bytes first, then the rest, in order')
})

t.test('a reading socket nobody forwards behaves like any socket: data events, EOF', async (t) => {
  const { port } = await listen(t, (s) => {
    s.on('error', () => {})
    s.end(Buffer.alloc(200_000, 7))
  })
  const socket = readingSocket({ allowHalfOpen: true })
  t.teardown(() => socket.destroy())
  socket.connect({ host: LOOPBACK, port })
  const got = await within(readAll(socket), 5_000, 'EOF')
  t.equal(got.length, 200_000)
  t.ok(got.every((byte) => byte === 7))
})

t.test('adoptAccepted leaves anything but a fresh, paused plain TCP socket as it is', async (t) => {
  const flowing = await listenOnce(t)
  await connect(t, flowing.port)
  const notPaused = await flowing.accepted
  t.equal(adoptAccepted(notPaused), notPaused, 'accepted without pauseOnConnect')

  const paused = await listenOnce(t, { pauseOnConnect: true, noDelay: true })
  await connect(t, paused.port)
  const socket = await paused.accepted
  const adopted = adoptAccepted(socket)
  t.not(adopted, socket, 'a fresh paused socket is adopted')
  t.equal(adoptAccepted(adopted), adopted, 'adopting twice changes nothing')
  t.equal(noDelayFlag(adopted), true, "the listener's noDelay moves with the handle (Node internal flag)")
  adopted.destroy()

  const dialled = await connect(t, paused.port)
  dialled.pause()
  t.equal(adoptAccepted(dialled), dialled, 'a socket no listener accepted')

  const pki = await createTestPki()
  const server = tls.createServer({ key: pki.keyPem, cert: pki.certPem, pauseOnConnect: true })
  const secure = new Promise<tls.TLSSocket>((resolve) => server.once('secureConnection', resolve))
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  t.teardown(() => server.close())
  const tlsClient = tls.connect({ host: LOOPBACK, port: (server.address() as net.AddressInfo).port, ca: pki.caCertPem, servername: 'localhost' })
  t.teardown(() => tlsClient.destroy())
  tlsClient.on('error', () => {})
  const tlsSocket = await secure
  t.teardown(() => tlsSocket.destroy())
  t.equal(adoptAccepted(tlsSocket), tlsSocket, 'a TLS socket')
})

t.test("an adopted socket still counts as the listener's connection: close() waits for it", async (t) => {
  const { server, accepted, port } = await listenOnce(t, { pauseOnConnect: true })
  const client = await connect(t, port)
  const adopted = adoptAccepted(await accepted)
  t.teardown(() => adopted.destroy())
  const count = await new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
  t.equal(count, 1)
  let closed = false
  server.close(() => {
    closed = true
  })
  adopted.resume()
  client.end('bye')
  t.equal((await within(readAll(adopted), 5_000, 'EOF on the adopted socket')).toString(), 'bye')
  t.equal(closed, false, 'the listener waits while the adopted socket is open')
  adopted.end()
  await waitClosed(adopted)
  await until(() => closed, 20_000, 'server close')
  t.pass('the listener closed once the adopted socket did')
})

t.test('a TLS socket a tls.Server accepted reads into reused buffers too (useReadBuffer): 32 MiB each way intact while the far reader holds back', async (t) => {
  const pki = await createTestPki()
  const server = tls.createServer({ key: pki.keyPem, cert: pki.certPem, allowHalfOpen: true })
  const secure = new Promise<tls.TLSSocket>((resolve) => server.once('secureConnection', resolve))
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  t.teardown(() => server.close())
  const client = tls.connect({ host: LOOPBACK, port: (server.address() as net.AddressInfo).port, ca: pki.caCertPem, servername: 'localhost' })
  t.teardown(() => client.destroy())
  await once(client, 'secureConnect')
  const a = await secure
  t.teardown(() => a.destroy())
  t.equal(hasReadBuffer(a), false, 'a tls.Server socket has no reused buffers of its own')
  t.equal(useReadBuffer(a, 16 * 1024), true, 'given them')
  t.ok(hasReadBuffer(a))
  t.equal(useReadBuffer(a), false, 'a second time changes nothing')

  const upstream = await listenOnce(t, { pauseOnConnect: true })
  const b = await dialTcp(LOOPBACK, upstream.port, { timeoutMs: 2_000 })
  t.teardown(() => b.destroy())
  const far = await upstream.accepted
  const session = forward(a, b)
  // Released buffers are reused once the writer holds nothing: a wrong reuse shows as a wrong digest.
  await transferWhileHeldBack(t, client, far, b, 100_000, 'TLS client → upstream')
  await transferWhileHeldBack(t, far, client, a, 70_000, 'upstream → TLS client')
  const result = await within(session.done, 5_000, 'session end')
  t.equal(result.aToB, 32 * MiB)
  t.equal(result.bToA, 32 * MiB)

  const gone = new net.Socket()
  gone.destroy()
  t.equal(useReadBuffer(gone), false, 'a destroyed socket')
})

/**
 * A socket reading into reused buffers with a scripted sink: `step(i, from)`
 * runs inside read `i` (from 1). Each read is one client write, sent only
 * after the previous one was read. Returns the buffers the reads came in.
 */
async function scriptedReads(t: Test, steps: ((from: net.Socket) => void)[]): Promise<{ buffers: ArrayBufferLike[]; chunks: Buffer[] }> {
  const { server, accepted, port } = await listenOnce(t, { pauseOnConnect: true })
  const client = await connect(t, port)
  const socket = adoptAccepted(await accepted)
  t.teardown(() => socket.destroy())
  server.close()
  const buffers: ArrayBufferLike[] = []
  const chunks: Buffer[] = []
  let wake: (() => void) | undefined
  setReadSink(socket, {
    read(from, chunk) {
      buffers.push(chunk.buffer)
      chunks.push(chunk)
      steps[buffers.length - 1]?.(from as net.Socket)
      wake?.()
    },
  })
  socket.resume()
  for (let i = 0; i < steps.length + 1; i++) {
    const read = new Promise<void>((resolve) => (wake = resolve))
    client.write(Buffer.alloc(100, 65 + i))
    await within(read, 5_000, `read ${i + 1}`)
  }
  return { buffers, chunks }
}

t.test('reclaimed read buffers are reused; the one being read, and ones a holder may still use, are not', async (t) => {
  const plain = await scriptedReads(t, [() => {}, () => {}])
  t.equal(plain.buffers[1], plain.buffers[0], 'nothing released: every read in the same buffer')

  const reused = await scriptedReads(t, [(s) => releaseReadBuffer(s), (s) => reclaimReadBuffers(s), (s) => releaseReadBuffer(s)])
  t.not(reused.buffers[1], reused.buffers[0], 'released: the next read gets another buffer')
  t.equal(reused.buffers[3], reused.buffers[0], 'reclaimed: a later release hands it back')

  // Read 1 is released, reclaimed and released again (another holder) within
  // the same read: it is still held, so it must not come back.
  const within1 = await scriptedReads(t, [
    (s) => {
      releaseReadBuffer(s)
      reclaimReadBuffers(s)
      releaseReadBuffer(s)
    },
    () => {},
  ])
  t.not(within1.buffers[1], within1.buffers[0], 'the buffer being read is not reclaimed under its reader')
  t.equal(within1.chunks[0]!.toString(), 'A'.repeat(100), 'the held chunk is intact')

  // Reads 1 and 2 are released; a reclaim before read 2 frees read 1's buffer only.
  const partial = await scriptedReads(t, [
    (s) => releaseReadBuffer(s),
    (s) => releaseReadBuffer(s),
    (s) => {
      t.equal(readNumber(s), 3, 'reads are numbered from 1')
      reclaimReadBuffers(s, 2)
      releaseReadBuffer(s)
    },
  ])
  t.equal(partial.buffers[3], partial.buffers[0], "read 1's buffer came back")
  t.equal(partial.chunks[1]!.toString(), 'B'.repeat(100), "read 2's chunk, still held, is intact")
  t.notOk(partial.buffers.slice(3).includes(partial.buffers[1]!), "read 2's buffer did not")

  // Released without keep: never reused, even after a reclaim.
  const dropped = await scriptedReads(t, [(s) => releaseReadBuffer(s, false), (s) => reclaimReadBuffers(s), (s) => releaseReadBuffer(s)])
  t.notOk(dropped.buffers.slice(1).includes(dropped.buffers[0]!), 'a buffer released without keep never comes back')
  const both = await scriptedReads(t, [
    (s) => {
      releaseReadBuffer(s)
      releaseReadBuffer(s, false)
    },
    (s) => reclaimReadBuffers(s),
    (s) => releaseReadBuffer(s),
  ])
  t.notOk(both.buffers.slice(1).includes(both.buffers[0]!), 'nor one a second holder released without keep in the same read')

  // Forgotten from read 2 on: read 1's buffer may come back, read 2's may not.
  const forgot = await scriptedReads(t, [
    (s) => releaseReadBuffer(s),
    (s) => releaseReadBuffer(s),
    (s) => {
      forgetReadBuffers(s, 2)
      reclaimReadBuffers(s)
      releaseReadBuffer(s)
    },
  ])
  t.equal(forgot.buffers[3], forgot.buffers[0], 'read 1, not forgotten, came back')
  t.notOk(forgot.buffers.slice(2).includes(forgot.buffers[1]!), 'read 2, forgotten, did not')
})

/** A destination that holds its writes while `hold` is set (as a socket with a slow peer) and records the buffer behind each chunk. */
class Toggle extends Duplex {
  readonly releasesWrittenChunks = true
  hold = false
  readonly buffers: ArrayBufferLike[] = []
  readonly #pending: (() => void)[] = []
  constructor() {
    super({ allowHalfOpen: true })
  }
  setNoDelay(): this {
    return this
  }
  setTimeout(): this {
    return this
  }
  open(): void {
    this.hold = false
    for (const callback of this.#pending.splice(0)) callback()
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.buffers.push(chunk.buffer)
    if (this.hold) this.#pending.push(callback)
    else callback()
  }
}

t.test("forward()'s idle check lets a quiet socket's kept buffers go", async (t) => {
  const { server, accepted, port } = await listenOnce(t, { pauseOnConnect: true })
  const client = await connect(t, port)
  const a = await accepted
  t.teardown(() => a.destroy())
  server.close()
  // Fixed 8 KiB buffers: each 5,000-byte write is one read, above the size forward() copies instead of releasing.
  t.equal(useReadBuffer(a, 8 * 1024), true)
  const clock = new ManualClock()
  const to = new Toggle()
  const session = forward(a, to, { clock, idleTimeoutMs: 4_000 })
  const send = async (byte: number, arrived: () => boolean): Promise<void> => {
    client.write(Buffer.alloc(5_000, byte))
    await within(until(arrived, 20_000, `read ${byte}`), 6_000, `read ${byte}`)
  }
  to.hold = true
  await send(1, () => to.buffers.length === 1) // held: its buffer is released
  to.open()
  await send(2, () => to.buffers.length === 2) // the writer holds nothing: the released buffer is kept as a spare
  t.not(to.buffers[1], to.buffers[0], 'a held read sends the next one to another buffer')
  clock.advance(1_000) // bytes moved since the last sample
  clock.advance(1_000) // a quiet sample: the spare goes
  to.hold = true
  await send(3, () => to.buffers.length === 3) // held again: released
  await send(4, () => to.writableLength === 10_000) // read into the next buffer, queued behind the held write
  to.open()
  await until(() => to.buffers.length === 4, 20_000, 'the queued write')
  t.notOk(to.buffers.slice(3).includes(to.buffers[0]!), 'the spare was let go of while the socket was quiet')
  t.ok(Buffer.from(to.buffers[2]!).subarray(0, 5_000).equals(Buffer.alloc(5_000, 3)), 'the held chunk is intact')
  session.close('test')
})
