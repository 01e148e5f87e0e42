/**
 * Bad input at the gateway's tunnel port: fuzzed, truncated, byte-at-a-time
 * and endless handshakes, bytes right after the hello, malformed tokens.
 */
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { ERROR_CODES } from '../../src/errors.js'
import { encodeHello } from '../../src/protocol/index.js'
import { readAll, writeRandom } from '../helpers/net.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { connectTls, createWorld, openTunnel, readReply } from '../helpers/world.js'
import { fdsBackTo, memory, MiB, openFds, scale, tlsOverRaw, twoResourcePolicy, watchEscapes, worldVerifier } from '../helpers/reliability.js'

async function setup(t: Test, gateway: Record<string, unknown> = {}) {
  const upA = await countingUpstream(t)
  const upB = await countingUpstream(t)
  const world = await createWorld(t, { policy: twoResourcePolicy(upA.port, upB.port), gateway })
  const tokenA = await world.serviceToken('svc_a')
  const tokenNone = await world.serviceToken('svc_none')
  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  return { upA, upB, world, tokenA, tokenNone, running, port, dials: () => upA.accepted + upB.accepted }
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

t.test('property 1: fuzzed, truncated and 1-byte-at-a-time handshakes ending in FIN or RST get a code, dial nothing, leak no descriptor', async (t) => {
  const { upA, upB, world, tokenA, tokenNone, running, port, dials } = await setup(t)
  const escapes = watchEscapes(t)
  // Warm up TLS and the verifier once, then take the descriptor baseline.
  t.match((await openTunnel(t, port, world.caPem, tokenNone, 'res-a')).reply, { ok: false })
  await until(() => running.gateway.openTunnels === 0)
  const baseline = openFds()

  // Handshakes that can never open a tunnel: svc_a is never sent to res-a.
  const resource = fc.oneof(fc.constantFrom('res-b', 'nope', 'res-a\u0000', 'RES-A', 'res-a '), fc.string({ minLength: 1, maxLength: 40 }).filter((r) => r !== 'res-a'))
  const token = fc.oneof(
    fc.constant(tokenNone),
    fc.string({ minLength: 1, maxLength: 200, unit: 'binary-ascii' }),
    fc.constant(tokenA.slice(0, -3) + 'AAA'),
  )
  const complete = fc.record({ resource, token }).map(({ resource, token }) => encodeHello({ resource, token }))
  const frame = fc.oneof(
    { weight: 3, arbitrary: complete },
    // truncated hellos (including tokenA's own hello for res-a, which must never complete)
    { weight: 3, arbitrary: fc.tuple(fc.oneof(complete, fc.constant(encodeHello({ resource: 'res-a', token: tokenA }))), fc.nat()).map(([f, n]) => f.subarray(0, n % f.length)) },
    // one byte flipped
    { weight: 2, arbitrary: fc.tuple(complete, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([f, i, x]) => { const c = Buffer.from(f); c[i % c.length]! ^= x; return c }) },
    // random bytes, sometimes behind a valid magic and version
    { weight: 2, arbitrary: fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 300 })).map(([magic, bytes]) => Buffer.concat([magic ? Buffer.from('KWY\x01') : Buffer.alloc(0), Buffer.from(bytes)])) },
  )
  const plan = fc.record({ frame, chunking: fc.constantFrom('whole', 'bytewise', 'random'), cuts: fc.array(fc.nat(), { maxLength: 6 }), ending: fc.constantFrom('fin', 'rst') })

  const outcomes: Record<string, number> = {}
  let runs = 0
  await fc.assert(
    fc.asyncProperty(plan, async ({ frame, chunking, cuts, ending }) => {
      runs++
      const { raw, tls } = await tlsOverRaw(t, port, world.caPem)
      const replied = readReply(tls).then(
        (r) => r.reply,
        () => undefined,
      )
      let chunks: Buffer[]
      if (chunking === 'whole') chunks = [frame]
      else if (chunking === 'bytewise') chunks = [...frame].map((b) => Buffer.from([b]))
      else {
        const points = [...new Set(cuts.map((c) => (frame.length ? c % frame.length : 0)))].sort((a, b) => a - b)
        chunks = []
        let at = 0
        for (const p of points) {
          chunks.push(frame.subarray(at, p))
          at = p
        }
        chunks.push(frame.subarray(at))
      }
      for (const c of chunks) {
        if (c.length === 0 || tls.destroyed) continue
        // One TLS record per write: the gateway sees the chunks as sent.
        await new Promise<void>((resolve) => tls.write(c, () => resolve()))
      }
      if (ending === 'fin') {
        tls.end()
        const reply = await replied
        // With FIN the gateway always answers (the stream ended or the hello was complete).
        if (!reply || reply.ok || !(reply.code in ERROR_CODES)) throw new Error(`no error code for ${frame.toString('hex').slice(0, 80)}: ${JSON.stringify(reply)}`)
        outcomes[reply.code] = (outcomes[reply.code] ?? 0) + 1
      } else {
        raw.resetAndDestroy()
        outcomes.rst = (outcomes.rst ?? 0) + 1
      }
      await until(() => running.gateway.openTunnels === 0, 20_000, 'the gateway to close the tunnel')
      tls.destroy()
      if (dials() !== 0) throw new Error(`upstream dialled for ${frame.toString('hex').slice(0, 80)}`)
    }),
    { numRuns: scale(150, 1_000), seed: Number(process.env.KEYWAY_FUZZ_SEED ?? Date.now() % 2 ** 31) },
  )
  t.comment(`runs=${runs} outcomes=${JSON.stringify(outcomes)}`)
  t.equal(dials(), 0, 'zero upstream dials')
  t.equal(upA.accepted + upB.accepted, 0)
  const fds = await fdsBackTo(baseline)
  t.ok(fds <= baseline, `descriptors back to the baseline: ${fds} <= ${baseline}`)
  t.same(escapes.errors, [], 'no exception escaped')
  t.match((await openTunnel(t, port, world.caPem, tokenA, 'res-a')).reply, { ok: true }, 'the gateway lives on and still admits a good tunnel')
})

t.test('property 2: a 100 MiB handshake stream with no end is closed at the size cap, memory flat', async (t) => {
  const { world, running, port, dials } = await setup(t)
  const escapes = watchEscapes(t)
  const before = memory()
  const cases = {
    // A header declaring a hello larger than handshakeMaxBytes (8 + 255 + 65535).
    oversized: Buffer.from([0x4b, 0x57, 0x59, 1, 0, 255, 0xff, 0xff]),
    // Garbage from the first byte.
    garbage: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n'),
  }
  for (const [name, head] of Object.entries(cases)) {
    const socket = await connectTls(t, port, world.caPem)
    socket.on('error', () => {})
    const replied = readReply(socket)
    socket.write(head)
    let accepted = 0
    const outcome = await writeRandom(socket, 100 * MiB, { chunkSize: 64 * 1024, onWrite: () => (accepted = socket.bytesWritten) }).then(
      () => 'wrote everything',
      (err: Error) => err.message,
    )
    const { reply } = await replied
    t.match(reply, { ok: false, code: name === 'oversized' ? 'ERR_HANDSHAKE_TOO_LARGE' : 'ERR_HANDSHAKE_MALFORMED' }, `${name}: refused with its code`)
    t.not(outcome, 'wrote everything', `${name}: the gateway closed the stream (${outcome})`)
    t.ok(socket.bytesWritten < 16 * MiB, `${name}: closed after ${(socket.bytesWritten / MiB).toFixed(2)} MiB of 100 (kernel buffers), not read on`)
    t.comment(`${name}: client wrote ${socket.bytesWritten} bytes (last accepted ${accepted}) before the close`)
    socket.destroy()
  }
  await until(() => running.gateway.openTunnels === 0)
  const after = memory()
  const grew = (after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / MiB
  t.comment(`heap+buffers grew ${grew.toFixed(2)} MiB`)
  t.ok(grew < 8, `memory flat: heap + buffers grew ${grew.toFixed(2)} MiB`)
  t.equal(dials(), 0)
  t.same(escapes.errors, [])
})

t.test('property 3: bytes sent right after the hello reach the upstream exactly (hash match), however they are split', async (t) => {
  const { upA, world, tokenA, running, port } = await setup(t)
  let index = 0
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 * 1024 }), fc.array(fc.nat(), { maxLength: 5 }), async (bytes, cuts) => {
      const payload = Buffer.from(bytes)
      const stream = Buffer.concat([encodeHello({ resource: 'res-a', token: tokenA }), payload])
      const points = [...new Set(cuts.map((c) => c % stream.length))].sort((a, b) => a - b)
      const socket = await connectTls(t, port, world.caPem)
      const replied = readReply(socket)
      let at = 0
      for (const p of [...points, stream.length]) {
        if (p > at) await new Promise<void>((resolve) => socket.write(stream.subarray(at, p), () => resolve()))
        at = Math.max(at, p)
      }
      socket.end()
      const { reply, rest } = await replied
      if (!reply.ok) throw new Error(`refused: ${reply.code}`)
      socket.resume()
      const echoed = Buffer.concat([rest, await readAll(socket)])
      const mine = index++
      await until(() => upA.digests[mine] !== undefined, 20_000, 'the upstream to see the end')
      const want = createHash('sha256').update(payload).digest('hex')
      if (upA.digests[mine] !== want) throw new Error(`upstream got other bytes (${payload.length} sent)`)
      if (!echoed.equals(payload)) throw new Error('echo differs')
    }),
    { numRuns: scale(40, 300) },
  )
  // And a large burst written before the reply, without waiting.
  const big = Buffer.alloc(4 * MiB)
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i)
  const socket = await connectTls(t, port, world.caPem)
  const replied = readReply(socket)
  socket.end(Buffer.concat([encodeHello({ resource: 'res-a', token: tokenA }), big]))
  const { reply, rest } = await replied
  t.match(reply, { ok: true })
  socket.resume()
  const echoed = Buffer.concat([rest, await readAll(socket)])
  await until(() => upA.digests[index] !== undefined)
  t.equal(upA.digests[index], createHash('sha256').update(big).digest('hex'), '4 MiB sent with the hello: upstream hash matches')
  t.ok(echoed.equals(big), 'and comes back byte-exact')
  await until(() => running.gateway.sessions.size === 0)
})

t.test('property 4: malformed tokens are rejected with a code and no exception escapes', async (t) => {
  const { world, running, port, dials, tokenA } = await setup(t, { handshakeMaxBytes: 65_536 })
  const escapes = watchEscapes(t)
  const [h, p, s] = tokenA.split('.') as [string, string, string]
  const cases: Record<string, string> = {
    'one segment': 'abc',
    'two segments': `${h}.${p}`,
    'four segments': `${h}.${p}.${s}.${s}`,
    'six segments': 'a.b.c.d.e.f',
    'empty segments': '..',
    'bad base64url (+/)': `${h}.${p}+/.${s}`,
    'bad base64url (padding)': `${h}=.${p}.${s}`,
    'bad base64url (non-canonical)': `${h}.${p}.${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`,
    'non-ASCII': `${h}.${p}.${s}\u00e9`,
    'header a string': `${b64('"EdDSA"')}.${p}.${s}`,
    'header an array': `${b64([{ alg: 'EdDSA' }])}.${p}.${s}`,
    'header null': `${b64('null')}.${p}.${s}`,
    'header a number': `${b64('42')}.${p}.${s}`,
    'header not JSON': `${b64('{"alg":')}.${p}.${s}`,
    'header deeply nested': `${b64('['.repeat(3000) + ']'.repeat(3000))}.${p}.${s}`,
    'kid an object': `${b64({ alg: 'EdDSA', kid: { $ne: 1 }, typ: 'JWT' })}.${p}.${s}`,
    'crit b64=false': `${b64({ alg: 'EdDSA', kid: 'k', crit: ['b64'], b64: false })}.${p}.${s}`,
    'payload not JSON': `${h}.${b64('not json')}.${s}`,
    'payload an array': `${h}.${b64([1, 2])}.${s}`,
    'JWE (5 segments)': `${b64({ alg: 'RSA-OAEP', enc: 'A256GCM' })}.${b64('k')}.${b64('iv')}.${b64('ct')}.${b64('tag')}`,
    '60 kB header': `${b64({ alg: 'EdDSA', kid: 'x'.repeat(45_000) })}.${p}.${s}`,
  }
  const codes: Record<string, string> = {}
  for (const [name, token] of Object.entries(cases)) {
    const tunnel = await openTunnel(t, port, world.caPem, token, 'res-a')
    t.match(tunnel.reply, { ok: false, code: /^ERR_TOKEN_(MALFORMED|ALG|KID_UNKNOWN|SIGNATURE|CLAIM_MISSING)$/ }, name)
    if (!tunnel.reply.ok) codes[name] = tunnel.reply.code
    tunnel.socket.destroy()
  }
  t.comment(JSON.stringify(codes))
  // A 1 MB header cannot even be framed in a hello (token length is 16 bits; the hello is capped).
  const megaToken = `${b64({ alg: 'EdDSA', kid: 'x'.repeat(1_000_000) })}.${p}.${s}`
  const mega = await connectTls(t, port, world.caPem)
  const head = Buffer.from([0x4b, 0x57, 0x59, 1, 0, 5, 0xff, 0xff])
  mega.write(Buffer.concat([head, Buffer.from('res-a'), Buffer.from(megaToken.slice(0, 65_535))]))
  t.match((await readReply(mega)).reply, { ok: false, code: 'ERR_HANDSHAKE_TOO_LARGE' }, '1 MB header over the tunnel: refused at the size cap')
  // The verifier on its own refuses it before parsing.
  const verifier = await worldVerifier(world, running)
  await t.rejects(verifier.verify(megaToken), { code: 'ERR_TOKEN_MALFORMED' }, '1 MB header to the verifier: ERR_TOKEN_MALFORMED')
  for (const [name, token] of Object.entries(cases)) {
    await t.rejects(verifier.verify(token), { code: /^ERR_TOKEN_/ }, `verifier: ${name}`)
  }
  t.equal(dials(), 0, 'no upstream dial')
  t.same(escapes.errors, [], 'no exception escaped')
  t.match((await openTunnel(t, port, world.caPem, tokenA, 'res-a')).reply, { ok: true }, 'the gateway still serves')
})
