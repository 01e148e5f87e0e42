import t from 'tap'
import { PgWireTracker } from '../../src/pgwire/index.js'
import { CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST, initial, message, parseErrorResponse, startup } from '../helpers/pgwire.js'

/** A tracker that has seen a plain StartupMessage. */
function plaintext(): PgWireTracker {
  const w = new PgWireTracker()
  t.equal(w.aToB(startup()), false, 'no more client bytes needed once the server speaks messages')
  return w
}

const serverStream = Buffer.concat([
  message('R', Buffer.alloc(4)),
  message('S', 'server_version\x0016\x00'),
  message('Z', 'I'),
  message('T', Buffer.alloc(300, 1)),
  message('D', Buffer.alloc(70_000, 2)),
  message('C', 'SELECT 1\0'),
  message('Z', 'I'),
])
/** Offsets in serverStream where a message ends. */
const boundaries = new Set<number>()
for (let i = 0; i < serverStream.length; ) {
  i += 1 + serverStream.readInt32BE(i + 1)
  boundaries.add(i)
}

t.test('a plain StartupMessage: the server\'s message boundaries are tracked across every split', async (t) => {
  for (const cut of [7, 2, 3, 4, 5, 6, 9, 13, 17, 40, 305, 320, 4096, 70_000, 70_330]) {
    const w = plaintext()
    let at = 0
    for (let i = 0; i < serverStream.length; i += cut) {
      const chunk = serverStream.subarray(i, Math.min(i + cut, serverStream.length))
      if (!w.bToA(chunk)) t.fail(`split ${cut}: tracking stopped at ${at}`)
      at += chunk.length
      if (w.atBoundary !== boundaries.has(at)) t.fail(`split ${cut}: atBoundary ${w.atBoundary} at ${at}`)
    }
    t.equal(w.atBoundary, true, `split ${cut}: ends at a boundary`)
    t.equal(w.state, 'messages')
  }
})

t.test('SSLRequest answered S (TLS end to end) turns tracking off; answered N, the startup that follows is tracked', async (t) => {
  const tls = new PgWireTracker()
  t.equal(tls.aToB(initial(SSL_REQUEST)), true, 'waits for the answer')
  t.equal(tls.bToA(Buffer.from('S')), false)
  t.equal(tls.state, 'off')
  t.equal(tls.closingWords('ERR_GRANT_DENIED', 'x', 100), undefined, 'no words for an encrypted session')

  const plain = new PgWireTracker()
  plain.aToB(initial(SSL_REQUEST))
  t.equal(plain.bToA(Buffer.from('N')), true)
  t.equal(plain.state, 'startup')
  // The StartupMessage split in two.
  const s = startup()
  t.equal(plain.aToB(s.subarray(0, 3)), true)
  t.equal(plain.aToB(s.subarray(3)), false)
  t.equal(plain.state, 'messages')
  t.equal(plain.bToA(message('R', Buffer.alloc(4))), true)
  t.equal(plain.atBoundary, true)
})

t.test('GSSENCRequest answered G, a CancelRequest, garbage, or the server speaking first: off', async (t) => {
  const gss = new PgWireTracker()
  gss.aToB(initial(GSSENC_REQUEST))
  gss.bToA(Buffer.from('G'))
  t.equal(gss.state, 'off')
  const cancel = new PgWireTracker()
  t.equal(cancel.aToB(initial(CANCEL_REQUEST, Buffer.alloc(8))), false)
  t.equal(cancel.state, 'off')
  const tlsHello = new PgWireTracker()
  tlsHello.aToB(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]))
  t.equal(tlsHello.state, 'off', 'direct TLS')
  const first = new PgWireTracker()
  t.equal(first.bToA(Buffer.from('hello')), false)
  t.equal(first.state, 'off')
  const bad = plaintext()
  t.equal(bad.bToA(Buffer.from([0x44, 0, 0, 0, 1])), false, 'a length below 4 is not PostgreSQL')
})

t.test('closingWords: at a boundary at once; mid-message, the bytes that complete it', async (t) => {
  const w = plaintext()
  w.bToA(message('Z', 'I'))
  const now = w.closingWords('ERR_TOKEN_EXPIRED', 'the token expired', 500)!
  t.equal(now.until, undefined)
  t.equal(now.waitMs, 500)
  t.same(parseErrorResponse(now.last), { S: 'FATAL', V: 'FATAL', C: '28000', M: 'keyway: ERR_TOKEN_EXPIRED: the token expired' })

  // Mid-body: 100 bytes of a 1000-byte DataRow seen.
  const row = message('D', Buffer.alloc(995, 7))
  const mid = plaintext()
  mid.bToA(row.subarray(0, 100))
  const words = mid.closingWords('ERR_GRANT_DENIED', 'revoked', 500)!
  t.equal(words.until!(row.subarray(100, 600)), -1)
  const rest = Buffer.concat([row.subarray(600), message('C', 'SELECT 1\0')])
  t.equal(words.until!(rest), row.length - 600, 'stops at the end of the row, before the next message')

  // Mid-header: 3 of its 5 bytes seen.
  const head = plaintext()
  head.bToA(row.subarray(0, 3))
  const hw = head.closingWords('ERR_GRANT_DENIED', 'revoked', 500)!
  t.equal(hw.until!(row.subarray(3, 4)), -1)
  t.equal(hw.until!(Buffer.concat([row.subarray(4), message('Z', 'I')])), row.length - 4)
})
