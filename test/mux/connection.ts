import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type * as net from 'node:net'
import { Duplex } from 'node:stream'
import * as tls from 'node:tls'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import {
  ALPN_MUX,
  FRAME_HEADER,
  FrameType,
  INITIAL_WINDOW,
  MAX_DATA_PAYLOAD,
  MuxConnection,
  encodeFrame,
  type MuxConnectionOptions,
  type MuxStream,
  type StreamResetError,
} from '../../src/mux/index.js'
import { createDevPki, type DevPki } from '../../src/pki/index.js'
import { LOOPBACK, connect, countWrites, listenOnce, readAll, sha256OfStream, writeRandom } from '../helpers/net.js'
import { forward } from '../../src/forward/index.js'
import { adoptAccepted, hasReadBuffer } from '../../src/read-buffer/index.js'
import { closedStream as closed, errorOf, rawFrame as frame, roundTrip } from '../helpers/mux.js'
import { until, within } from '../helpers/until.js'

const KiB = 1024
const MiB = 1024 * 1024

let pkiPromise: Promise<DevPki> | undefined
/** One dev PKI per file: making one costs a few ms, sharing is harmless. */
function pki(): Promise<DevPki> {
  pkiPromise ??= createDevPki({ hosts: ['localhost', LOOPBACK] })
  return pkiPromise
}

/** A connected TLS pair over 127.0.0.1 negotiating `keyway/2`, both ends half-open capable; destroyed on teardown. */
async function tlsPair(t: Test): Promise<{ clientSocket: tls.TLSSocket; serverSocket: tls.TLSSocket }> {
  const { certPem, keyPem, caCertPem } = await pki()
  const listener = tls.createServer({ cert: certPem, key: keyPem, allowHalfOpen: true, ALPNProtocols: [ALPN_MUX] })
  t.teardown(() => {
    if (listener.listening) listener.close()
  })
  listener.listen({ port: 0, host: LOOPBACK })
  await once(listener, 'listening')
  const accepted = once(listener, 'secureConnection') as Promise<[tls.TLSSocket]>
  // tls.connect honours allowHalfOpen; its types omit it.
  const dial: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: LOOPBACK,
    port: (listener.address() as net.AddressInfo).port,
    ca: caCertPem,
    servername: 'localhost',
    allowHalfOpen: true,
    ALPNProtocols: [ALPN_MUX],
  }
  const clientSocket = tls.connect(dial)
  t.teardown(() => clientSocket.destroy())
  await once(clientSocket, 'secureConnect')
  const [serverSocket] = await accepted
  t.teardown(() => serverSocket.destroy())
  // One connection per pair.
  listener.close()
  if (clientSocket.alpnProtocol !== ALPN_MUX) throw new Error(`negotiated ${String(clientSocket.alpnProtocol)}`)
  if (!clientSocket.allowHalfOpen || !serverSocket.allowHalfOpen) throw new Error('the TLS pair must allow half-open connections')
  return { clientSocket, serverSocket }
}

/** One parsed frame. */
interface Frame {
  type: number
  stream: number
  length: number
  /** Empty for DATA frames when the reader drops DATA payloads. */
  payload: Buffer
}

/** Parses the frames of one direction of a connection from its bytes (a sniffer, or the reader of a raw peer). */
class FrameReader {
  readonly frames: Frame[] = []
  readonly #keepData: boolean
  readonly #header = Buffer.alloc(FRAME_HEADER)
  #fill = 0
  #current: Frame | undefined
  #remaining = 0
  #parts: Buffer[] = []

  constructor(keepData: boolean) {
    this.#keepData = keepData
  }

  feed(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length) {
      if (this.#current === undefined) {
        const n = Math.min(FRAME_HEADER - this.#fill, chunk.length - at)
        chunk.copy(this.#header, this.#fill, at, at + n)
        this.#fill += n
        at += n
        if (this.#fill < FRAME_HEADER) return
        this.#fill = 0
        const length = this.#header.readUIntBE(1, 3)
        this.#current = { type: this.#header[0]!, stream: this.#header.readUInt32BE(4), length, payload: Buffer.alloc(0) }
        this.#remaining = length
        this.#parts = []
        if (length === 0) {
          this.#finish()
          continue
        }
      }
      const n = Math.min(this.#remaining, chunk.length - at)
      if (this.#keepData || this.#current.type !== FrameType.DATA) this.#parts.push(Buffer.from(chunk.subarray(at, at + n)))
      at += n
      this.#remaining -= n
      if (this.#remaining === 0) this.#finish()
    }
  }

  #finish(): void {
    const frame = this.#current!
    frame.payload = Buffer.concat(this.#parts)
    this.frames.push(frame)
    this.#current = undefined
  }

  of(type: number): Frame[] {
    return this.frames.filter((f) => f.type === type)
  }
}

/** A stream the server was offered, with its OPEN payload. */
interface Opened {
  stream: MuxStream
  payload: Buffer
}

/** Hands out values in arrival order; `next()` waits for one. */
class Queue<T> {
  readonly #items: T[] = []
  readonly #waiters: ((value: T) => void)[] = []

  push(value: T): void {
    const waiter = this.#waiters.shift()
    if (waiter) waiter(value)
    else this.#items.push(value)
  }

  next(): Promise<T> {
    const item = this.#items.shift()
    if (item !== undefined) return Promise.resolve(item)
    return new Promise((resolve) => this.#waiters.push(resolve))
  }
}

/** Resolves with what onClose got (at once if it already has). */
function closeWatcher(): { onClose: (error?: KeywayError) => void; closed: Promise<KeywayError | undefined>; calls: () => number } {
  let calls = 0
  let deliver!: (error: KeywayError | undefined) => void
  const closed = new Promise<KeywayError | undefined>((resolve) => {
    deliver = resolve
  })
  return {
    onClose: (error) => {
      calls++
      deliver(error)
    },
    closed,
    calls: () => calls,
  }
}

interface RigOptions {
  /** Replaces the default onOpen (which accepts with `{"session":"ses_<id>","payload":…}` and queues the stream). */
  onOpen?: (stream: MuxStream, payload: Buffer, server: MuxConnection) => void
  server?: Partial<MuxConnectionOptions>
  client?: Partial<MuxConnectionOptions>
}

interface Rig {
  client: MuxConnection
  server: MuxConnection
  clientSocket: tls.TLSSocket
  serverSocket: tls.TLSSocket
  /** Streams the server accepted, in order. */
  opened: Queue<Opened>
  clientClosed: Promise<KeywayError | undefined>
  serverClosed: Promise<KeywayError | undefined>
  clientCloseCalls: () => number
  goaways: [string, string][]
  /** Frames the client sent (seen on the server's socket). */
  toServer: FrameReader
  /** Frames the server sent (seen on the client's socket). */
  toClient: FrameReader
}

/** Every stream of these tests tolerates 'error' (teardown resets what is still open); tests assert errors explicitly. */
function tolerate(stream: MuxStream): MuxStream {
  stream.on('error', () => {})
  return stream
}

/**
 * Feeds every chunk written to `socket` (with write() or end()) to `reader`:
 * the frames one end sent. Sniffed on the writing side because MuxConnection
 * reads its socket into reused buffers, which emit no 'data'.
 */
function tapWrites(socket: tls.TLSSocket, reader: FrameReader): void {
  const write = socket.write as (this: tls.TLSSocket, chunk: Buffer, ...rest: unknown[]) => boolean
  socket.write = function (this: tls.TLSSocket, chunk: Buffer, ...rest: unknown[]): boolean {
    reader.feed(chunk)
    return write.call(this, chunk, ...rest)
  } as typeof socket.write
  const end = socket.end as (this: tls.TLSSocket, ...args: unknown[]) => tls.TLSSocket
  socket.end = function (this: tls.TLSSocket, ...args: unknown[]): tls.TLSSocket {
    if (Buffer.isBuffer(args[0])) reader.feed(args[0])
    return end.apply(this, args)
  } as typeof socket.end
}

/** A client and a server MuxConnection over a real TLS pair, with sniffers on both directions. */
async function rig(t: Test, options: RigOptions = {}): Promise<Rig> {
  const { clientSocket, serverSocket } = await tlsPair(t)
  const opened = new Queue<Opened>()
  const goaways: [string, string][] = []
  const serverWatch = closeWatcher()
  const clientWatch = closeWatcher()
  const toServer = new FrameReader(false)
  const toClient = new FrameReader(false)
  tapWrites(clientSocket, toServer)
  tapWrites(serverSocket, toClient)
  const server: MuxConnection = new MuxConnection(serverSocket, {
    role: 'server',
    onOpen: (stream, given) => {
      tolerate(stream)
      const payload = given ?? Buffer.alloc(0)
      if (options.onOpen) return options.onOpen(stream, payload, server)
      server.accept(stream, Buffer.from(JSON.stringify({ session: `ses_${stream.id}`, payload: payload.toString('utf8') })))
      opened.push({ stream, payload })
    },
    onClose: serverWatch.onClose,
    ...options.server,
  })
  const client = new MuxConnection(clientSocket, {
    role: 'client',
    onGoaway: (code, message) => goaways.push([code, message]),
    onClose: clientWatch.onClose,
    ...options.client,
  })
  t.teardown(() => {
    client.destroy()
    server.destroy()
  })
  return {
    client,
    server,
    clientSocket,
    serverSocket,
    opened,
    clientClosed: clientWatch.closed,
    serverClosed: serverWatch.closed,
    clientCloseCalls: clientWatch.calls,
    goaways,
    toServer,
    toClient,
  }
}

/** Resolves with the ACCEPT body of a client stream; rejects with the refusal. */
function accepted(stream: MuxStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    stream.whenAccepted((err, body) => (err ? reject(err) : resolve(body ?? Buffer.alloc(0))))
  })
}

/** Opens a stream and waits until both ends have it. */
async function openPair(r: Rig, payload = 'pg'): Promise<{ cs: MuxStream; ss: MuxStream; body: Buffer }> {
  const cs = tolerate(r.client.open(Buffer.from(payload)))
  const [{ stream: ss }, body] = await Promise.all([r.opened.next(), accepted(cs)])
  return { cs, ss, body }
}

/** Echoes a server stream back to its client, half-close aware. */
function echo(stream: MuxStream): void {
  stream.pipe(stream)
}

// ---------------------------------------------------------------------------

t.test('open, accept, then 8 MiB each way arrive byte-exact and both streams close cleanly', async (t) => {
  const r = await rig(t)
  const cs = tolerate(r.client.open(Buffer.from('hello pg')))
  t.equal(cs.id, 1, 'the first stream is 1')
  t.equal(r.client.streams, 1)
  const { stream: ss, payload } = await r.opened.next()
  t.equal(payload.toString(), 'hello pg', 'the server got the OPEN payload')
  t.equal(ss.id, 1)
  const body = await accepted(cs)
  t.same(JSON.parse(body.toString()), { session: 'ses_1', payload: 'hello pg' }, 'the client got the ACCEPT body')

  const [up, down, upGot, downGot] = await within(
    Promise.all([writeRandom(cs, 8 * MiB), writeRandom(ss, 8 * MiB), sha256OfStream(ss), sha256OfStream(cs)]),
    30_000,
    '8 MiB each way',
  )
  t.same(upGot, up, 'client → server byte-exact')
  t.same(downGot, down, 'server → client byte-exact')
  await Promise.all([closed(cs), closed(ss)])
  t.equal(cs.errored, null, 'the client stream closed without an error')
  t.equal(ss.errored, null, 'the server stream closed without an error')
  t.equal(r.client.streams, 0, 'the client forgot the stream')
  t.equal(r.server.streams, 0, 'the server forgot the stream')
  t.same(r.toServer.of(FrameType.RESET), [], 'no RESET from the client')
  t.same(r.toClient.of(FrameType.RESET), [], 'no RESET from the server')
  t.ok(r.toServer.of(FrameType.DATA).every((f) => f.length <= MAX_DATA_PAYLOAD), 'no DATA frame over MAX_DATA_PAYLOAD')
  t.ok(r.toClient.of(FrameType.WINDOW).length > 0, 'credit came back with WINDOW frames')
  t.equal(r.client.closed, false, 'the connection stays up')
  t.equal(r.client.usable, true)
})

t.test('200 concurrent streams each echo their own bytes with no cross-talk', async (t) => {
  const r = await rig(t, {
    onOpen: (stream, payload, server) => {
      server.accept(stream, Buffer.from(JSON.stringify({ session: `ses_${stream.id}`, payload: payload.toString() })))
      echo(stream)
    },
  })
  const N = 200
  const results = await within(
    Promise.all(
      Array.from({ length: N }, async (_, i) => {
        // Sizes from 1 byte to 64 KiB; each stream's bytes are its own.
        const data = randomBytes(1 + ((i * 331) % (64 * KiB)))
        const cs = tolerate(r.client.open(Buffer.from(`stream-${i}`)))
        const reply = readAll(cs)
        cs.end(data)
        const body = JSON.parse((await accepted(cs)).toString()) as { session: string; payload: string }
        return { i, data, cs, body, back: await reply }
      }),
    ),
    30_000,
    '200 echoes',
  )
  const ids = new Set<number>()
  let exact = 0
  for (const { i, data, cs, body, back } of results) {
    ids.add(cs.id)
    if (body.payload === `stream-${i}` && body.session === `ses_${cs.id}` && back.equals(data)) exact++
    else t.fail(`stream ${i} (id ${cs.id}): ACCEPT ${JSON.stringify(body)}, ${back.length} of ${data.length} bytes back, equal=${back.equals(data)}`)
  }
  t.equal(exact, N, 'every stream got its own ACCEPT and exactly its own bytes back')
  t.equal(ids.size, N, 'distinct stream ids')
  t.same([...ids].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i + 1), 'ids 1..200 in open order')
  await until(() => r.client.streams === 0 && r.server.streams === 0, 20_000, 'both ends to forget every stream')
  t.same(r.toClient.of(FrameType.RESET), [], 'no RESET')
  t.same(r.toServer.of(FrameType.RESET), [], 'no RESET')
})

t.test('a refused stream: whenAccepted gets the code, the stream is destroyed, the connection goes on', async (t) => {
  let refusals = 0
  const r = await rig(t, {
    onOpen: (stream, payload, server) => {
      if (payload.toString() === 'refuse me') {
        refusals++
        stream.refuse('ERR_GRANT_DENIED', 'no grant for pg')
        return
      }
      server.accept(stream, Buffer.from('{}'))
      echo(stream)
    },
  })
  const cs = r.client.open(Buffer.from('refuse me'))
  const errored = errorOf(cs)
  const err = (await accepted(cs).then(
    () => undefined,
    (e: unknown) => e,
  )) as StreamResetError | undefined
  t.ok(err, 'whenAccepted got an error')
  t.equal(err?.reason, 'ERR_GRANT_DENIED', 'the refusal code')
  t.equal(err?.code, 'ECONNRESET')
  t.equal(err?.message, 'no grant for pg', 'the refusal message')
  t.equal(await errored, err, "the stream was destroyed with the same error")
  await closed(cs)
  t.equal(cs.destroyed, true)
  t.equal(refusals, 1)
  t.equal(r.client.streams, 0, 'the client forgot the refused stream')
  t.equal(r.server.streams, 0, 'the server forgot the refused stream')
  const [reset] = r.toClient.of(FrameType.RESET)
  t.equal(reset?.stream, cs.id, 'the refusal went out as a RESET on the stream')

  const next = tolerate(r.client.open(Buffer.from('pg')))
  await accepted(next)
  t.ok((await roundTrip(next, Buffer.from('still here'))).equals(Buffer.from('still here')), 'a later stream works')
})

t.test('a server without onOpen refuses every stream with ERR_INTERNAL', async (t) => {
  const r = await rig(t, { server: { onOpen: undefined } })
  const cs = tolerate(r.client.open(Buffer.from('pg')))
  const err = (await accepted(cs).catch((e: unknown) => e)) as StreamResetError
  t.equal(err.reason, 'ERR_INTERNAL')
  t.equal(err.code, 'ECONNRESET')
  await closed(cs)
  t.equal(r.server.streams, 0)
})

t.test('half-close: client FIN ends the server reader while server → client bytes keep flowing; both close cleanly', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  const serverRead = readAll(ss)
  const clientRead = readAll(cs)
  cs.end('the request')
  t.equal((await serverRead).toString(), 'the request', "the server reader got the bytes, then 'end'")
  t.equal(ss.readableEnded, true)
  t.equal(cs.destroyed, false, 'the client stream is still open for reading')
  t.equal(ss.destroyed, false, 'the server stream is still open for writing')
  t.equal(r.toServer.of(FrameType.FIN).length, 1, 'the client sent one FIN')

  // After the client's FIN the server goes on writing, well past one window.
  const reply = await writeRandom(ss, 2 * MiB, { end: false, chunkSize: 64 * KiB })
  ss.write('tail')
  ss.end()
  const back = await clientRead
  t.equal(back.length, reply.bytes + 4, 'the client got every byte sent after its FIN')
  t.equal(back.subarray(back.length - 4).toString(), 'tail')
  await Promise.all([closed(cs), closed(ss)])
  t.equal(cs.errored, null, 'client stream: no error')
  t.equal(ss.errored, null, 'server stream: no error')
  t.same(r.toClient.of(FrameType.RESET), [], 'no RESET from the server')
  t.same(r.toServer.of(FrameType.RESET), [], 'no RESET from the client')
  t.equal(r.toClient.of(FrameType.FIN).length, 1, 'the server sent one FIN')
  t.equal(r.client.streams, 0)
  t.equal(r.server.streams, 0)
})

t.test('half-close the other way: server FIN first, client keeps writing', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  const clientRead = readAll(cs)
  const serverRead = readAll(ss)
  ss.end('the banner')
  t.equal((await clientRead).toString(), 'the banner')
  const sent = await writeRandom(cs, 1 * MiB)
  const got = await serverRead
  t.equal(got.length, sent.bytes)
  await Promise.all([closed(cs), closed(ss)])
  t.equal(cs.errored, null)
  t.equal(ss.errored, null)
  t.same(r.toClient.of(FrameType.RESET), [])
  t.same(r.toServer.of(FrameType.RESET), [])
})

t.test('flow control: a paused reader holds at most INITIAL_WINDOW + one write; resuming delivers everything', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r, 'slow')
  // The server never reads ss until told to: its bytes pile up in ss's buffer.
  // Four windows in writes of one DATA frame each, written without waiting.
  const chunks = Array.from({ length: (4 * INITIAL_WINDOW) / MAX_DATA_PAYLOAD }, () => randomBytes(MAX_DATA_PAYLOAD))
  const total = Buffer.concat(chunks)
  const accepted: boolean[] = chunks.map((c) => cs.write(c))
  t.equal(accepted.at(-1), false, 'write() says stop once the window is spent')
  const heldBack = total.length - INITIAL_WINDOW
  t.ok(cs.writableLength >= heldBack, `the client Writable buffers what the window holds back (${cs.writableLength} of ${total.length})`)

  await until(() => ss.readableLength >= INITIAL_WINDOW, 20_000, 'the first window to arrive')
  // Proof that the pipe is flushed: a round trip on another stream of the same connection.
  const other = await openPair(r, 'probe')
  echo(other.ss)
  t.ok((await roundTrip(other.cs, Buffer.from('probe'))).equals(Buffer.from('probe')))
  t.ok(ss.readableLength <= INITIAL_WINDOW, `the paused reader holds ${ss.readableLength} bytes, at most a window`)
  t.ok(cs.writableLength >= heldBack, `the rest waits at the client (${cs.writableLength})`)
  const dataFrames = r.toServer.of(FrameType.DATA).filter((f) => f.stream === cs.id)
  const onWire = dataFrames.reduce((n, f) => n + f.length, 0)
  t.ok(onWire <= INITIAL_WINDOW, `${onWire} bytes went on the wire`)

  cs.end()
  const got = await within(readAll(ss), 10_000, 'the paused stream to deliver everything after resume')
  t.equal(got.length, total.length, 'every byte arrived')
  t.ok(got.equals(total), 'byte-exact')
})

t.test('a stalled stream does not block another stream on the same connection', async (t) => {
  const r = await rig(t)
  const stalled = await openPair(r, 'stalled')
  // Fill the stalled stream's window: its reader never reads.
  for (let sent = 0; sent < 2 * INITIAL_WINDOW; sent += MAX_DATA_PAYLOAD) stalled.cs.write(randomBytes(MAX_DATA_PAYLOAD))
  await until(() => stalled.ss.readableLength >= INITIAL_WINDOW, 20_000, 'the stalled window to fill')

  const live = await openPair(r, 'live')
  const [up, down, upGot, downGot] = await within(
    Promise.all([writeRandom(live.cs, 2 * MiB), writeRandom(live.ss, 2 * MiB), sha256OfStream(live.ss), sha256OfStream(live.cs)]),
    10_000,
    'the live stream to move 2 MiB each way past a stalled one',
  )
  t.same(upGot, up, 'live stream client → server byte-exact')
  t.same(downGot, down, 'live stream server → client byte-exact')
  t.equal(stalled.cs.destroyed, false, 'the stalled stream is untouched')
  t.ok(stalled.ss.readableLength <= INITIAL_WINDOW, 'and still holds no more than its window')
})

t.test('congestion: over maxBuffered the connection holds stream writes and releases them on drain', async (t) => {
  const r = await rig(t, { client: { maxBuffered: 64 * KiB } })
  const { cs, ss } = await openPair(r)
  let sawCongested = false
  const [sent, got] = await within(
    Promise.all([
      writeRandom(cs, 4 * MiB, {
        onWrite: () => {
          sawCongested ||= r.client.congested
        },
      }),
      sha256OfStream(ss),
    ]),
    10_000,
    '4 MiB through a congested connection',
  )
  t.ok(sawCongested, 'the connection reported congestion')
  t.same(got, sent, 'byte-exact')
  t.equal(r.client.congested, false, 'and is no longer congested')
})

// A write larger than the credit is sent in part and the rest waits for WINDOW:
// the receiver enforces the window exactly, so an overrun would be a violation.
for (const scenario of [
  { name: 'one write of two windows', writes: [2 * INITIAL_WINDOW] },
  { name: 'a write of a frame and a bit, when one byte of credit is left', writes: [INITIAL_WINDOW - 1, MAX_DATA_PAYLOAD + 64 * KiB] },
]) {
  t.test(`writes past the credit to a paused reader are held back, not a protocol violation: ${scenario.name}`, async (t) => {
    const r = await rig(t)
    const { cs, ss } = await openPair(r, 'slow')
    const data = randomBytes(scenario.writes.reduce((a, b) => a + b, 0))
    let at = 0
    for (const n of scenario.writes) {
      cs.write(data.subarray(at, at + n))
      at += n
    }
    cs.end()
    // The server reader is paused: wait for the first window (or for the connection to fail).
    await within(until(() => ss.readableLength >= INITIAL_WINDOW - 1 || r.server.closed, 20_000, 'the window'), 6_000, 'window')
    // A round trip on a second stream settles what the server made of the bytes before it.
    const probe = await within(openPair(r, 'probe'), 10_000, 'probe stream').catch((e: unknown) => e)
    const violation = probe instanceof Error || r.server.closed ? await within(r.serverClosed, 2_000, 'the server onClose') : undefined
    t.equal(violation?.message, undefined, 'the server did not fail the connection')
    t.notOk(probe instanceof Error, 'a second stream still opens')
    const got = await within(readAll(ss), 10_000, 'the rest after resume').catch((e: unknown) => e)
    t.ok(Buffer.isBuffer(got) && got.equals(data), 'everything arrives byte-exact once the reader reads')
  })
}

// Congestion clears on 'drain', which needs the socket's buffer to pass its
// high-water mark: a smaller maxBuffered is raised to it.
t.test('maxBuffered below the socket high-water mark: held writes still complete', async (t) => {
  const r = await rig(t, { client: { maxBuffered: 1024 } })
  const { cs, ss } = await openPair(r)
  const received = sha256OfStream(ss)
  const finished = new Promise<void>((resolve) => cs.once('finish', () => resolve()))
  const sent = await writeRandom(cs, 64 * KiB, { chunkSize: 4 * KiB })
  const outcome = await within(Promise.all([finished, received]), 10_000, 'every write callback and the digest').catch((e: unknown) => e)
  t.notOk(outcome instanceof Error, `every write completes (${outcome instanceof Error ? outcome.message : 'ok'})`)
  t.same(Array.isArray(outcome) ? outcome[1] : undefined, sent, 'byte-exact')
  t.equal(r.client.congested, false, 'congestion clears once the socket has flushed')
})

t.test('RESET: the client destroys its stream, the server stream errors ECONNRESET and closes; another stream goes on', async (t) => {
  const r = await rig(t)
  const a = await openPair(r, 'a')
  const b = await openPair(r, 'b')
  echo(b.ss)
  const serverError = errorOf(a.ss)
  const serverClosed = closed(a.ss)
  a.cs.destroy()
  const err = await serverError
  t.equal(err.code, 'ECONNRESET')
  t.equal(err.reason, 'ERR_INTERNAL', 'the default reset reason')
  await serverClosed
  t.pass("the server stream emitted 'close'")
  t.equal(a.cs.errored, null, 'the destroying side has no error of its own')
  const resets = r.toServer.of(FrameType.RESET)
  t.equal(resets.length, 1, 'one RESET')
  t.equal(resets[0]?.stream, a.cs.id)
  t.ok((await roundTrip(b.cs, Buffer.from('b lives'))).equals(Buffer.from('b lives')), 'the other stream still echoes')
  t.equal(r.server.streams, 1, 'only the live stream remains on the server')
  t.equal(r.client.streams, 1, 'only the live stream remains on the client')
  t.same(r.toClient.of(FrameType.RESET), [], 'the server did not echo a RESET back')
})

t.test('RESET: the server resetAndDestroy()s, the client stream errors ECONNRESET and closes', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  t.equal(ss.setNoDelay(true), ss, 'setNoDelay is chainable')
  const clientError = errorOf(cs)
  ss.resetAndDestroy()
  const err = await clientError
  t.equal(err.code, 'ECONNRESET')
  t.equal(err.reason, 'ERR_INTERNAL')
  t.equal(err.message, 'stream reset')
  await closed(cs)
  t.equal(cs.destroyed, true)
  t.equal(r.toClient.of(FrameType.RESET).length, 1)
  t.same(r.toServer.of(FrameType.RESET), [], 'the client did not answer a RESET with one')
})

t.test('setResetReason: the peer error carries the code and message', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  const clientError = errorOf(cs)
  ss.setResetReason('ERR_GRANT_EXPIRED', 'temporary access ended')
  ss.destroy()
  const err = await clientError
  t.equal(err.code, 'ECONNRESET')
  t.equal(err.reason, 'ERR_GRANT_EXPIRED')
  t.equal(err.message, 'temporary access ended')

  const other = await openPair(r)
  const serverError = errorOf(other.ss)
  other.cs.setResetReason('ERR_SHUTTING_DOWN', 'sidecar stopping')
  other.cs.resetAndDestroy()
  const back = await serverError
  t.equal(back.reason, 'ERR_SHUTTING_DOWN', 'the client side can set one too')
  t.equal(back.message, 'sidecar stopping')
})

t.test('connection loss: every client stream errors ECONNRESET / ERR_GATEWAY_UNAVAILABLE; the connection closes', async (t) => {
  const r = await rig(t)
  const pairs = [await openPair(r, 'one'), await openPair(r, 'two'), await openPair(r, 'three')]
  const clientErrors = Promise.all(pairs.map((p) => errorOf(p.cs)))
  const serverErrors = Promise.all(pairs.map((p) => errorOf(p.ss)))
  r.serverSocket.destroy()
  const errs = await within(clientErrors, 5_000, 'client streams to error')
  for (const [i, err] of errs.entries()) {
    t.equal(err.code, 'ECONNRESET', `stream ${i + 1}: ECONNRESET`)
    t.equal(err.reason, 'ERR_GATEWAY_UNAVAILABLE', `stream ${i + 1}: ERR_GATEWAY_UNAVAILABLE`)
  }
  for (const [i, err] of (await serverErrors).entries()) {
    t.equal(err.code, 'ECONNRESET', `server stream ${i + 1} errors too`)
  }
  t.equal(await within(r.clientClosed, 5_000, 'client onClose'), undefined, 'client onClose, without a violation')
  t.equal(await r.serverClosed, undefined, 'server onClose, without a violation')
  t.equal(r.clientCloseCalls(), 1, 'onClose once')
  t.equal(r.client.closed, true)
  t.equal(r.client.usable, false)
  t.equal(r.client.streams, 0)
  t.throws(() => r.client.open(Buffer.from('pg')), { code: 'ERR_GATEWAY_UNAVAILABLE' }, 'no new stream on a closed connection')
  await Promise.all(pairs.map((p) => closed(p.cs)))
  t.ok(pairs.every((p) => p.cs.destroyed), 'every client stream is destroyed')
  r.client.destroy()
  t.equal(r.clientCloseCalls(), 1, 'destroy() after close is harmless')
})

t.test('MuxConnection.destroy() closes the connection and resets the streams on both ends', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  const clientError = errorOf(cs)
  const serverError = errorOf(ss)
  r.client.destroy()
  t.equal((await serverError).reason, 'ERR_GATEWAY_UNAVAILABLE')
  t.equal((await clientError).reason, 'ERR_GATEWAY_UNAVAILABLE')
  t.equal(await r.clientClosed, undefined)
  t.equal(await r.serverClosed, undefined)
  t.equal(r.server.closed, true)
})

t.test('GOAWAY: the client learns it, stops opening streams, and live streams carry on', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  echo(ss)
  t.equal(r.client.usable, true)
  r.server.goaway('ERR_SHUTTING_DOWN', 'draining')
  r.server.goaway('ERR_INTERNAL', 'second call is a no-op')
  await until(() => r.goaways.length > 0, 20_000, 'onGoaway')
  t.same(r.goaways, [['ERR_SHUTTING_DOWN', 'draining']], 'onGoaway got the code and message')
  t.equal(r.client.usable, false, 'the client connection is no longer usable')
  t.equal(r.client.closed, false, 'but it is not closed')
  t.throws(() => r.client.open(Buffer.from('pg')), { code: 'ERR_GATEWAY_UNAVAILABLE' }, 'open() refuses')
  const data = randomBytes(MAX_DATA_PAYLOAD)
  t.ok((await roundTrip(cs, data)).equals(data), 'the existing stream still echoes')
  const rest = readAll(cs)
  // roundTrip() paused the reader.
  cs.resume()
  cs.end()
  t.equal((await rest).length, 0)
  await Promise.all([closed(cs), closed(ss)])
  t.equal(cs.errored, null, 'and closes cleanly')
  const goaways = r.toClient.of(FrameType.GOAWAY)
  t.equal(goaways.length, 1, 'one GOAWAY on the wire')
  t.equal(goaways[0]?.stream, 0, 'on stream 0')
})

t.test('the roles are enforced by the API', async (t) => {
  const r = await rig(t)
  t.throws(() => r.server.open(Buffer.from('x')), TypeError, 'a server does not open streams')
})

t.test('setTimeout: a stream emits timeout after inactivity; traffic postpones it; 0 turns it off', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  echo(ss)
  const started = Date.now()
  let viaCallback = 0
  t.equal(
    cs.setTimeout(50, () => viaCallback++),
    cs,
    'chainable',
  )
  t.equal(cs.timeout, 50)
  await within(once(cs, 'timeout'), 10_000, "'timeout'")
  const elapsed = Date.now() - started
  t.ok(elapsed >= 45, `fired after ${elapsed} ms, not before the limit`)
  t.equal(viaCallback, 1, 'the callback ran')
  t.equal(cs.destroyed, false, "a 'timeout' does not destroy the stream")

  // Traffic at ~40 ms postpones the 80 ms limit to ~120 ms.
  const quiet = await openPair(r)
  echo(quiet.ss)
  const reference = await openPair(r)
  const t0 = Date.now()
  quiet.cs.setTimeout(80)
  reference.cs.setTimeout(40)
  await within(once(reference.cs, 'timeout'), 10_000, "the reference 'timeout'")
  await roundTrip(quiet.cs, Buffer.from('keepalive'))
  const trafficAt = Date.now() - t0
  await within(once(quiet.cs, 'timeout'), 10_000, "the quiet stream's 'timeout'")
  const quietElapsed = Date.now() - t0
  t.ok(quietElapsed >= trafficAt + 75, `the limit counted from the last byte (${trafficAt} ms) fired at ${quietElapsed} ms`)

  // 0 turns it off: a stream armed then disarmed stays silent past a reference timeout.
  const off = await openPair(r)
  let fired = 0
  off.cs.on('timeout', () => fired++)
  off.cs.setTimeout(30)
  off.cs.setTimeout(0)
  t.equal(off.cs.timeout, 0)
  reference.cs.setTimeout(60)
  await within(once(reference.cs, 'timeout'), 10_000, "the reference 'timeout'")
  t.equal(fired, 0, 'no timeout after setTimeout(0)')
})

// --- the server facing a peer that breaks the rules ------------------------

/** A server MuxConnection and a raw TLS client that writes hand-made frames. */
async function rawClientRig(t: Test, server: Partial<MuxConnectionOptions> = {}) {
  const { clientSocket: raw, serverSocket } = await tlsPair(t)
  const watch = closeWatcher()
  const opened: MuxStream[] = []
  const conn: MuxConnection = new MuxConnection(serverSocket, {
    role: 'server',
    onOpen: (stream) => {
      tolerate(stream)
      opened.push(stream)
      conn.accept(stream, Buffer.from('{}'))
    },
    onClose: watch.onClose,
    ...server,
  })
  t.teardown(() => conn.destroy())
  raw.on('error', () => {})
  const reader = new FrameReader(true)
  raw.on('data', (chunk: Buffer) => reader.feed(chunk))
  const ended = once(raw, 'end')
  const serverSocketClosed = once(serverSocket, 'close')
  return { raw, conn, serverSocket, reader, opened, closed: watch.closed, ended, serverSocketClosed }
}

type RawRig = Awaited<ReturnType<typeof rawClientRig>>

/** Asserts the server ended the connection for a protocol violation. */
async function assertViolation(t: Test, r: RawRig, what: RegExp): Promise<void> {
  const error = await within(r.closed, 5_000, 'the server connection to close')
  t.ok(isKeywayError(error), 'onClose got a KeywayError')
  t.equal(error?.code, 'ERR_PROTOCOL_VIOLATION', 'onClose: ERR_PROTOCOL_VIOLATION')
  t.match(error?.message, what, `the message says what broke: ${error?.message}`)
  await within(r.ended, 5_000, 'the raw client to see the end of the stream')
  const last = r.reader.frames.at(-1)
  t.equal(last?.type, FrameType.GOAWAY, 'the last frame is a GOAWAY')
  t.equal(last?.stream, 0, 'on stream 0')
  const problem = JSON.parse(last?.payload.toString('utf8') ?? 'null') as { code?: string; message?: string } | null
  t.equal(problem?.code, 'ERR_PROTOCOL_VIOLATION', 'the GOAWAY payload has the code')
  await within(r.serverSocketClosed, 5_000, 'the server socket to close')
  t.equal(r.conn.closed, true, 'the connection is closed')
}

function windowPayload(n: number): Buffer {
  const buf = Buffer.alloc(4)
  buf.writeUInt32BE(n)
  return buf
}

const VIOLATIONS: { name: string; frames: Buffer[]; what: RegExp; options?: Partial<MuxConnectionOptions> }[] = [
  { name: 'an unknown frame type (8)', frames: [frame(8, 1)], what: /unknown frame type 8/ },
  { name: 'frame type 0', frames: [frame(0, 1)], what: /unknown frame type 0/ },
  { name: 'DATA on a never-opened stream', frames: [frame(FrameType.DATA, 1, Buffer.from('x'))], what: /never opened/ },
  {
    name: 'DATA one byte over the maximum payload, within the credit',
    frames: [frame(FrameType.OPEN, 1, Buffer.from('pg')), frame(FrameType.DATA, 1, Buffer.alloc(MAX_DATA_PAYLOAD + 1))],
    what: new RegExp(`DATA frame of ${MAX_DATA_PAYLOAD + 1} bytes exceeds the maximum of ${MAX_DATA_PAYLOAD}`),
  },
  {
    name: 'DATA over both the maximum payload and the window: refused for its size',
    frames: [frame(FrameType.OPEN, 1, Buffer.from('pg')), frame(FrameType.DATA, 1, Buffer.alloc(INITIAL_WINDOW + 1))],
    what: /DATA frame of \d+ bytes exceeds the maximum/,
  },
  {
    name: 'OPEN with a repeated stream id',
    frames: [frame(FrameType.OPEN, 3, Buffer.from('a')), frame(FrameType.OPEN, 3, Buffer.from('b'))],
    what: /OPEN with stream id 3 not above 3/,
  },
  {
    name: 'OPEN with a lower stream id',
    frames: [frame(FrameType.OPEN, 5, Buffer.from('a')), frame(FrameType.OPEN, 2, Buffer.from('b'))],
    what: /OPEN with stream id 2/,
  },
  {
    name: 'OPEN with a stream id over 2^31-1',
    frames: [frame(FrameType.OPEN, 0x80000000, Buffer.from('a'))],
    what: /OPEN with stream id/,
  },
  {
    name: 'a control frame other than OPEN over maxControlPayload',
    frames: [frame(FrameType.OPEN, 1), frame(FrameType.RESET, 1, Buffer.alloc(101))],
    what: /control frame of 101 bytes exceeds 100/,
    options: { maxControlPayload: 100 },
  },
  {
    name: 'a control frame over the default limit of 66,000 bytes',
    frames: [frame(FrameType.OPEN, 1), frame(FrameType.RESET, 1, Buffer.alloc(66_001))],
    what: /exceeds 66000/,
  },
  {
    name: 'an OPEN over 1 MiB (no sidecar sends that)',
    frames: [frame(FrameType.OPEN, 1, Buffer.alloc(1024 * 1024 + 1))],
    what: /control frame of 1048577 bytes exceeds 66000/,
  },
  {
    name: 'WINDOW with a 3-byte payload',
    frames: [frame(FrameType.OPEN, 1), frame(FrameType.WINDOW, 1, Buffer.alloc(3))],
    what: /WINDOW payload is not 4 bytes/,
  },
  { name: 'a frame on stream 0', frames: [frame(FrameType.OPEN, 0)], what: /stream id 0/ },
  { name: 'GOAWAY on a stream', frames: [frame(FrameType.GOAWAY, 1)], what: /GOAWAY on a stream/ },
  { name: 'GOAWAY sent to a server', frames: [frame(FrameType.GOAWAY, 0)], what: /GOAWAY sent to a server/ },
  { name: 'ACCEPT sent to a server', frames: [frame(FrameType.OPEN, 1), frame(FrameType.ACCEPT, 1)], what: /ACCEPT sent to a server/ },
  { name: 'FIN on a never-opened stream', frames: [frame(FrameType.FIN, 9)], what: /FIN on stream 9, never opened/ },
  { name: 'RESET on a never-opened stream', frames: [frame(FrameType.RESET, 9)], what: /RESET on stream 9, never opened/ },
  { name: 'WINDOW on a never-opened stream', frames: [frame(FrameType.WINDOW, 9, windowPayload(1))], what: /WINDOW on stream 9, never opened/ },
]

for (const v of VIOLATIONS) {
  t.test(`protocol violation: ${v.name}`, async (t) => {
    const r = await rawClientRig(t, v.options)
    r.raw.write(Buffer.concat(v.frames))
    await assertViolation(t, r, v.what)
  })
}

t.test('a control frame of exactly maxControlPayload is fine', async (t) => {
  const r = await rawClientRig(t, { maxControlPayload: 100 })
  r.raw.write(frame(FrameType.OPEN, 1, Buffer.alloc(100, 0x61)))
  await until(() => r.reader.of(FrameType.ACCEPT).length === 1, 20_000, 'the ACCEPT')
  t.equal(r.opened.length, 1)
  t.equal(r.conn.closed, false)
})

t.test('a violation resets the streams already open on the connection', async (t) => {
  const r = await rawClientRig(t)
  r.raw.write(frame(FrameType.OPEN, 1, Buffer.from('pg')))
  await until(() => r.opened.length === 1, 20_000, 'the stream to open')
  const err = errorOf(r.opened[0]!)
  r.raw.write(frame(42, 1))
  const e = await err
  t.equal(e.code, 'ECONNRESET')
  t.equal(e.reason, 'ERR_GATEWAY_UNAVAILABLE')
  await assertViolation(t, r, /unknown frame type 42/)
})

t.test('window: exactly INITIAL_WINDOW unread bytes are within the rules, one byte more is a violation', async (t) => {
  const r = await rawClientRig(t)
  r.raw.write(frame(FrameType.OPEN, 1, Buffer.from('pg')))
  // The server's stream is never read: no credit comes back.
  const limit = INITIAL_WINDOW
  for (let sent = 0; sent < limit; sent += MAX_DATA_PAYLOAD) r.raw.write(frame(FrameType.DATA, 1, randomBytes(MAX_DATA_PAYLOAD)))
  // An OPEN after the data: its ACCEPT proves the server has read all of it without complaint.
  r.raw.write(frame(FrameType.OPEN, 3, Buffer.from('probe')))
  await within(
    until(() => r.reader.of(FrameType.ACCEPT).some((f) => f.stream === 3), 20_000, 'the probe ACCEPT'),
    6_000,
    'probe',
  )
  t.equal(r.conn.closed, false, 'exactly a window is within the rules')
  t.equal(r.opened[0]?.readableLength, limit, 'all of it is buffered at the server stream')
  t.same(r.reader.of(FrameType.WINDOW), [], 'no credit came back to a paused reader')
  r.raw.write(frame(FrameType.DATA, 1, Buffer.from('!')))
  await assertViolation(t, r, /stream 1 sent more than its window/)
})

t.test('data past a FIN or on a stream already reset is dropped, not a violation', async (t) => {
  const r = await rawClientRig(t)
  r.raw.write(Buffer.concat([frame(FrameType.OPEN, 1), frame(FrameType.FIN, 1), frame(FrameType.OPEN, 3)]))
  await until(() => r.opened.length === 2, 20_000, 'two streams')
  const [one, three] = r.opened as [MuxStream, MuxStream]
  const got: Buffer[] = []
  one.on('data', (c: Buffer) => got.push(c))
  await once(one, 'end')
  three.destroy()
  await closed(three)
  r.raw.write(Buffer.concat([frame(FrameType.DATA, 1, Buffer.from('late')), frame(FrameType.DATA, 3, Buffer.from('late')), frame(FrameType.WINDOW, 3, windowPayload(10))]))
  r.raw.write(frame(FrameType.OPEN, 5))
  await until(() => r.opened.length === 3, 20_000, 'a later stream to open')
  t.equal(Buffer.concat(got).length, 0, 'nothing delivered after FIN')
  t.equal(r.conn.closed, false, 'the connection is fine')
})

// --- the parser is indifferent to how bytes are split ---------------------

const BIG = Buffer.from(Array.from({ length: 1500 }, (_, i) => i & 0xff))

/** A script of valid client frames touching every frame type a client sends. */
function script(): Buffer[] {
  return [
    frame(FrameType.OPEN, 1, Buffer.from('open one')),
    frame(FrameType.OPEN, 3),
    frame(FrameType.DATA, 1, Buffer.from('abc')),
    frame(FrameType.DATA, 3),
    frame(FrameType.DATA, 1, BIG),
    frame(FrameType.WINDOW, 1, windowPayload(4096)),
    frame(FrameType.FIN, 1),
    frame(FrameType.OPEN, 5, Buffer.from('x')),
    frame(FrameType.DATA, 5, Buffer.from('yy')),
    frame(FrameType.RESET, 5, Buffer.from(JSON.stringify({ code: 'ERR_GRANT_DENIED', message: 'gone' }))),
    frame(FrameType.DATA, 3, Buffer.from('zz')),
    frame(FrameType.FIN, 3),
  ]
}

/**
 * Plays the script into a server MuxConnection, in one write or one byte per
 * socket read, and returns what each stream saw, in order (consecutive
 * 'data' events merged, since how bytes are grouped into 'data' is free).
 */
async function playScript(t: Test, split: boolean): Promise<Record<number, string[]>> {
  const seen: Record<number, string[]> = {}
  const note = (id: number, event: string): void => {
    const events = (seen[id] ??= [])
    const last = events.at(-1)
    if (event.startsWith('data ') && last?.startsWith('data ')) events[events.length - 1] = last + event.slice(5)
    else events.push(event)
  }
  const { clientSocket: raw, serverSocket } = await tlsPair(t)
  raw.on('error', () => {})
  let serverBytes = 0
  let chunks = 0
  let wake: (() => void) | undefined
  serverSocket.on('data', (chunk: Buffer) => {
    serverBytes += chunk.length
    chunks++
    wake?.()
  })
  const done = new Set<number>()
  let closedWith: string | undefined
  const conn: MuxConnection = new MuxConnection(serverSocket, {
    role: 'server',
    // One byte per read is counted on 'data', which a socket reading into
    // reused buffers does not emit; the whole script goes the reused way.
    reuseReadBuffers: !split,
    onOpen: (stream, payload) => {
      note(stream.id, `open ${JSON.stringify(payload?.toString())}`)
      conn.accept(stream, Buffer.from('{}'))
      stream.on('data', (c: Buffer) => note(stream.id, `data ${c.toString('hex')}`))
      stream.on('end', () => note(stream.id, 'end'))
      stream.on('error', (e: StreamResetError) => note(stream.id, `error ${e.code} ${e.reason} ${e.message}`))
      stream.on('close', () => done.add(stream.id))
      // Each stream ends its write side at once, so streams 1 and 3 close cleanly on the peer's FIN.
      stream.end()
    },
    onClose: (error) => {
      closedWith = error?.code ?? 'ok'
    },
  })
  t.teardown(() => conn.destroy())
  const bytes = Buffer.concat(script())
  if (split) {
    for (let i = 0; i < bytes.length; i++) {
      const arrived = new Promise<void>((resolve) => {
        wake = () => {
          if (serverBytes > i) resolve()
        }
      })
      raw.write(bytes.subarray(i, i + 1))
      await within(arrived, 5_000, `byte ${i}`)
    }
    t.equal(chunks, bytes.length, `the server read the ${bytes.length} bytes in as many chunks`)
  } else {
    raw.write(bytes)
  }
  await within(
    until(() => done.has(1) && done.has(3) && done.has(5), 20_000, 'the three streams to finish'),
    6_000,
    'script',
  )
  t.equal(closedWith, undefined, 'the connection did not close')
  t.equal(conn.closed, false)
  t.equal(conn.streams, 0, 'every stream finished')
  return seen
}

t.test('frames split at every byte boundary parse exactly like frames in one write', async (t) => {
  const hex = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s) : s).toString('hex')
  const expected = {
    1: ['open "open one"', `data ${hex('abc')}${hex(BIG)}`, 'end'],
    3: ['open ""', `data ${hex('zz')}`, 'end'],
    5: ['open "x"', `data ${hex('yy')}`, 'error ECONNRESET ERR_GRANT_DENIED gone'],
  }
  const whole = await playScript(t, false)
  t.same(whole, expected, 'the script in one write, read into reused buffers')
  const split = await playScript(t, true)
  t.same(split, expected, "the script one byte per read ('data' events): the same events, byte-exact")
})

// --- the client facing a server that breaks the rules ----------------------

t.test('client side: frames only a client may send, or for streams it never opened, are violations', async (t) => {
  const cases: { name: string; frames: Buffer[]; what: RegExp }[] = [
    { name: 'OPEN sent to a client', frames: [frame(FrameType.OPEN, 2)], what: /OPEN sent to a client/ },
    { name: 'ACCEPT for a never-opened stream', frames: [frame(FrameType.ACCEPT, 7)], what: /ACCEPT for stream 7, never opened/ },
    { name: 'DATA for a never-opened stream', frames: [frame(FrameType.DATA, 7, Buffer.from('x'))], what: /DATA on stream 7, never opened/ },
  ]
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const { clientSocket, serverSocket: raw } = await tlsPair(t)
      raw.on('error', () => {})
      const watch = closeWatcher()
      const client = new MuxConnection(clientSocket, { role: 'client', onClose: watch.onClose })
      t.teardown(() => client.destroy())
      const reader = new FrameReader(true)
      raw.on('data', (chunk: Buffer) => reader.feed(chunk))
      const ended = once(raw, 'end')
      raw.write(Buffer.concat(c.frames))
      const error = await within(watch.closed, 5_000, 'the client connection to close')
      t.equal(error?.code, 'ERR_PROTOCOL_VIOLATION')
      t.match(error?.message, c.what)
      await within(Promise.race([ended, once(raw, 'close')]), 5_000, 'the server side to see the hang-up')
      t.same(reader.frames.filter((f) => f.type === FrameType.GOAWAY), [], 'GOAWAY is the gateway\'s word: a client just hangs up')
    })
  }
})

// Keep encodeFrame in use from the public index (the raw frames above are built independently on purpose).
t.test('encodeFrame from the index agrees with the hand-built frames of these tests', async (t) => {
  t.ok(encodeFrame(FrameType.DATA, 9, Buffer.from('abc')).equals(frame(FrameType.DATA, 9, Buffer.from('abc'))))
})

t.test('an OPEN over maxControlPayload (up to 1 MiB) is passed on without its payload, for the server to refuse that stream alone', async (t) => {
  const seen: { id: number; payload: Buffer | undefined; size: number }[] = []
  const r = await rawClientRig(t, {
    maxControlPayload: 100,
    onOpen: (stream, payload, size) => {
      tolerate(stream)
      seen.push({ id: stream.id, payload, size })
      if (payload === undefined) stream.refuse('ERR_HANDSHAKE_TOO_LARGE', `${size} bytes`)
      else r.conn.accept(stream, Buffer.from('{}'))
    },
  })
  r.raw.write(Buffer.concat([frame(FrameType.OPEN, 1, Buffer.alloc(5_000, 1)), frame(FrameType.OPEN, 3, Buffer.from('small'))]))
  await until(() => r.reader.of(FrameType.ACCEPT).some((f) => f.stream === 3), 20_000, 'the second stream to be accepted')
  t.same(
    seen.map((s) => [s.id, s.payload?.toString(), s.size]),
    [
      [1, undefined, 5_000],
      [3, 'small', 5],
    ],
  )
  const reset = r.reader.of(FrameType.RESET).find((f) => f.stream === 1)
  t.equal((JSON.parse(reset?.payload.toString() ?? '{}') as { code?: string }).code, 'ERR_HANDSHAKE_TOO_LARGE')
  t.equal(r.conn.closed, false, 'the connection lives on')
})

t.test('after GOAWAY a server refuses new OPENs itself with ERR_SHUTTING_DOWN (onOpen is not called)', async (t) => {
  let opens = 0
  const r = await rawClientRig(t, {
    onOpen: (stream) => {
      tolerate(stream)
      opens++
      r.conn.accept(stream, Buffer.from('{}'))
    },
  })
  r.raw.write(frame(FrameType.OPEN, 1))
  await until(() => r.reader.of(FrameType.ACCEPT).length === 1, 20_000, 'the first ACCEPT')
  r.conn.goaway('ERR_SHUTTING_DOWN', 'draining')
  await until(() => r.reader.of(FrameType.GOAWAY).length === 1, 20_000, 'GOAWAY')
  r.raw.write(frame(FrameType.OPEN, 3))
  await until(() => r.reader.of(FrameType.RESET).some((f) => f.stream === 3), 20_000, 'the RESET of stream 3')
  const reset = r.reader.of(FrameType.RESET).find((f) => f.stream === 3)
  t.equal((JSON.parse(reset?.payload.toString() ?? '{}') as { code?: string }).code, 'ERR_SHUTTING_DOWN')
  t.equal(opens, 1, 'onOpen saw only the first stream')
})

t.test('forward() from a socket reading into reused buffers, into a stream out of credit: every byte arrives intact', async (t) => {
  // The stream keeps a chunk it has no credit for (the write is held), so
  // the socket's read buffer must not take the next read meanwhile.
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  const { server, accepted: acceptedLocal, port } = await listenOnce(t, { pauseOnConnect: true })
  const job = await connect(t, port)
  const local = adoptAccepted(await acceptedLocal)
  t.teardown(() => local.destroy())
  server.close()
  t.ok(hasReadBuffer(local), 'the local socket reads into reused buffers')
  const session = forward(local, cs)
  const received = sha256OfStream(ss)
  ss.pause()
  const sent = writeRandom(job, 6 * MiB, { chunkSize: 50_000 })
  await within(until(() => cs.writableLength > 0, 10_000, 'a write held for want of credit'), 11_000, 'credit exhausted')
  ss.resume()
  const digest = await within(sent, 20_000, 'the job wrote everything')
  t.same(await within(received, 20_000, 'the far stream read everything'), digest, 'intact through the stream')
  session.close('test')
})

/**
 * A forward() destination that keeps what it is given, as a socket keeps a
 * chunk queued behind a slow peer: writes complete only after `open()`, and
 * each chunk is hashed as its write completes, so an overwrite while it was
 * held shows in the digest. Declares `releasesWrittenChunks`, like a socket.
 */
class HoldingWriter extends Duplex {
  readonly releasesWrittenChunks = true
  readonly #hash = createHash('sha256')
  #bytes = 0
  #open = false
  #held: { chunk: Buffer; callback: () => void } | undefined
  constructor(options: { eof?: boolean; highWaterMark?: number } = {}) {
    super({ allowHalfOpen: true, writableHighWaterMark: options.highWaterMark ?? 16 * KiB })
    if (options.eof === true) this.push(null)
  }
  setNoDelay(): this {
    return this
  }
  setTimeout(): this {
    return this
  }
  /** Completes the held write and every later one at once. */
  open(): void {
    this.#open = true
    const held = this.#held
    this.#held = undefined
    if (held !== undefined) this.#complete(held.chunk, held.callback)
  }
  digest(): { sha256: string; bytes: number } {
    return { sha256: this.#hash.copy().digest('hex'), bytes: this.#bytes }
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.#open) this.#complete(chunk, callback)
    else this.#held = { chunk, callback }
  }
  #complete(chunk: Buffer, callback: () => void): void {
    this.#hash.update(chunk)
    this.#bytes += chunk.length
    callback()
  }
}

/**
 * 48 MiB from `writer` to `far` through `up`, whose far reader holds back
 * three times until `up` has a write pending: the writer keeps chunks
 * (buffers released), then drains (buffers reclaimed and reused on the next
 * release). Asserts the bytes arrive intact.
 */
async function stutteringTransfer(t: Test, writer: MuxStream, up: net.Socket, far: net.Socket): Promise<void> {
  const got = sha256OfStream(far)
  const hash = createHash('sha256')
  let total = 0
  for (let cycle = 0; cycle < 3; cycle++) {
    far.pause()
    const chunk = randomBytes(16 * MiB)
    hash.update(chunk)
    total += chunk.length
    const written = new Promise<void>((resolve) => writer.write(chunk, () => resolve()))
    await within(until(() => up.writableLength > 0, 10_000, 'a pending write upstream'), 11_000, `cycle ${cycle}: held back`)
    far.resume()
    await within(written, 20_000, `cycle ${cycle}: written`)
  }
  writer.end()
  t.same(await within(got, 30_000, 'the stuttering stream received'), { sha256: hash.digest('hex'), bytes: total }, 'the stuttering stream is intact')
}

t.test('payloads lent from the connection read buffer stay intact while one stream holds them and another drains fast', async (t) => {
  // The socket's read buffers are shared by every stream: one stream's writer
  // draining must not free buffers another stream's writer (or its own
  // buffered reads) still holds.
  const r = await rig(t)
  t.ok(hasReadBuffer(r.serverSocket), "the server's TLS socket reads into reused buffers")
  t.ok(hasReadBuffer(r.clientSocket), "the client's TLS socket reads into reused buffers")
  const slow = await openPair(r, 'slow')
  const fast = await openPair(r, 'fast')
  const holder = new HoldingWriter()
  const slowSession = forward(slow.ss, holder)
  const { accepted: acceptedUp, port } = await listenOnce(t)
  const far = await connect(t, port)
  const up = await acceptedUp
  t.teardown(() => up.destroy())
  const fastSession = forward(fast.ss, up)

  // Half a window: the holder keeps the first chunks, the stream buffers the rest (paused).
  const slowSent = writeRandom(slow.cs, 512 * KiB, { end: false, chunkSize: 16 * KiB })
  await within(until(() => holder.writableLength > 0 && slow.ss.readableLength > 0, 10_000, 'held and buffered'), 11_000, 'slow stream held')
  await stutteringTransfer(t, fast.cs, up, far)

  holder.open()
  const sent = await slowSent
  await until(() => holder.digest().bytes === sent.bytes, 10_000, 'the held bytes to complete')
  t.same(holder.digest(), sent, 'the held and buffered payloads were not overwritten')
  slowSession.close('test')
  fastSession.close('test')
})

t.test('a stream that closes while its writer still holds lent payloads: those buffers are never reused', async (t) => {
  const r = await rig(t)
  const gone = await openPair(r, 'gone')
  const fast = await openPair(r, 'fast')
  // The writer takes everything without pausing (high-water mark above the data) and holds it; its EOF ends the stream's other half.
  const holder = new HoldingWriter({ eof: true, highWaterMark: 4 * MiB })
  const goneSession = forward(gone.ss, holder)
  const goneBack = readAll(gone.cs)
  const goneSent = await writeRandom(gone.cs, 256 * KiB, { chunkSize: 16 * KiB })
  await within(goneBack, 10_000, "the server half's FIN")
  await within(closed(gone.ss), 10_000, 'the server stream closes with both halves done')
  t.ok(holder.writableLength > 0, `the writer still holds ${holder.writableLength} bytes`)

  const { accepted: acceptedUp, port } = await listenOnce(t)
  const far = await connect(t, port)
  const up = await acceptedUp
  t.teardown(() => up.destroy())
  const fastSession = forward(fast.ss, up)
  await stutteringTransfer(t, fast.cs, up, far)

  holder.open()
  await until(() => holder.digest().bytes === goneSent.bytes, 10_000, 'the held bytes to complete')
  t.same(holder.digest(), goneSent, 'what the closed stream lent was not overwritten')
  goneSession.close('test')
  fastSession.close('test')
})

t.test('forward() from a stream into a socket combines record-sized payloads into fewer writes, in order, the FIN after them', async (t) => {
  const r = await rig(t)
  const { cs, ss } = await openPair(r)
  const { accepted: acceptedUp, port } = await listenOnce(t)
  const far = await connect(t, port)
  const up = await acceptedUp
  t.teardown(() => up.destroy())
  const writes = countWrites(up)
  const session = forward(ss, up)
  const got = readAll(far)
  // Within one window, so the payload, the tail and the FIN arrive together: the FIN must wait for the combined bytes.
  const body = randomBytes(512 * KiB)
  cs.write(body)
  cs.write('tail')
  cs.end()
  const all = await within(got, 10_000, 'EOF at the far end')
  t.ok(all.equals(Buffer.concat([body, Buffer.from('tail')])), 'every byte, in order, then EOF')
  // The stream hands the payload over TLS record by record (16 KiB): 32 writes and more without combining.
  t.ok(writes() > 0 && writes() <= 16, `${writes()} writes for 512 KiB`)
  const back = readAll(cs)
  far.end()
  t.equal((await within(back, 5_000, 'EOF back at the client')).length, 0)
  const result = await within(session.done, 5_000, 'session end')
  t.equal(result.aToB, 512 * KiB + 4, 'counted')
})
