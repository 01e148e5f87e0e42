import t from 'tap'
import { parseAddressList, PROXY_HEADER_MAX_BYTES, ProxyHeaderParser } from '../../src/net/index.js'
import { proxyV2 } from '../helpers/proxy.js'

t.test('TCP over IPv4 and IPv6, byte by byte, with TLVs; the bytes after it are kept', async (t) => {
  const header = proxyV2({ host: '203.0.113.9', port: 51000 }, { tlv: Buffer.from([0x04, 0x00, 0x02, 0xaa, 0xbb]) })
  const wire = Buffer.concat([header, Buffer.from('client hello')])
  const parser = new ProxyHeaderParser()
  let r
  for (let i = 0; i < wire.length; i++) {
    r = parser.push(wire.subarray(i, i + 1))
    if (r.state !== 'need') break
  }
  t.match(r, { state: 'done', source: { host: '203.0.113.9', port: 51000 } })
  const six = new ProxyHeaderParser().push(Buffer.concat([proxyV2({ host: '2001:db8::7', port: 443 }), Buffer.from('rest')]))
  t.match(six, { state: 'done', source: { host: '2001:db8::7', port: 443 } })
  t.equal(six.state === 'done' && six.rest.toString(), 'rest')
  const mapped = new ProxyHeaderParser().push(proxyV2({ host: '::ffff:c000:207', port: 1 }))
  t.match(mapped, { state: 'done', source: { host: '192.0.2.7' } }, 'IPv4-mapped IPv6 reads as IPv4')
  t.match(new ProxyHeaderParser().push(proxyV2({ host: '10.0.0.1', port: 1 }, { command: 0, family: 0 })), { state: 'done', source: undefined }, 'LOCAL: the balancer itself')
})

t.test('anything else is refused: no header, the text form, bad version, command, family, size, TLV', async (t) => {
  const push = (b: Buffer) => new ProxyHeaderParser().push(b)
  t.match(push(Buffer.from([0x16, 0x03, 0x01])), { state: 'error', message: /does not start with a PROXY protocol v2 header/ }, 'a TLS ClientHello')
  t.match(push(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), { state: 'error' }, 'v1 text')
  const bad = proxyV2({ host: '10.0.0.1', port: 1 })
  bad[12] = 0x11
  t.match(push(bad), { state: 'error', message: /version 1/ })
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { command: 2 })), { state: 'error', message: /command 2/ })
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { family: 0x12 })), { state: 'error', message: /0x12 is not TCP/ }, 'UDP')
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { family: 0x31 })), { state: 'error' }, 'Unix socket')
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { length: PROXY_HEADER_MAX_BYTES })), { state: 'error', message: /exceeds the limit/ }, 'decided from the length field, before the bytes arrive')
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { length: 8 })), { state: 'error', message: /too short/ })
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { tlv: Buffer.from([0x04, 0x00, 0x09, 0x01]) })), { state: 'error', message: /TLV runs past/ })
  t.match(push(proxyV2({ host: '10.0.0.1', port: 1 }, { tlv: Buffer.from([0x04, 0x00]) })), { state: 'error', message: /inside a TLV/ })
})

t.test('address lists take addresses and CIDR blocks, v4 and v6, and name the fix for anything else', async (t) => {
  const list = parseAddressList(['10.0.0.0/8', '192.0.2.7', 'fd00::/8'])
  if (typeof list === 'string') throw new Error(list)
  t.ok(list.has('10.200.1.2'))
  t.ok(list.has('::ffff:10.1.1.1'), 'IPv4-mapped form of a listed address')
  t.ok(list.has('192.0.2.7'))
  t.notOk(list.has('192.0.2.8'))
  t.ok(list.has('fd12::1'))
  t.notOk(list.has('2001:db8::1'))
  t.notOk(list.has('?'))
  const none = parseAddressList([])
  t.ok(typeof none !== 'string' && !none.has('127.0.0.1'), 'the empty list holds nobody')
  t.match(parseAddressList(['lb.internal']), /is not an IP address or CIDR block/)
  t.match(parseAddressList(['10.0.0.0/33']), /prefix length outside 0-32/)
  t.match(parseAddressList(['10.0.0.0/8/1']), /is not an IP address/)
})
