import { once } from 'node:events'
import * as net from 'node:net'
import { adoptAccepted, hasReadBuffer, setReadSink, useReadBuffer, type ReadSink } from './read-buffer.js'

/** Whether the data path uses Node's internals (node-internals.ts), and why not when it does not. */
export interface FastPath {
  /** True: accepted and TLS sockets read into reused buffers. */
  readonly enabled: boolean
  /** Why the fast path is off: `switched off` (the setting), or the self-test's finding. */
  readonly reason?: string
}

/** Bytes the self-test sends each way: more than one read buffer, so reads are reused. */
const PROBE_BYTES = 256 * 1024
/** The self-test gives up after this long (a loaded machine), and the data path takes the public path. */
const PROBE_TIMEOUT_MS = 5_000

/**
 * Decides at start-up whether the fast path works on this Node: on a real
 * loopback socket pair, an accepted socket is adopted (`moveAcceptedHandle`)
 * and a second one given reused buffers in place (`setOnread`); bytes go
 * through both byte for byte while the reader holds back, a half-close
 * arrives after the bytes, and the listener closes with its connection
 * count back to 0. Any difference, or no answer within 5 s, turns the
 * fast path off with the reason. `enabled: false` skips the test
 * (`forward.nodeInternals: off`). Never throws.
 */
export async function checkFastPath(enabled: boolean): Promise<FastPath> {
  if (!enabled) return { enabled: false, reason: 'switched off (forward.nodeInternals: off)' }
  let timer: NodeJS.Timeout | undefined
  const sockets: net.Socket[] = []
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true })
  try {
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`self-test gave no answer within ${PROBE_TIMEOUT_MS} ms`), PROBE_TIMEOUT_MS)
    })
    const finding = await Promise.race([probe(server, sockets), timeout])
    return finding === undefined ? { enabled: true } : { enabled: false, reason: finding }
  } catch (err) {
    return { enabled: false, reason: `self-test failed: ${(err as Error).message}` }
  } finally {
    clearTimeout(timer)
    for (const s of sockets) s.destroy()
    server.close()
  }
}

// Resolves undefined when everything behaved, else what differed.
async function probe(server: net.Server, sockets: net.Socket[]): Promise<string | undefined> {
  server.listen({ host: '127.0.0.1', port: 0 })
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const payload = Buffer.alloc(PROBE_BYTES)
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >>> 8)) & 0xff

  for (const how of ['adopted', 'in place'] as const) {
    const accepted = once(server, 'connection') as Promise<[net.Socket]>
    const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    sockets.push(client)
    client.on('error', () => {})
    const [raw] = await accepted
    sockets.push(raw)
    const socket = how === 'adopted' ? adoptAccepted(raw) : raw
    sockets.push(socket)
    socket.on('error', () => {})
    if (how === 'adopted' && (socket === raw || !hasReadBuffer(socket))) return 'moveAcceptedHandle: the accepted socket was not adopted'
    if (how === 'in place' && !useReadBuffer(socket)) return 'setOnread: the socket took no reused buffers'

    // The sink copies each read and holds back for a while, as a slow writer would.
    const got: Buffer[] = []
    const sink: ReadSink = {
      read: (_from, chunk) => {
        got.push(Buffer.from(chunk))
        if (got.length % 4 === 0) {
          socket.pause()
          setTimeout(() => socket.resume(), 1)
        }
      },
    }
    setReadSink(socket, sink)
    socket.on('data', (chunk: Buffer) => got.push(Buffer.from(chunk)))
    const ended = once(socket, 'end')
    socket.resume()
    client.end(payload)
    await ended
    const received = Buffer.concat(got)
    if (!received.equals(payload)) return `${how}: ${received.length} bytes arrived for ${payload.length} sent, or not the same bytes`
    // The answer after the client's half-close still reaches it.
    const answered = new Promise<Buffer>((resolve) => {
      const back: Buffer[] = []
      client.on('data', (c: Buffer) => back.push(c))
      client.once('end', () => resolve(Buffer.concat(back)))
    })
    socket.end('answer')
    if ((await answered).toString() !== 'answer') return `${how}: the answer after a half-close was lost`
    if (!socket.destroyed) await once(socket, 'close')
  }
  const connections = await new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
  if (connections !== 0) return `the listener counts ${connections} connection(s) after they closed`
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  for (const s of sockets) s.destroy()
  await closed
  return undefined
}
