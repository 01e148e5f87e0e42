import t from 'tap'
import { hashPassword, verifyPassword } from '../../src/auth/password.js'

t.test('hash then verify', async (t) => {
  const stored = await hashPassword('correct horse battery staple')
  t.match(stored, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/)
  const [, , , , salt, hash] = stored.split('$')
  t.equal(Buffer.from(salt!, 'base64').length, 16)
  t.equal(Buffer.from(hash!, 'base64').length, 32)
  t.equal(await verifyPassword('correct horse battery staple', stored), true)
  t.equal(await verifyPassword('correct horse battery stapler', stored), false)
  t.equal(await verifyPassword('', stored), false)
})

t.test('same password, different salts', async (t) => {
  t.not(await hashPassword('pw'), await hashPassword('pw'))
})

t.test('empty and unicode passwords', async (t) => {
  t.equal(await verifyPassword('', await hashPassword('')), true)
  t.equal(await verifyPassword('pässwörd🔑', await hashPassword('pässwörd🔑')), true)
})

t.test('malformed stored hashes give false', async (t) => {
  const good = await hashPassword('pw')
  const [, n, r, p, salt, hash] = good.split('$') as string[]
  const bad = [
    '',
    'plaintext',
    'scrypt$',
    `bcrypt$${n}$${r}$${p}$${salt}$${hash}`,
    `scrypt$${n}$${r}$${p}$${salt}`,
    `scrypt$${n}$${r}$${p}$${salt}$${hash}$extra`,
    `scrypt$abc$${r}$${p}$${salt}$${hash}`,
    `scrypt$16383$${r}$${p}$${salt}$${hash}`, // not a power of two
    `scrypt$1048576$32$16$${salt}$${hash}`, // far too much memory
    `scrypt$${n}$0$${p}$${salt}$${hash}`,
    `scrypt$${n}$${r}$${p}$!!!$${hash}`,
    `scrypt$${n}$${r}$${p}$${salt}$`,
    `scrypt$${n}$${r}$${p}$${salt}$AAAA`, // too short
    `scrypt$0${n}$${r}$${p}$${salt}$${hash}`,
  ]
  for (const stored of bad) t.equal(await verifyPassword('pw', stored), false, JSON.stringify(stored))
  t.equal(await verifyPassword('pw', undefined as unknown as string), false)
})

t.test('a hash with other (sane) parameters still verifies', async (t) => {
  const { scryptSync, randomBytes } = await import('node:crypto')
  const salt = randomBytes(16)
  const hash = scryptSync('pw', salt, 64, { N: 1024, r: 4, p: 2 })
  const stored = `scrypt$1024$4$2$${salt.toString('base64')}$${hash.toString('base64')}`
  t.equal(await verifyPassword('pw', stored), true)
  t.equal(await verifyPassword('pW', stored), false)
})
