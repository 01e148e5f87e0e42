import t from 'tap'
import fc from 'fast-check'
import { encodeFrame, FrameType, MAX_DATA_PAYLOAD, writeHeader, type FrameTypeValue } from '../../src/mux/frame.js'
import { FrameDecoder, type FrameSink } from '../../src/mux/frame-decoder.js'

/** A frame as the decoder reports it: DATA pieces joined. */
interface Seen {
  type: number
  stream: number
  payload: Buffer | undefined
  size: number
}

/** A sink that records what the decoder reports; `stopAt` stops it at the nth frame. */
function recorder(stopAt = Infinity): { sink: FrameSink; frames: Seen[]; violations: string[]; lentPieces: number } {
  const frames: Seen[] = []
  const violations: string[] = []
  const state = { sink: undefined as unknown as FrameSink, frames, violations, lentPieces: 0 }
  let pieces: Buffer[] = []
  let current: Seen | undefined
  state.sink = {
    dataStart(stream, size) {
      current = { type: FrameType.DATA, stream, payload: Buffer.alloc(0), size }
      pieces = []
      frames.push(current)
      if (size === 0) current = undefined
      return frames.length < stopAt
    },
    data(piece, lent) {
      if (lent) state.lentPieces++
      // A lent piece is valid only during the call: keep a copy.
      pieces.push(Buffer.from(piece))
      const seen = frames.at(-1)!
      seen.payload = Buffer.concat(pieces)
      return true
    },
    control(type, stream, payload, size) {
      frames.push({ type, stream, payload: payload === undefined ? undefined : Buffer.from(payload), size })
      return frames.length < stopAt
    },
    violation(message) {
      violations.push(message)
    },
  }
  return state
}

const CONTROL_TYPES = [FrameType.OPEN, FrameType.ACCEPT, FrameType.FIN, FrameType.RESET, FrameType.WINDOW] as FrameTypeValue[]

const frameArb = fc.oneof(
  fc.record({ type: fc.constant(FrameType.DATA as FrameTypeValue), stream: fc.integer({ min: 1, max: 0xffffffff }), payload: fc.uint8Array({ maxLength: 600 }) }),
  fc.record({ type: fc.constantFrom(...CONTROL_TYPES), stream: fc.integer({ min: 1, max: 0xffffffff }), payload: fc.uint8Array({ maxLength: 200 }) }),
  fc.record({ type: fc.constant(FrameType.GOAWAY as FrameTypeValue), stream: fc.constant(0), payload: fc.uint8Array({ maxLength: 100 }) }),
)

/** Cuts `bytes` at the given points (sorted, deduplicated, in range). */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b)
  const chunks: Buffer[] = []
  let from = 0
  for (const p of at) {
    chunks.push(bytes.subarray(from, p))
    from = p
  }
  chunks.push(bytes.subarray(from))
  return chunks
}

t.test('any sequence of valid frames, cut anywhere, decodes to the same frames', async (t) => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), fc.boolean(), (frames, points, lent) => {
      const wire = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.stream, Buffer.from(f.payload))))
      const seen = recorder()
      const decoder = new FrameDecoder(seen.sink, { maxControlPayload: 1000, maxSkippedOpen: 0 })
      for (const chunk of cut(wire, points)) decoder.push(chunk, lent)
      if (seen.violations.length !== 0) return false
      if (seen.frames.length !== frames.length) return false
      return frames.every((f, i) => {
        const s = seen.frames[i]!
        return s.type === f.type && s.stream === f.stream && s.size === f.payload.length && Buffer.from(f.payload).equals(s.payload!)
      })
    }),
  )
  t.pass('property held')
})

t.test('DATA payloads are handed on as views of the chunk, marked lent when the chunk is', async (t) => {
  const chunk = encodeFrame(FrameType.DATA, 5, Buffer.from('hello'))
  const seen = recorder()
  let piece: Buffer | undefined
  const decoder = new FrameDecoder({ ...seen.sink, data: (p, lent) => ((piece = p), seen.sink.data(p, lent)) }, { maxControlPayload: 100, maxSkippedOpen: 0 })
  decoder.push(chunk, true)
  t.equal(piece?.buffer, chunk.buffer, 'no copy: the piece shares the chunk memory')
  t.equal(seen.lentPieces, 1)
  t.equal(seen.frames[0]!.payload!.toString(), 'hello')
})

t.test('every rule of the framing is a violation, and nothing after it is read', async (t) => {
  const header = (type: number, size: number, stream: number): Buffer => {
    const b = Buffer.alloc(8)
    writeHeader(b, 0, type as FrameTypeValue, size, stream)
    return b
  }
  const cases: [string, Buffer, RegExp][] = [
    ['type 0', header(0, 0, 1), /unknown frame type 0/],
    ['type 8', header(8, 0, 1), /unknown frame type 8/],
    ['GOAWAY on a stream', header(FrameType.GOAWAY, 0, 3), /GOAWAY on a stream/],
    ['a frame on stream 0', header(FrameType.FIN, 0, 0), /stream id 0/],
    ['DATA over the maximum', header(FrameType.DATA, MAX_DATA_PAYLOAD + 1, 1), /exceeds the maximum/],
    ['an oversized control frame', header(FrameType.RESET, 101, 1), /control frame of 101 bytes exceeds 100/],
    ['an oversized OPEN where none may be skipped', header(FrameType.OPEN, 101, 1), /exceeds 100/],
  ]
  for (const [name, bytes, message] of cases) {
    const seen = recorder()
    const decoder = new FrameDecoder(seen.sink, { maxControlPayload: 100, maxSkippedOpen: 0 })
    decoder.push(Buffer.concat([bytes, encodeFrame(FrameType.FIN, 1)]), false)
    t.equal(seen.violations.length, 1, `${name}: one violation`)
    t.match(seen.violations[0], message, name)
    t.equal(seen.frames.length, 0, `${name}: nothing after it`)
    t.ok(decoder.stopped)
    decoder.push(encodeFrame(FrameType.FIN, 1), false)
    t.equal(seen.frames.length, 0, `${name}: later chunks are ignored`)
  }
})

t.test('an oversized OPEN within maxSkippedOpen is skipped and reported without its payload', async (t) => {
  const seen = recorder()
  const decoder = new FrameDecoder(seen.sink, { maxControlPayload: 10, maxSkippedOpen: 1000 })
  decoder.push(Buffer.concat([encodeFrame(FrameType.OPEN, 1, Buffer.alloc(500, 1)), encodeFrame(FrameType.OPEN, 3, Buffer.from('ok'))]), false)
  t.same(seen.violations, [])
  t.same(
    seen.frames.map((f) => [f.type, f.stream, f.payload?.toString(), f.size]),
    [
      [FrameType.OPEN, 1, undefined, 500],
      [FrameType.OPEN, 3, 'ok', 2],
    ],
  )
  const over = recorder()
  new FrameDecoder(over.sink, { maxControlPayload: 10, maxSkippedOpen: 1000 }).push(encodeFrame(FrameType.OPEN, 1, Buffer.alloc(1001)), false)
  t.match(over.violations, [/exceeds 10/], 'beyond maxSkippedOpen the peer is not a sidecar')
})

t.test('a sink that returns false stops the decoder within the chunk', async (t) => {
  const seen = recorder(2)
  const decoder = new FrameDecoder(seen.sink, { maxControlPayload: 100, maxSkippedOpen: 0 })
  decoder.push(Buffer.concat([1, 3, 5].map((id) => encodeFrame(FrameType.FIN, id))), false)
  t.equal(seen.frames.length, 2, 'the third frame is not read')
  t.ok(decoder.stopped)
  const data = recorder()
  const stopping = new FrameDecoder({ ...data.sink, data: () => false }, { maxControlPayload: 100, maxSkippedOpen: 0 })
  stopping.push(Buffer.concat([encodeFrame(FrameType.DATA, 1, Buffer.from('x')), encodeFrame(FrameType.FIN, 1)]), false)
  t.ok(stopping.stopped, 'a refused DATA piece stops it too')
  t.equal(data.frames.length, 1, 'the FIN after it is not read')
})
