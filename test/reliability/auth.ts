/**
 * Authentication and authorization under hostile tokens: algorithm
 * confusion, claims and clock skew, grants that do not stretch, key rotation,
 * and no raw token anywhere it could leak.
 */
import t, { type Test } from 'tap'
import { createHook } from 'node:async_hooks'
import { createHmac, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { syncBuiltinESMExports } from 'node:module'
import { SignJWT } from 'jose'
import fc from 'fast-check'
import { Registry } from 'prom-client'
import {
  generateSigningKey,
  importSigningKey,
  issueToken,
  newTokenId,
  tokenFingerprint,
  type SigningKey,
} from '../../src/auth/index.js'
import { ManualClock } from '../../src/clock.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { Sidecar } from '../../src/sidecar/index.js'
import { connect, readAll } from '../helpers/net.js'
import { idlePort } from '../helpers/ports.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld, openTunnel, type World } from '../helpers/world.js'
import { scale, twoResourcePolicy, worldVerifier } from '../helpers/reliability.js'

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

async function setup(t: Test, options: { clock?: ManualClock; tokens?: Record<string, unknown>; policy?: (a: number, b: number) => PolicyDoc } = {}) {
  const upA = await countingUpstream(t)
  const upB = await countingUpstream(t)
  const world = await createWorld(t, {
    policy: (options.policy ?? twoResourcePolicy)(upA.port, upB.port),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.tokens ? { tokens: options.tokens } : {}),
  })
  const tokenA = await world.serviceToken('svc_a')
  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  return { upA, upB, world, tokenA, running, port }
}

/** Signs arbitrary claims with the world's key (or `key`), and lists the jti for svc_a so only the claim under test can fail. */
async function craft(world: World, claims: Record<string, unknown>, options: { key?: SigningKey; header?: Record<string, unknown> } = {}): Promise<string> {
  const key = options.key ?? world.signingKey
  const token = await new SignJWT({ kw: 'service', ...claims })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT', ...options.header })
    .sign(key.privateKey)
  const jti = claims.jti
  if (typeof jti === 'string') {
    world.editPolicy((doc) => {
      doc.accounts!.find((a) => a.id === 'svc_a')!.tokens!.push({ id: jti, fingerprint: tokenFingerprint(token) })
    })
  }
  return token
}

t.test('property 5: alg none, algorithms outside the allowlist, HS256 keyed with the public key, unknown and path-like kids are refused without any file or network look-up', async (t) => {
  const { upA, world, tokenA, running, port } = await setup(t)
  // A canary that would see any attempt to fetch a key set or key from the network.
  let canaryHits = 0
  const canary = createServer((_req, res) => {
    canaryHits++
    res.end('{"keys":[]}')
  })
  canary.on('connection', () => canaryHits++)
  await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => canary.close(() => resolve())))
  const url = `http://127.0.0.1:${(canary.address() as AddressInfo).port}/jwks.json`

  const [, payload] = tokenA.split('.') as [string, string, string]
  const kid = world.signingKey.kid
  const jwks = JSON.parse(readFileSync(world.config.keys.jwks, 'utf8')) as { keys: { x: string }[] }
  const publicKeyBytes = Buffer.from(jwks.keys[0]!.x, 'base64url')
  const hs256 = (secret: Buffer | string, header: Record<string, unknown>) => {
    const head = `${b64(header)}.${payload}`
    return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
  }
  const attacker = await importSigningKey((await generateSigningKey()).privateJwk)
  const attackerJwk = (await generateSigningKey()).publicJwk
  const pathKids = ['../../../../etc/passwd', '/etc/passwd', 'file:///etc/passwd', url, '\\\\127.0.0.1\\share\\key', '%2e%2e%2fjwks.json', 'jwks.json', world.config.keys.jwks]
  const cases: [string, string, RegExp][] = [
    ['alg none, empty signature', `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`, /ERR_TOKEN_ALG/],
    ['alg none, kid of the real key', `${b64({ alg: 'none', kid, typ: 'JWT' })}.${payload}.`, /ERR_TOKEN_ALG/],
    ['alg NONE', `${b64({ alg: 'NONE', kid, typ: 'JWT' })}.${payload}.${b64('x')}`, /ERR_TOKEN_ALG/],
    ['HS256 keyed with the raw public key', hs256(publicKeyBytes, { alg: 'HS256', kid, typ: 'JWT' }), /ERR_TOKEN_ALG/],
    ['HS256 keyed with the JWKS text', hs256(readFileSync(world.config.keys.jwks, 'utf8'), { alg: 'HS256', kid, typ: 'JWT' }), /ERR_TOKEN_ALG/],
    ['HS512', hs256('secret', { alg: 'HS512', kid, typ: 'JWT' }), /ERR_TOKEN_ALG/],
    ['RS256', `${b64({ alg: 'RS256', kid, typ: 'JWT' })}.${payload}.${randomBytes(256).toString('base64url')}`, /ERR_TOKEN_ALG/],
    ['ES256', `${b64({ alg: 'ES256', kid, typ: 'JWT' })}.${payload}.${randomBytes(64).toString('base64url')}`, /ERR_TOKEN_ALG/],
    ['PS256', `${b64({ alg: 'PS256', kid, typ: 'JWT' })}.${payload}.${randomBytes(256).toString('base64url')}`, /ERR_TOKEN_ALG/],
    ['alg missing', `${b64({ kid, typ: 'JWT' })}.${payload}.${b64('x')}`, /ERR_TOKEN_ALG/],
    ['EdDSA by another key, unknown kid', await craft(world, { sub: 'svc_a', jti: 'j-unknown', iss: 'keyway-test', aud: 'keyway-test', iat: 1 }, { key: { ...attacker, kid: 'not-a-kid' } }), /ERR_TOKEN_KID_UNKNOWN/],
    ['EdDSA by another key claiming our kid', await craft(world, { sub: 'svc_a', jti: 'j-forged', iss: 'keyway-test', aud: 'keyway-test', iat: 1 }, { key: { ...attacker, kid } }), /ERR_TOKEN_SIGNATURE/],
    ['embedded jwk of the attacker', await craft(world, { sub: 'svc_a', jti: 'j-jwk', iss: 'keyway-test', aud: 'keyway-test', iat: 1 }, { key: { ...attacker, kid: 'attacker' }, header: { jwk: attackerJwk } }), /ERR_TOKEN_KID_UNKNOWN/],
    ['jku and x5u pointing at the canary', await craft(world, { sub: 'svc_a', jti: 'j-jku', iss: 'keyway-test', aud: 'keyway-test', iat: 1 }, { key: { ...attacker, kid: 'remote' }, header: { jku: url, x5u: url } }), /ERR_TOKEN_KID_UNKNOWN/],
    ...(await Promise.all(
      pathKids.map(async (k, i): Promise<[string, string, RegExp]> => [
        `path-like kid ${JSON.stringify(k).slice(0, 50)}`,
        await craft(world, { sub: 'svc_a', jti: `j-path-${i}`, iss: 'keyway-test', aud: 'keyway-test', iat: 1 }, { key: { ...attacker, kid: k } }),
        /ERR_TOKEN_KID_UNKNOWN/,
      ]),
    )),
  ]
  await running.reload()

  // Through the gateway: every one refused with its code, no upstream dial.
  for (const [name, token, code] of cases) {
    const tunnel = await openTunnel(t, port, world.caPem, token, 'res-a')
    t.match(tunnel.reply, { ok: false, code }, `gateway: ${name}`)
    tunnel.socket.destroy()
  }
  t.equal(upA.accepted, 0, 'no upstream dial')

  // The verifier alone, watched: no file-system request, no socket connect,
  // no DNS look-up, and no synchronous file read while each token is checked.
  const verifier = await worldVerifier(world, running)
  const watched = new Set(['FSREQCALLBACK', 'FSREQPROMISE', 'FILEHANDLE', 'FILEHANDLECLOSEREQ', 'STATWATCHER', 'FSEVENTWRAP', 'TCPCONNECTWRAP', 'PIPECONNECTWRAP', 'GETADDRINFOREQWRAP', 'GETNAMEINFOREQWRAP', 'QUERYWRAP', 'TCPWRAP', 'PIPEWRAP'])
  const seen: string[] = []
  const hook = createHook({
    init(_id: number, type: string) {
      if (watched.has(type)) seen.push(type)
    },
  })
  const syncCalls: string[] = []
  const originals = new Map<string, unknown>()
  const fsAny = fs as unknown as Record<string, unknown>
  for (const name of ['openSync', 'readFileSync', 'statSync', 'lstatSync', 'existsSync', 'accessSync', 'readdirSync', 'realpathSync']) {
    const original = fsAny[name] as (...args: unknown[]) => unknown
    originals.set(name, original)
    fsAny[name] = (...args: unknown[]) => {
      syncCalls.push(`${name}(${String(args[0])})`)
      return original(...args)
    }
  }
  syncBuiltinESMExports()
  const restore = () => {
    for (const [name, original] of originals) fsAny[name] = original
    syncBuiltinESMExports()
  }
  t.teardown(restore)
  hook.enable()
  const codes: string[] = []
  try {
    for (const [, token] of cases) {
      await verifier.verify(token).then(
        () => codes.push('accepted'),
        (err: { code: string }) => codes.push(err.code),
      )
    }
  } finally {
    hook.disable()
    restore()
  }
  t.same(seen, [], 'no file, socket or DNS request was made while verifying')
  t.same(syncCalls, [], 'no synchronous file access while verifying')
  t.equal(canaryHits, 0, 'nothing fetched a key from the network')
  t.equal(codes.length, cases.length)
  t.notOk(codes.includes('accepted'), `every token refused: ${[...new Set(codes)].join(', ')}`)
})

t.test('property 6: missing exp (tokens.requireExpiry), aud, iss or jti are refused; clock skew one second past the tolerance is refused, inside it accepted', async (t) => {
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000)
  const { world, running, port, upA } = await setup(t, { clock, tokens: { requireExpiry: true, clockTolerance: '30s' } })
  const now = Math.floor(clock.now() / 1000)
  const base = { sub: 'svc_a', iss: 'keyway-test', aud: 'keyway-test', iat: now, exp: now + 3600 }
  const without = (key: keyof typeof base | 'jti', extra: Record<string, unknown> = {}) => {
    const claims: Record<string, unknown> = { ...base, jti: newTokenId(), ...extra }
    delete claims[key]
    return claims
  }
  const cases: [string, Record<string, unknown>, RegExp | true][] = [
    ['no exp with requireExpiry', without('exp'), /ERR_TOKEN_CLAIM_MISSING/],
    ['no aud', without('aud'), /ERR_TOKEN_CLAIM_MISSING/],
    ['wrong aud', { ...base, jti: newTokenId(), aud: 'other' }, /ERR_TOKEN_AUDIENCE/],
    ['no iss', without('iss'), /ERR_TOKEN_CLAIM_MISSING/],
    ['wrong iss', { ...base, jti: newTokenId(), iss: 'other' }, /ERR_TOKEN_ISSUER/],
    ['no jti', without('jti'), /ERR_TOKEN_CLAIM_MISSING/],
    ['no sub', without('sub'), /ERR_TOKEN_CLAIM_MISSING/],
    ['exp 31 s ago (1 s past the 30 s tolerance)', { ...base, jti: newTokenId(), exp: now - 31 }, /ERR_TOKEN_EXPIRED/],
    ['exp 29 s ago (inside the tolerance)', { ...base, jti: newTokenId(), exp: now - 29 }, true],
    ['iat 31 s ahead', { ...base, jti: newTokenId(), iat: now + 31 }, /ERR_TOKEN_NOT_YET_VALID/],
    ['iat 29 s ahead', { ...base, jti: newTokenId(), iat: now + 29 }, true],
    ['nbf 31 s ahead', { ...base, jti: newTokenId(), nbf: now + 31 }, /ERR_TOKEN_NOT_YET_VALID/],
    ['nbf 29 s ahead', { ...base, jti: newTokenId(), nbf: now + 29 }, true],
    ['all claims, exp in an hour', { ...base, jti: newTokenId() }, true],
  ]
  const tokens: string[] = []
  for (const [, claims] of cases) tokens.push(await craft(world, claims))
  await running.reload()
  let dials = 0
  for (const [i, [name, , want]] of cases.entries()) {
    const tunnel = await openTunnel(t, port, world.caPem, tokens[i]!, 'res-a')
    if (want === true) {
      t.match(tunnel.reply, { ok: true }, `accepted: ${name}`)
      dials++
    } else t.match(tunnel.reply, { ok: false, code: want }, `refused: ${name}`)
    tunnel.socket.destroy()
  }
  t.equal(upA.accepted, dials, 'only accepted tokens dialled')

  // A session admitted inside the tolerance runs until exp + tolerance, like the verifier says, then ends.
  const skewed = tokens[cases.findIndex(([name]) => name.startsWith('exp 29 s ago'))]!
  const session = await openTunnel(t, port, world.caPem, skewed, 'res-a')
  t.match(session.reply, { ok: true })
  session.socket.resume()
  const ended = new Promise((resolve) => session.socket.once('end', resolve))
  clock.advance(500)
  t.ok(running.gateway.sessions.size >= 1 && !session.socket.destroyed, 'still running inside the tolerance')
  clock.advance(1_000)
  await ended
  t.match(await world.logs.waitFor((l) => l.event === 'session_revoked'), { code: 'ERR_TOKEN_EXPIRED' }, 'ended at exp + tolerance')
})

t.test('property 7: a valid token without a grant for B never reaches B, whatever it holds for A', async (t) => {
  const clock = new ManualClock(Date.now())
  const { upA, upB, world, running, port, tokenA } = await setup(t, { clock })
  // Ways to hold A: through a role, a direct grant (no role), a temporary grant.
  const holdings: Record<string, (doc: PolicyDoc) => void> = {
    role: () => {},
    direct: (doc) => {
      const a = doc.accounts!.find((x) => x.id === 'svc_a')!
      a.roles = []
      a.grants = [{ resource: 'res-a' }]
    },
    temporary: (doc) => {
      const a = doc.accounts!.find((x) => x.id === 'svc_a')!
      a.roles = []
      a.grants = [{ resource: 'res-a', expires: new Date(clock.now() + 3_600_000).toISOString() }]
    },
  }
  const original = structuredClone(world.policy)
  const names = fc.oneof(
    fc.constantFrom('res-b', 'RES-A', 'res-a ', ' res-a', 'res-a\u0000', 'res-\u0430', 'res-a/../res-b', '../res-b', 'res-b\u0000res-a', 'res-a,res-b', '*', 'res-*'),
    fc.string({ minLength: 1, maxLength: 30 }),
  )
  let tried = 0
  for (const [how, edit] of Object.entries(holdings)) {
    const doc = structuredClone(original)
    edit(doc)
    world.writePolicy(doc)
    await running.reload()
    t.match((await openTunnel(t, port, world.caPem, tokenA, 'res-a')).reply, { ok: true }, `${how}: A is reachable`)
    const before = upA.accepted
    await fc.assert(
      fc.asyncProperty(names, async (name) => {
        fc.pre(name !== 'res-a')
        tried++
        const tunnel = await openTunnel(t, port, world.caPem, tokenA, name)
        tunnel.socket.destroy()
        if (tunnel.reply.ok) throw new Error(`"${name}" was admitted holding A by ${how}`)
        // One answer whether the name exists or not: nothing to enumerate.
        if (tunnel.reply.code !== 'ERR_GRANT_DENIED') throw new Error(`"${name}": ${tunnel.reply.code}`)
      }),
      { numRuns: scale(25, 200) },
    )
    t.equal(upA.accepted, before, `${how}: no dial to A for other names`)
  }
  t.equal(upB.accepted, 0, `B's upstream never dialled (${tried} attempts)`)
})

t.test('property 9: key rotation: both keys work during the overlap, the removed key is refused after it, live sessions survive', async (t) => {
  const { world, running, port, tokenA: oldToken } = await setup(t)
  const next = await generateSigningKey()
  const oldJwks = JSON.parse(readFileSync(world.config.keys.jwks, 'utf8')) as { keys: unknown[] }
  writeFileSync(world.config.keys.jwks, JSON.stringify({ keys: [...oldJwks.keys, next.publicJwk] }))
  const nextKey = await importSigningKey(next.privateJwk)
  const jti = newTokenId()
  const newToken = await issueToken(nextKey, { issuer: 'keyway-test', audience: 'keyway-test', subject: 'svc_a', tokenId: jti, kind: 'service', now: world.clock.now() })
  world.editPolicy((doc) => doc.accounts!.find((a) => a.id === 'svc_a')!.tokens!.push({ id: jti, fingerprint: tokenFingerprint(newToken) }))
  await running.reload()

  const oldSession = await openTunnel(t, port, world.caPem, oldToken, 'res-a')
  const newSession = await openTunnel(t, port, world.caPem, newToken, 'res-a')
  t.match([oldSession.reply, newSession.reply], [{ ok: true }, { ok: true }], 'overlap: tokens of both keys open tunnels')

  writeFileSync(world.config.keys.jwks, JSON.stringify({ keys: [next.publicJwk] }))
  await running.reload()
  t.match((await openTunnel(t, port, world.caPem, oldToken, 'res-a')).reply, { ok: false, code: 'ERR_TOKEN_KID_UNKNOWN' }, 'after: the removed key\'s token is refused')
  t.match((await openTunnel(t, port, world.caPem, newToken, 'res-a')).reply, { ok: true }, 'after: the new key\'s token works')
  t.equal(running.gateway.sessions.size >= 2, true, 'sessions opened before the rotation are still live')
  for (const [name, s] of [
    ['old-key session', oldSession],
    ['new-key session', newSession],
  ] as const) {
    s.socket.resume()
    s.socket.end(`still flowing: ${name}`)
    t.equal((await readAll(s.socket)).toString(), `still flowing: ${name}`, `${name} survives the rotation`)
  }
})

t.test('property 10: no raw token anywhere: logs, policy, state directory, metrics, sidecar status', async (t) => {
  const { world, running, port, tokenA } = await setup(t)
  const tokenNone = await world.serviceToken('svc_none')
  await running.reload()
  // Exercise every path that sees a token: tunnels admitted and refused, a revocation, the API through a sidecar.
  const overridePort = await idlePort()
  world.editPolicy((doc) => (doc.resources![0]!.portOverride = overridePort))
  await running.reload()
  const registry = new Registry()
  const sidecar = new Sidecar({
    config: { ...world.config.sidecar, gateways: [{ host: '127.0.0.1', port }] },
    ca: world.caPem,
    token: tokenA,
    logger: world.logger,
    registry,
  })
  t.teardown(() => sidecar.close())
  await sidecar.start()
  await until(() => sidecar.ready() === undefined, 20_000, 'sidecar ready')
  const client = await connect(t, overridePort)
  client.end('through the sidecar')
  t.equal((await readAll(client)).toString(), 'through the sidecar')
  t.match((await openTunnel(t, port, world.caPem, tokenNone, 'res-a')).reply, { ok: false })
  t.match((await openTunnel(t, port, world.caPem, tokenA.slice(0, -2) + 'xx', 'res-a')).reply, { ok: false })
  const live = await openTunnel(t, port, world.caPem, tokenA, 'res-a')
  live.socket.resume()
  world.editPolicy((doc) => (doc.roles = [{ name: 'role-a', grants: [] }]))
  await running.reload()
  await world.logs.waitFor((l) => l.event === 'session_revoked')

  const secrets = [tokenA, tokenNone].flatMap((tok) => [tok, tok.split('.')[2]!])
  const places: Record<string, string> = {
    logs: world.logs.text(),
    'gateway metrics': await running.registry.metrics(),
    'sidecar metrics': await registry.metrics(),
    'sidecar status': JSON.stringify(sidecar.snapshot()),
  }
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]))
  for (const file of walk(world.dir)) places[`file ${file.slice(world.dir.length + 1)}`] = readFileSync(file, 'latin1')
  for (const [where, text] of Object.entries(places)) {
    t.notOk(secrets.some((s) => text.includes(s)), `no token (nor its signature) in ${where}`)
  }
  t.ok(places.logs!.includes(tokenFingerprint(tokenA)), 'the logs carry the fingerprint instead')
  t.ok(Object.keys(places).length > 6, `searched ${Object.keys(places).length} places`)
})
