import t from 'tap'
import { PassThrough } from 'node:stream'
import { encodeCommand, keywayErrorReply, MAX_REPLY_LINE, ReplyReader } from '../../src/resp/index.js'

t.test('commands are RESP arrays of bulk strings, binary-safe', async (t) => {
  t.equal(encodeCommand(['AUTH', 'app', 'a b\r\nc']).toString('latin1'), '*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\na b\r\nc\r\n')
  t.equal(encodeCommand(['AUTH', 'pé']).toString('latin1'), '*2\r\n$4\r\nAUTH\r\n$3\r\np\u00c3\u00a9\r\n', 'lengths count bytes')
})

t.test('the refusal is one error line a Redis client prints', async (t) => {
  t.equal(keywayErrorReply('ERR_UPSTREAM_LOGIN_FAILED', 'no\r\nway').toString(), '-ERR keyway ERR_UPSTREAM_LOGIN_FAILED: no way\r\n')
})

t.test('the reply reader splits lines across chunks and hands back the rest', async (t) => {
  const s = new PassThrough()
  const r = new ReplyReader(s)
  const first = r.line()
  s.write('+O')
  s.write('K\r\n-ERR x\r\nrest')
  t.equal(await first, '+OK')
  t.equal(await r.line(), '-ERR x')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(r.detach().toString(), 'rest')
})

t.test('an overlong line or an early end fails the read', async (t) => {
  const long = new PassThrough()
  const r = new ReplyReader(long)
  const line = r.line()
  long.write(Buffer.alloc(MAX_REPLY_LINE + 10, 0x61))
  await t.rejects(line, { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /longer than/ })
  const ended = new PassThrough()
  const r2 = new ReplyReader(ended)
  const l2 = r2.line()
  ended.end('+OK')
  await t.rejects(l2, { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /closed the connection/ })
})
