import type { Socket } from 'node:net'
import type { Clock } from '../clock.js'
import { keywayErrorResponse } from './error-response.js'

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const MAX_STARTUP_LENGTH = 10_000

/**
 * Refuses a PostgreSQL client so that it learns why: reads its initial
 * message, answers 'N' to an SSLRequest or GSSENCRequest (the refusal goes
 * in plaintext; a client that insists on TLS gives up on its own), and
 * answers its StartupMessage with the FATAL ErrorResponse for `code` (one
 * SQLSTATE table, sqlstate.ts), then ends the connection. Anything else, or
 * no StartupMessage within `timeoutMs`, just closes it. Resolves once the
 * socket is closed; never rejects.
 */
export function refuseStartup(socket: Socket, code: string, message: string, options: { clock: Clock; timeoutMs: number }): Promise<void> {
  return new Promise<void>((resolve) => {
    let buffered = Buffer.alloc(0)
    let answered = false
    const timer = options.clock.setTimeout(() => socket.destroy(), options.timeoutMs)
    const onData = (chunk: Buffer): void => {
      if (answered) return
      buffered = buffered.length === 0 ? Buffer.from(chunk) : Buffer.concat([buffered, chunk])
      while (buffered.length >= 8) {
        const length = buffered.readInt32BE(0)
        const request = buffered.readInt32BE(4)
        if (length < 8 || length > MAX_STARTUP_LENGTH) return void socket.destroy()
        if ((request === SSL_REQUEST || request === GSSENC_REQUEST) && length === 8) {
          buffered = buffered.subarray(8)
          socket.write('N')
          continue
        }
        if (request >>> 16 !== 3) return void socket.destroy()
        // The StartupMessage need not be complete: what it says changes nothing.
        answered = true
        socket.end(keywayErrorResponse(code, message))
        return
      }
    }
    socket.on('data', onData)
    socket.on('error', () => socket.destroy())
    socket.on('end', () => socket.end())
    socket.once('close', () => {
      options.clock.clearTimeout(timer)
      resolve()
    })
    socket.resume()
  })
}
