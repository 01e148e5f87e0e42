/**
 * Loopback socket utilities for tests. Everything binds 127.0.0.1 on an
 * ephemeral port and registers its own cleanup with `t.teardown`, so a test
 * that fails half-way leaves no listener, socket or worker behind.
 */
import { createHash, randomFillSync } from 'node:crypto'
import { once, type EventEmitter } from 'node:events'
import * as net from 'node:net'
import { finished, type Duplex, type Readable, type Writable } from 'node:stream'
import { Worker } from 'node:worker_threads'

/** The only address tests use. */
export const LOOPBACK = '127.0.0.1'

/** Anything with tap's `teardown` (a tap `Test`). */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/** A listening server and its port. */
export interface Listening {
  server: net.Server
  port: number
}

/**
 * Listens on 127.0.0.1:0 with `allowHalfOpen: true` (override through
 * `options`). On teardown the server closes and every socket it accepted is
 * destroyed.
 */
export async function listen(
  t: Teardown,
  onConnection: (socket: net.Socket) => void,
  options: net.ServerOpts = {},
): Promise<Listening> {
  const accepted = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true, ...options }, (socket) => {
    accepted.add(socket)
    socket.once('close', () => accepted.delete(socket))
    onConnection(socket)
  })
  t.teardown(async () => {
    for (const s of accepted) s.destroy()
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  server.listen({ port: 0, host: LOOPBACK })
  await once(server, 'listening')
  return { server, port: (server.address() as net.AddressInfo).port }
}

/**
 * An echo server: every byte comes back, and the client's FIN is answered
 * with a FIN once the echo is flushed (half-close aware). Errors are ignored.
 */
export function listenEcho(t: Teardown): Promise<Listening> {
  return listen(t, (socket) => {
    socket.on('error', () => {})
    socket.pipe(socket)
  })
}

/** A server that hands over its first accepted socket and destroys any later one. */
export async function listenOnce(
  t: Teardown,
  options: net.ServerOpts = {},
): Promise<Listening & { accepted: Promise<net.Socket> }> {
  let deliver!: (socket: net.Socket) => void
  const accepted = new Promise<net.Socket>((resolve) => {
    deliver = resolve
  })
  let first = true
  const listening = await listen(
    t,
    (socket) => {
      if (first) {
        first = false
        deliver(socket)
      } else {
        socket.destroy()
      }
    },
    options,
  )
  return { ...listening, accepted }
}

/**
 * Connects to 127.0.0.1:`port` (`allowHalfOpen: true` unless overridden) and
 * resolves once connected. Destroyed on teardown.
 */
export async function connect(t: Teardown, port: number, options: Partial<net.TcpNetConnectOpts> = {}): Promise<net.Socket> {
  const socket = net.connect({ allowHalfOpen: true, ...options, port, host: LOOPBACK })
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  return socket
}

/**
 * A connected TCP pair over loopback: `[client, server]`, where `server` is the
 * accepted end. Both allow half-open connections unless `allowHalfOpen` is
 * false. Both are destroyed on teardown.
 */
export async function socketPair(t: Teardown, options: { allowHalfOpen?: boolean } = {}): Promise<[net.Socket, net.Socket]> {
  const allowHalfOpen = options.allowHalfOpen ?? true
  const { server, accepted } = await listenOnce(t, { allowHalfOpen })
  const client = await connect(t, (server.address() as net.AddressInfo).port, { allowHalfOpen })
  const peer = await accepted
  t.teardown(() => peer.destroy())
  // One connection per pair: free the port right away.
  server.close()
  return [client, peer]
}

/** Collects a stream until 'end'. Rejects on 'error' or on a close without 'end'. */
export function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => resolve(Buffer.concat(chunks)))
    stream.once('error', reject)
    stream.once('close', () => reject(new Error('stream closed before end')))
  })
}

/** A digest and a length. */
export interface Digest {
  sha256: string
  bytes: number
}

/**
 * Hashes a stream until 'end' without keeping it. Rejects on 'error' or on a
 * close without 'end'.
 */
export function sha256OfStream(stream: Readable): Promise<Digest> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    let bytes = 0
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      hash.update(chunk)
    })
    stream.once('end', () => resolve({ sha256: hash.digest('hex'), bytes }))
    stream.once('error', reject)
    stream.once('close', () => reject(new Error('stream closed before end')))
  })
}

/** Options of {@link writeRandom}. */
export interface WriteRandomOptions {
  /** Call end() after the last byte. Default true. */
  end?: boolean
  /** Size of each write. Default 256 KiB. */
  chunkSize?: number
  /** Called after each write() with its return value, e.g. to watch backpressure. */
  onWrite?: (accepted: boolean) => void
}

/**
 * Writes `total` random bytes honouring backpressure (waits for 'drain' when
 * write() returns false) and resolves with their digest once all were handed
 * to the stream. Rejects if the stream errors or closes first.
 */
export function writeRandom(stream: Writable, total: number, options: WriteRandomOptions = {}): Promise<Digest> {
  const chunkSize = options.chunkSize ?? 256 * 1024
  const hash = createHash('sha256')
  return new Promise((resolve, reject) => {
    let written = 0
    const onError = (err: Error): void => {
      cleanup()
      reject(err)
    }
    const onClose = (): void => {
      cleanup()
      reject(new Error(`stream closed after ${written} of ${total} bytes`))
    }
    const cleanup = (): void => {
      stream.removeListener('error', onError)
      stream.removeListener('close', onClose)
      stream.removeListener('drain', pump)
    }
    function pump(): void {
      while (written < total) {
        const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(chunkSize, total - written)))
        hash.update(chunk)
        written += chunk.length
        const ok = stream.write(chunk)
        options.onWrite?.(ok)
        if (!ok) return
      }
      cleanup()
      if (options.end ?? true) stream.end()
      resolve({ sha256: hash.digest('hex'), bytes: written })
    }
    stream.on('error', onError)
    stream.on('close', onClose)
    stream.on('drain', pump)
    pump()
  })
}

/** Counts the calls to `socket.write` from now on (the writes a forwarder makes to it). */
export function countWrites(socket: net.Socket): () => number {
  let writes = 0
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean
  socket.write = ((...args: unknown[]): boolean => {
    writes++
    return write(...args)
  }) as typeof socket.write
  return () => writes
}

/**
 * Resolves with the arguments of the next `event` (rejects on 'error', like
 * `events.once`).
 */
export function waitFor<T extends unknown[] = unknown[]>(emitter: EventEmitter, event: string): Promise<T> {
  return once(emitter, event) as Promise<T>
}

/** Resolves once the socket has closed (at once if it already has); never rejects. */
export function waitClosed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    finished(socket, () => resolve())
  })
}

/**
 * A port whose connections hang in SYN-SENT: a listener with backlog 1 that
 * never accepts (it lives in a worker whose event loop is blocked), with its
 * accept queue already filled by two connections. On Linux further SYNs are
 * dropped (`tcp_abort_on_overflow` = 0), so a connect attempt neither
 * succeeds nor fails until the client gives up. Cleaned up on teardown.
 */
export async function fullBacklogServer(t: Teardown): Promise<{ port: number }> {
  const wake = new SharedArrayBuffer(4)
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads')
    const net = require('node:net')
    const server = net.createServer()
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      parentPort.postMessage(server.address().port)
      // Block this thread's event loop: the kernel completes handshakes into
      // the accept queue, but nobody accepts.
      Atomics.wait(new Int32Array(workerData.wake), 0, 0)
      server.close()
    })
    `,
    { eval: true, workerData: { wake } },
  )
  t.teardown(async () => {
    const exited = once(worker, 'exit')
    Atomics.store(new Int32Array(wake), 0, 1)
    Atomics.notify(new Int32Array(wake), 0)
    await exited
  })
  const [port] = (await once(worker, 'message')) as [number]
  // backlog 1 admits backlog + 1 = 2 completed handshakes on Linux.
  for (let i = 0; i < 2; i++) await connect(t, port)
  return { port }
}

/** Reads exactly `n` bytes (any more are unshifted back), then pauses the stream. */
export function readExactly(socket: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let got = 0
    const onData = (c: Buffer): void => {
      chunks.push(c)
      got += c.length
      if (got >= n) {
        socket.off('data', onData)
        socket.pause()
        const all = Buffer.concat(chunks)
        if (all.length > n) socket.unshift(all.subarray(n))
        resolve(all.subarray(0, n))
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`closed after ${got} of ${n} bytes`)))
    socket.resume()
  })
}
