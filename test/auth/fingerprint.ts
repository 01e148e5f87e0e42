import t from 'tap'
import { createHash } from 'node:crypto'
import { newTokenId, tokenFingerprint, tokenHash } from '../../src/auth/fingerprint.js'

t.test('tokenHash is the full hex sha256', async (t) => {
  t.equal(tokenHash('abc'), createHash('sha256').update('abc').digest('hex'))
  t.match(tokenHash('x'), /^[0-9a-f]{64}$/)
})

t.test('tokenFingerprint is sha256: + 16 hex', async (t) => {
  const fp = tokenFingerprint('abc')
  t.match(fp, /^sha256:[0-9a-f]{16}$/)
  t.equal(fp, `sha256:${tokenHash('abc').slice(0, 16)}`)
  t.not(tokenFingerprint('abd'), fp)
})

t.test('newTokenId is url-safe and random', async (t) => {
  const ids = new Set<string>()
  for (let i = 0; i < 1000; i++) {
    const id = newTokenId()
    t.ok(/^tok_[A-Za-z0-9_-]{20}$/.test(id), id)
    ids.add(id)
  }
  t.equal(ids.size, 1000)
})
