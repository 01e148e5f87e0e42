/**
 * Helpers for tests of multiplexed streams (ALPN keyway/2): raw frames and
 * the small waits every such test needs.
 */
import type { Duplex } from 'node:stream'
import { FRAME_HEADER, type MuxStream, type StreamResetError } from '../../src/mux/index.js'
import { readExactly } from './net.js'
import { within } from './until.js'

/** A frame with any type byte and length (encodeFrame takes only valid types): for tests that break the rules. */
export function rawFrame(type: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER + payload.length)
  buf[0] = type
  buf.writeUIntBE(payload.length, 1, 3)
  buf.writeUInt32BE(stream, 4)
  payload.copy(buf, FRAME_HEADER)
  return buf
}

/** Resolves with the error a stream is destroyed with; rejects if it closes without one. */
export function errorOf(stream: MuxStream): Promise<StreamResetError> {
  return new Promise((resolve, reject) => {
    if (stream.errored) return resolve(stream.errored as StreamResetError)
    stream.once('error', (err) => resolve(err as StreamResetError))
    stream.once('close', () => setImmediate(() => reject(new Error(`stream ${stream.id} closed without an error`))))
  })
}

/** Resolves once the stream has closed (at once if it has). */
export function closedStream(stream: MuxStream): Promise<void> {
  if (stream.closed) return Promise.resolve()
  return new Promise((resolve) => stream.once('close', () => resolve()))
}

/** Writes `data` without ending and resolves with as many bytes read back (an echo), within 5 s. */
export function roundTrip(stream: Duplex, data: Buffer): Promise<Buffer> {
  const echoed = readExactly(stream, data.length)
  stream.write(data)
  return within(echoed, 5_000, `the echo of ${data.length} bytes`)
}
