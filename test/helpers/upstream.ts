import { createHash, type Hash } from 'node:crypto'
import type { Socket } from 'node:net'
import { listen, type Teardown } from './net.js'

/** An upstream that counts what it accepts and hashes what each connection sends. */
export interface CountingUpstream {
  readonly port: number
  /** Connections accepted so far. */
  readonly accepted: number
  /** Open connections. */
  readonly open: Set<Socket>
  /** sha256 (hex) of the bytes each connection sent, in accept order, once it ended. */
  readonly digests: string[]
  /** Resolves once `n` connections have been accepted. */
  waitAccepted(n: number): Promise<void>
}

/**
 * Listens on 127.0.0.1:0. `mode` echo: every byte comes back (half-close
 * aware); sink: bytes are hashed, nothing is sent back, and the upstream's
 * side stays open after the client's FIN until the test ends it.
 */
export async function countingUpstream(t: Teardown, mode: 'echo' | 'sink' = 'echo'): Promise<CountingUpstream> {
  const open = new Set<Socket>()
  const digests: string[] = []
  let accepted = 0
  let waiters: { n: number; resolve: () => void }[] = []
  const { port } = await listen(t, (socket) => {
    accepted++
    open.add(socket)
    waiters = waiters.filter((w) => (accepted >= w.n ? (w.resolve(), false) : true))
    const index = accepted - 1
    const hash: Hash = createHash('sha256')
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      if (mode === 'echo' && !socket.write(chunk)) {
        socket.pause()
        socket.once('drain', () => socket.resume())
      }
    })
    socket.on('end', () => {
      digests[index] = hash.digest('hex')
      // A sink keeps its side open: the test decides when the upstream ends.
      if (mode === 'echo') socket.end()
    })
    socket.once('close', () => open.delete(socket))
  })
  return {
    port,
    get accepted() {
      return accepted
    },
    open,
    digests,
    waitAccepted(n) {
      if (accepted >= n) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ n, resolve }))
    },
  }
}
