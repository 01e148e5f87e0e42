import t from 'tap'
import { createRequire } from 'node:module'
import { md5Password, SaltedPasswordCache, saltPassword, scramClient } from '../../src/pgwire/index.js'

// RFC 7677 §3: the SCRAM-SHA-256 example exchange.
const CLIENT_NONCE = 'rOprNGfwEbeRWgbNEkqO'
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'
const CLIENT_FINAL = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='
const SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='

t.test('RFC 7677 test vector: client-first, client-final with its proof, server signature', async (t) => {
  const scram = scramClient({ user: 'user', password: 'pencil', nonce: CLIENT_NONCE })
  t.equal(scram.clientFirst, `n,,n=user,r=${CLIENT_NONCE}`, 'GS2 flag n: no channel binding claimed')
  t.equal(await scram.final(SERVER_FIRST), CLIENT_FINAL)
  t.doesNotThrow(() => scram.verifyServerFinal(SERVER_FINAL))
})

t.test('a server that does not know the password is refused', async (t) => {
  const scram = scramClient({ user: 'user', password: 'pencil', nonce: CLIENT_NONCE })
  await scram.final(SERVER_FIRST)
  t.throws(() => scram.verifyServerFinal('v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /server signature does not verify/ })
  t.throws(() => scram.verifyServerFinal('e=invalid-proof'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /invalid-proof/ })
})

t.test('a server nonce that does not extend the client nonce, or absurd iterations, are refused', async (t) => {
  await t.rejects(scramClient({ password: 'p', nonce: 'abc' }).final('r=xyz123,s=AAAA,i=4096'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /nonce/ })
  await t.rejects(scramClient({ password: 'p', nonce: 'abc' }).final('r=abc,s=AAAA,i=4096'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /nonce/ })
  await t.rejects(scramClient({ password: 'p', nonce: 'abc' }).final('r=abcd,s=AAAA,i=99999999'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /iterations/ })
  await t.rejects(scramClient({ password: 'p', nonce: 'abc' }).final('garbage'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /malformed/ })
})

t.test('the salted password is computed once per resource, password, salt and iteration count', async (t) => {
  const cache = new SaltedPasswordCache()
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64')
  const a = await cache.get('warehouse', 'pencil', salt, 4096)
  t.same(a, await saltPassword('pencil', salt, 4096))
  t.equal(await cache.get('warehouse', 'pencil', salt, 4096), a, 'the same buffer: no second PBKDF2')
  t.equal(cache.size, 1)
  t.not(await cache.get('warehouse', 'rotated', salt, 4096), a, 'a rotated secret is salted afresh')
  t.not(await cache.get('warehouse', 'pencil', salt, 8192), a)
  t.not(await cache.get('orders', 'pencil', salt, 4096), a)
  t.equal(cache.size, 4)
  // The exchange uses the cache through `salted`.
  let calls = 0
  const scram = scramClient({ user: 'user', password: 'pencil', nonce: CLIENT_NONCE, salted: async (s, i) => (calls++, cache.get('warehouse', 'pencil', s, i)) })
  t.equal(await scram.final(SERVER_FIRST), CLIENT_FINAL)
  t.equal(calls, 1)
  const small = new SaltedPasswordCache(2)
  await small.get('a', 'p', salt, 1)
  await small.get('b', 'p', salt, 1)
  await small.get('c', 'p', salt, 1)
  t.equal(small.size, 2, 'bounded')
})

t.test('md5 password message as the pg client computes it (md5(md5(password + user) + salt))', async (t) => {
  // pg's own implementation, independent of ours.
  const utils = createRequire(import.meta.url)('pg/lib/crypto/utils') as { postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string> }
  const salt = Buffer.from([0x9a, 0x01, 0xff, 0x42])
  t.equal(md5Password('app', 'secret', salt), await utils.postgresMd5PasswordHash('app', 'secret', salt))
  t.match(md5Password('app', 'secret', salt), /^md5[0-9a-f]{32}$/)
})
