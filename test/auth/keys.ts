import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { calculateJwkThumbprint, compactVerify, CompactSign } from 'jose'
import {
  createKeySet,
  generateSigningKey,
  importSigningKey,
  loadKeySet,
  loadSigningKey,
  publicJwkOf,
} from '../../src/auth/keys.js'
import { isKeywayError } from '../../src/errors.js'

t.test('generateSigningKey: Ed25519, kid is the RFC 7638 thumbprint', async (t) => {
  const { privateJwk, publicJwk, kid } = await generateSigningKey()
  t.match(publicJwk, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid })
  t.equal(publicJwk.d, undefined)
  t.type(privateJwk.d, 'string')
  t.equal(privateJwk.x, publicJwk.x)
  t.equal(kid, await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: publicJwk.x! }, 'sha256'))
  t.not((await generateSigningKey()).kid, kid)
  t.same(publicJwkOf(privateJwk), publicJwk)
})

t.test('loadSigningKey and loadKeySet round trip', async (t) => {
  const a = await generateSigningKey()
  const b = await generateSigningKey()
  const dir = t.testdir({
    'signing.jwk.json': JSON.stringify(a.privateJwk),
    'jwks.json': JSON.stringify({ keys: [a.publicJwk, b.publicJwk] }),
  })
  const signer = await loadSigningKey(join(dir, 'signing.jwk.json'))
  t.equal(signer.kid, a.kid)
  const keySet = await loadKeySet(join(dir, 'jwks.json'))
  t.same(keySet.kids, [a.kid, b.kid])
  const jws = await new CompactSign(new TextEncoder().encode('hi')).setProtectedHeader({ alg: 'EdDSA' }).sign(signer.privateKey)
  const { payload } = await compactVerify(jws, keySet.get(a.kid)!)
  t.equal(new TextDecoder().decode(payload), 'hi')
  await t.rejects(compactVerify(jws, keySet.get(b.kid)!))
})

t.test('unknown and path-like kids simply miss', async (t) => {
  const a = await generateSigningKey()
  const keySet = await createKeySet({ keys: [a.publicJwk] })
  for (const kid of ['nope', '../../etc/passwd', '/etc/passwd', 'https://example.test/jwks', '__proto__', 'constructor', '']) {
    t.equal(keySet.get(kid), undefined, kid)
  }
})

t.test('ERR_CONFIG_IO for unreadable files', async (t) => {
  const dir = t.testdir({})
  await t.rejects(loadSigningKey(join(dir, 'missing.json')), { code: 'ERR_CONFIG_IO' })
  await t.rejects(loadKeySet(join(dir, 'missing.json')), { code: 'ERR_CONFIG_IO' })
  await t.rejects(loadKeySet(dir), { code: 'ERR_CONFIG_IO' }) // a directory
})

t.test('ERR_CONFIG_INVALID for bad JSON and bad keys', async (t) => {
  const a = await generateSigningKey()
  const b = await generateSigningKey()
  const dir = t.testdir({ 'bad.json': '{ keys: [', 'arr.json': '[]' })
  await t.rejects(loadKeySet(join(dir, 'bad.json')), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(loadSigningKey(join(dir, 'bad.json')), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(loadKeySet(join(dir, 'arr.json')), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(loadSigningKey(join(dir, 'arr.json')), { code: 'ERR_CONFIG_INVALID' })

  const badSets: unknown[] = [
    null,
    {},
    { keys: [] },
    { keys: 'x' },
    { keys: [null] },
    { keys: [{ ...a.publicJwk, kty: 'EC' }] },
    { keys: [{ ...a.publicJwk, crv: 'X25519' }] },
    { keys: [{ ...a.publicJwk, kid: undefined }] },
    { keys: [{ ...a.publicJwk, kid: '' }] },
    { keys: [{ ...a.publicJwk, alg: 'HS256' }] },
    { keys: [{ ...a.publicJwk, alg: undefined }] },
    { keys: [{ ...a.publicJwk, use: 'enc' }] },
    { keys: [{ ...a.publicJwk, x: undefined }] },
    { keys: [{ ...a.publicJwk, x: 'AAAA' }] }, // wrong length
    { keys: [a.privateJwk] }, // private material in a JWKS
    { keys: [a.publicJwk, { ...b.publicJwk, kid: a.kid }] }, // duplicate kid
    { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h', alg: 'HS256' }] },
  ]
  for (const [i, jwks] of badSets.entries()) {
    await t.rejects(createKeySet(jwks), { code: 'ERR_CONFIG_INVALID' }, `bad set ${i}`)
  }

  const badKeys: unknown[] = [
    a.publicJwk, // no d
    { ...a.privateJwk, d: b.privateJwk.d }, // d does not match x
    { ...a.privateJwk, alg: 'ES256' },
    { ...a.privateJwk, kid: undefined },
    'string',
  ]
  for (const [i, jwk] of badKeys.entries()) {
    await t.rejects(importSigningKey(jwk), { code: 'ERR_CONFIG_INVALID' }, `bad key ${i}`)
  }
})

t.test('errors name the file, never the key material', async (t) => {
  const a = await generateSigningKey()
  const dir = t.testdir({})
  const path = join(dir, 'k.json')
  writeFileSync(path, JSON.stringify({ ...a.privateJwk, alg: 'none' }))
  const err = await loadSigningKey(path).catch((e: unknown) => e)
  t.ok(isKeywayError(err, 'ERR_CONFIG_INVALID'))
  t.match((err as Error).message, path)
  t.notMatch((err as Error).message, a.privateJwk.d!)
})
