import t from 'tap'
import { decodeJsonSegment } from '../../src/auth/json-segment.js'

const seg = (text: string): string => Buffer.from(text, 'utf8').toString('base64url')

t.test('a base64url JSON object decodes, as jose decodes a header or payload', async (t) => {
  t.same(decodeJsonSegment(seg('{"alg":"EdDSA","kid":"k1"}')), { alg: 'EdDSA', kid: 'k1' })
  t.same(decodeJsonSegment(seg('{"exp":1700000000,"name":"zoë"}')), { exp: 1700000000, name: 'zoë' })
})

t.test('anything but a JSON object is refused', async (t) => {
  for (const [what, segment] of [
    ['empty', ''],
    ['an array', seg('[1,2]')],
    ['null', seg('null')],
    ['a number', seg('42')],
    ['a string', seg('"x"')],
    ['not JSON', seg('{alg:EdDSA}')],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')],
  ] as const) {
    t.throws(() => decodeJsonSegment(segment), what)
  }
})
