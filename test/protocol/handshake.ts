import t from 'tap'
import fc from 'fast-check'
import { encodeHello, encodeReply, HelloParser, ReplyParser } from '../../src/protocol/index.js'

const hello = { token: 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln', resource: 'warehouse' }

t.test('a hello round-trips, whole or one byte at a time, keeping the bytes after it', async (t) => {
  const frame = Buffer.concat([encodeHello(hello), Buffer.from('SELECT 1')])
  const whole = new HelloParser(8192).push(frame)
  t.match(whole, { state: 'done', value: hello })
  t.equal(whole.state === 'done' && whole.rest.toString(), 'SELECT 1')
  const parser = new HelloParser(8192)
  let last
  for (let i = 0; i < frame.length; i++) {
    last = parser.push(frame.subarray(i, i + 1))
    if (last.state !== 'need') break
  }
  t.match(last, { state: 'done', value: hello })
})

t.test('garbage is refused at the first wrong byte, with a code', async (t) => {
  t.match(new HelloParser(8192).push(Buffer.from('G')), { state: 'error', error: { code: 'ERR_HANDSHAKE_MALFORMED' } })
  t.match(new HelloParser(8192).push(Buffer.from('GET / HTTP/1.1\r\n')), { state: 'error', error: { code: 'ERR_HANDSHAKE_MALFORMED' } })
  const v2 = encodeHello(hello)
  v2[3] = 2
  t.match(new HelloParser(8192).push(v2), { state: 'error', error: { code: 'ERR_HANDSHAKE_VERSION' } })
  const flags = encodeHello(hello)
  flags[4] = 1
  t.match(new HelloParser(8192).push(flags), { state: 'error', error: { code: 'ERR_HANDSHAKE_MALFORMED' } })
})

t.test('a declared size over the limit is refused before it arrives', async (t) => {
  const big = encodeHello({ token: 'x'.repeat(9000), resource: 'r' })
  t.match(new HelloParser(8192).push(big.subarray(0, 8)), { state: 'error', error: { code: 'ERR_HANDSHAKE_TOO_LARGE' } })
})

t.test('property: any byte string, fed in any chunking, ends in need, done or a coded error; never throws; never buffers past the cap', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 40 }), (bytes, cuts) => {
      const parser = new HelloParser(256)
      let offset = 0
      let i = 0
      while (offset < bytes.length) {
        const n = cuts[i++ % Math.max(cuts.length, 1)] ?? bytes.length
        const r = parser.push(Buffer.from(bytes.subarray(offset, offset + n)))
        offset += n
        if (r.state === 'error') return /^ERR_HANDSHAKE_/.test(r.error.code)
        if (r.state === 'done') return true
        if (parser.buffered > 256) return false
      }
      return true
    }),
    { numRuns: 2000 },
  )
  t.pass('held for 2000 random inputs')
})

t.test('replies round-trip for OK and errors', async (t) => {
  const ok = new ReplyParser().push(Buffer.concat([encodeReply({ ok: true, session: 's1' }), Buffer.from('data')]))
  t.match(ok, { state: 'done', value: { ok: true, session: 's1' } })
  t.equal(ok.state === 'done' && ok.rest.toString(), 'data')
  const err = new ReplyParser().push(encodeReply({ ok: false, code: 'ERR_GRANT_DENIED', message: 'no' }))
  t.match(err, { state: 'done', value: { ok: false, code: 'ERR_GRANT_DENIED', message: 'no' } })
  const p = new ReplyParser()
  const frame = encodeReply({ ok: true, session: 'abc' })
  t.match(p.push(frame.subarray(0, 5)), { state: 'need' })
  t.match(p.push(frame.subarray(5)), { state: 'done', value: { ok: true, session: 'abc' } })
})

t.test('encodeHello refuses what the wire cannot carry', async (t) => {
  t.throws(() => encodeHello({ token: 't', resource: '' }), { code: 'ERR_HANDSHAKE_MALFORMED' })
  t.throws(() => encodeHello({ token: 't', resource: 'r'.repeat(256) }), { code: 'ERR_HANDSHAKE_MALFORMED' })
})
