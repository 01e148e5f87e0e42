import t from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import {
  ALPN_MUX,
  FRAME_HEADER,
  FrameType,
  INITIAL_WINDOW,
  MAX_DATA_PAYLOAD,
  MAX_FRAME_PAYLOAD,
  MAX_FRAME_TYPE,
  decodeProblem,
  encodeFrame,
  encodeProblem,
  writeHeader,
  type FrameTypeValue,
} from '../../src/mux/frame.js'

/** Reads a header the way docs/protocol.md describes it: `type:u8 length:u24be stream:u32be`. */
function readHeader(buf: Buffer, offset = 0): { type: number; length: number; stream: number } {
  return { type: buf.readUInt8(offset), length: buf.readUIntBE(offset + 1, 3), stream: buf.readUInt32BE(offset + 4) }
}

const TYPES = Object.values(FrameType) as FrameTypeValue[]

t.test('the wire constants are the documented ones', async (t) => {
  t.equal(ALPN_MUX, 'keyway/2')
  t.equal(FRAME_HEADER, 8)
  t.same(FrameType, { OPEN: 1, ACCEPT: 2, DATA: 3, FIN: 4, RESET: 5, WINDOW: 6, GOAWAY: 7 })
  t.equal(MAX_FRAME_TYPE, Math.max(...TYPES))
  t.equal(MAX_FRAME_PAYLOAD, 2 ** 24 - 1, 'the largest u24')
  t.ok(MAX_DATA_PAYLOAD <= MAX_FRAME_PAYLOAD, 'a full DATA frame fits the length field')
  t.ok(INITIAL_WINDOW >= MAX_DATA_PAYLOAD, 'a window holds at least one full DATA frame')
})

/** The first number of bytes `pattern` finds in docs/protocol.md ("262,144"). */
function documented(text: string, pattern: RegExp): number | undefined {
  const found = pattern.exec(text)?.[1]
  return found === undefined ? undefined : Number(found.replaceAll(',', ''))
}

// The window is part of the wire protocol: a receiver fails the connection
// when a peer overruns it, so both ends (and the documentation) must agree.
t.test('the flow-control numbers are the ones docs/protocol.md states', async (t) => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8')
  t.equal(documented(doc, /A DATA frame carries at most ([\d,]+) bytes/), MAX_DATA_PAYLOAD, 'largest DATA payload')
  t.equal(documented(doc, /window of ([\d,]+) bytes/), INITIAL_WINDOW, 'initial window')
})

t.test('encodeFrame lays out type, u24 length, u32 stream, then the payload', async (t) => {
  const frame = encodeFrame(FrameType.DATA, 0x01020304, Buffer.from('hello'))
  t.same([...frame], [3, 0, 0, 5, 1, 2, 3, 4, ...Buffer.from('hello')])
  t.equal(frame.length, FRAME_HEADER + 5)
})

t.test('encodeFrame without a payload is a bare header with length 0', async (t) => {
  const frame = encodeFrame(FrameType.FIN, 7)
  t.same([...frame], [4, 0, 0, 0, 0, 0, 0, 7])
  t.same([...encodeFrame(FrameType.FIN, 7, Buffer.alloc(0))], [...frame], 'an empty payload encodes the same')
})

t.test('encodeFrame copies the payload: later changes to the source do not leak into the frame', async (t) => {
  const payload = Buffer.from('abc')
  const frame = encodeFrame(FrameType.OPEN, 1, payload)
  payload.fill(0x7a)
  t.equal(frame.subarray(FRAME_HEADER).toString(), 'abc')
})

t.test('lengths at the byte boundaries of the u24 field round-trip', async (t) => {
  for (const length of [0, 1, 0xff, 0x100, 0xffff, 0x10000, 0xabcdef, MAX_FRAME_PAYLOAD]) {
    const buf = Buffer.alloc(FRAME_HEADER)
    writeHeader(buf, 0, FrameType.DATA, length, 1)
    t.equal(readHeader(buf).length, length, `length ${length}`)
  }
  const buf = Buffer.alloc(FRAME_HEADER)
  writeHeader(buf, 0, FrameType.DATA, 0xabcdef, 1)
  t.same([...buf.subarray(1, 4)], [0xab, 0xcd, 0xef], 'big-endian')
})

t.test('stream ids at the edges of u32 round-trip', async (t) => {
  for (const stream of [0, 1, 0xff, 0x100, 0x7fffffff, 0x80000000, 0xffffffff]) {
    t.equal(readHeader(encodeFrame(FrameType.WINDOW, stream)).stream, stream, `stream ${stream}`)
  }
})

t.test('a largest-possible payload encodes with the full u24 length', async (t) => {
  const payload = Buffer.alloc(MAX_FRAME_PAYLOAD, 0x5a)
  const frame = encodeFrame(FrameType.DATA, 3, payload)
  t.same(readHeader(frame), { type: FrameType.DATA, length: MAX_FRAME_PAYLOAD, stream: 3 })
  t.equal(frame.length, FRAME_HEADER + MAX_FRAME_PAYLOAD)
  t.ok(frame.subarray(FRAME_HEADER).equals(payload))
})

t.test('writeHeader writes exactly 8 bytes at the offset and nothing around them', async (t) => {
  const buf = Buffer.alloc(24, 0xee)
  writeHeader(buf, 9, FrameType.GOAWAY, 0x010203, 0xdeadbeef)
  t.same(readHeader(buf, 9), { type: 7, length: 0x010203, stream: 0xdeadbeef })
  t.ok(buf.subarray(0, 9).equals(Buffer.alloc(9, 0xee)), 'bytes before untouched')
  t.ok(buf.subarray(17).equals(Buffer.alloc(7, 0xee)), 'bytes after untouched')
})

t.test('property: any type, length and stream id round-trip through encodeFrame and writeHeader', async (t) => {
  fc.assert(
    fc.property(
      fc.constantFrom(...TYPES),
      fc.uint8Array({ maxLength: 300 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      (type, bytes, stream) => {
        const payload = Buffer.from(bytes)
        const frame = encodeFrame(type, stream, payload)
        const header = readHeader(frame)
        if (header.type !== type || header.length !== payload.length || header.stream !== stream) return false
        if (!frame.subarray(FRAME_HEADER).equals(payload)) return false
        const again = Buffer.alloc(FRAME_HEADER)
        writeHeader(again, 0, type, payload.length, stream)
        return again.equals(frame.subarray(0, FRAME_HEADER))
      },
    ),
  )
  t.pass('round-trips')
})

t.test('encodeProblem / decodeProblem round-trip code and message', async (t) => {
  for (const [code, message] of [
    ['ERR_GRANT_DENIED', 'no grant for pg'],
    ['ERR_SHUTTING_DOWN', ''],
    ['ERR_INTERNAL', 'ünïcödé ✓ 🚀 "quotes" \\ and\nnewlines'],
  ] as const) {
    const payload = encodeProblem(code, message)
    t.same(JSON.parse(payload.toString('utf8')), { code, message }, `${code}: the payload is JSON {code, message}`)
    t.same(decodeProblem(payload), { code, message }, `${code}: round-trip`)
  }
})

t.test('property: encodeProblem / decodeProblem round-trip any strings up to 1000 chars', async (t) => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 100 }), (code, message) => {
      const back = decodeProblem(encodeProblem(code, message))
      return back.code === code && back.message === message
    }),
  )
  t.pass('round-trips')
})

t.test('encodeProblem caps the message at 1000 characters', async (t) => {
  const long = 'x'.repeat(5000)
  const problem = decodeProblem(encodeProblem('ERR_INTERNAL', long))
  t.equal(problem.code, 'ERR_INTERNAL')
  t.equal(problem.message, 'x'.repeat(1000))
  t.ok(encodeProblem('ERR_INTERNAL', long).length < 1100, 'the payload stays small')
  // The cut may fall inside a surrogate pair: the payload must still be JSON.
  const cut = decodeProblem(encodeProblem('ERR_INTERNAL', 'x'.repeat(999) + '🚀'))
  t.equal(cut.code, 'ERR_INTERNAL', 'a cut inside a surrogate pair still decodes')
  t.equal(cut.message.length, 1000)
})

t.test('decodeProblem: an empty payload means no reason given', async (t) => {
  t.same(decodeProblem(Buffer.alloc(0)), { code: 'ERR_INTERNAL', message: 'no reason given' })
})

t.test('decodeProblem tolerates malformed payloads', async (t) => {
  const cases: [string, Buffer, { code: string; message: string }][] = [
    ['not JSON', Buffer.from('not json'), { code: 'ERR_INTERNAL', message: 'malformed reason' }],
    ['truncated JSON', Buffer.from('{"code":"ERR_GRANT_DENIED","mess'), { code: 'ERR_INTERNAL', message: 'malformed reason' }],
    ['invalid UTF-8', Buffer.from([0xff, 0xfe, 0x80, 0x00]), { code: 'ERR_INTERNAL', message: 'malformed reason' }],
    ['JSON null', Buffer.from('null'), { code: 'ERR_INTERNAL', message: 'malformed reason' }],
    ['a JSON number', Buffer.from('42'), { code: 'ERR_INTERNAL', message: '' }],
    ['a JSON string', Buffer.from('"ERR_GRANT_DENIED"'), { code: 'ERR_INTERNAL', message: '' }],
    ['a JSON array', Buffer.from('["ERR_GRANT_DENIED","x"]'), { code: 'ERR_INTERNAL', message: '' }],
    ['an empty object', Buffer.from('{}'), { code: 'ERR_INTERNAL', message: '' }],
    ['code not a string', Buffer.from('{"code":5,"message":"m"}'), { code: 'ERR_INTERNAL', message: 'm' }],
    ['message not a string', Buffer.from('{"code":"ERR_GRANT_DENIED","message":{"a":1}}'), { code: 'ERR_GRANT_DENIED', message: '' }],
    ['extra fields', Buffer.from('{"code":"ERR_GRANT_DENIED","message":"m","x":[1]}'), { code: 'ERR_GRANT_DENIED', message: 'm' }],
  ]
  for (const [what, payload, expected] of cases) {
    t.same(decodeProblem(payload), expected, what)
  }
})

t.test('property: decodeProblem never throws and always returns two strings', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.json().map((s) => Buffer.from(s))), (payload) => {
      const problem = decodeProblem(payload)
      return typeof problem.code === 'string' && typeof problem.message === 'string'
    }),
  )
  t.pass('total')
})
