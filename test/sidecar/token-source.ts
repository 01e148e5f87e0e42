import t from 'tap'
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { resolveTokenSource, TokenSource } from '../../src/sidecar/index.js'
import { fakeToken, sinkLogger, TOKEN } from '../fixtures/sidecar/harness.js'

t.test('one precedence: --token-file, then KEYWAY_TOKEN, then KEYWAY_TOKEN_FILE, then sidecar.tokenFile', async (t) => {
  const env = { KEYWAY_TOKEN: ' from-env \n', KEYWAY_TOKEN_FILE: '/env/token' }
  // loadConfig gives sidecar.tokenFile the flag's value when --token-file is given, else the environment's, else the file's.
  t.same(resolveTokenSource({ flagGiven: true, env, tokenFile: '/flag/token' }), { origin: '--token-file', file: '/flag/token' }, 'the flag beats KEYWAY_TOKEN')
  t.same(resolveTokenSource({ flagGiven: false, env, tokenFile: '/env/token' }), { origin: 'KEYWAY_TOKEN', value: 'from-env' }, 'KEYWAY_TOKEN beats KEYWAY_TOKEN_FILE')
  t.same(resolveTokenSource({ flagGiven: false, env: { KEYWAY_TOKEN_FILE: '/env/token' }, tokenFile: '/env/token' }), { origin: 'KEYWAY_TOKEN_FILE', file: '/env/token' })
  t.same(resolveTokenSource({ flagGiven: false, env: { KEYWAY_SIDECAR_TOKEN_FILE: '/env/token' }, tokenFile: '/env/token' }), {
    origin: 'KEYWAY_SIDECAR_TOKEN_FILE',
    file: '/env/token',
  })
  t.same(resolveTokenSource({ flagGiven: false, env: {}, tokenFile: '/etc/token' }), { origin: 'sidecar.tokenFile', file: '/etc/token' })
  t.same(resolveTokenSource({ flagGiven: false, env: { KEYWAY_TOKEN: '  ' }, tokenFile: '/etc/token' }), { origin: 'sidecar.tokenFile', file: '/etc/token' }, 'a blank KEYWAY_TOKEN is unset')
  const none = t.throws(() => resolveTokenSource({ flagGiven: false, env: {}, tokenFile: '' })) as unknown as KeywayError
  t.ok(isKeywayError(none, 'ERR_TOKEN_MISSING'))
  t.match(none.message, /--token-file FILE, or set KEYWAY_TOKEN, KEYWAY_TOKEN_FILE or sidecar\.tokenFile/)
})

t.test('a token that cannot be parsed is ERR_TOKEN_MALFORMED at once, naming where it came from, never quoting it', async (t) => {
  const { logger } = sinkLogger()
  const dir = t.testdir({ token: 'not-a-token\n', empty: '\n', good: `${TOKEN}\n` })
  for (const spec of [
    { origin: 'KEYWAY_TOKEN', value: 'not-a-token' } as const,
    { origin: '--token-file', file: join(dir, 'token') } as const,
  ]) {
    const err = t.throws(() => new TokenSource({ spec, logger, onChange: () => {} })) as unknown as KeywayError
    t.ok(isKeywayError(err, 'ERR_TOKEN_MALFORMED'), spec.origin)
    t.match(err.message, spec.origin === 'KEYWAY_TOKEN' ? /^the token in KEYWAY_TOKEN is not a Keyway token: / : /^the token in .*token \(--token-file\) is not a Keyway token: /)
    t.notOk(err.message.includes('not-a-token'))
  }
  t.ok(isKeywayError(t.throws(() => new TokenSource({ spec: { origin: 'sidecar.tokenFile', file: join(dir, 'empty') }, logger, onChange: () => {} })), 'ERR_TOKEN_MISSING'))
  t.ok(isKeywayError(t.throws(() => new TokenSource({ spec: { origin: 'sidecar.tokenFile', file: join(dir, 'missing') }, logger, onChange: () => {} })), 'ERR_CONFIG_IO'))
  const good = new TokenSource({ spec: { origin: 'sidecar.tokenFile', file: join(dir, 'good') }, logger, onChange: () => {} })
  t.equal(good.token, TOKEN, 'trimmed')
  t.same(good.describe(), { origin: 'sidecar.tokenFile', file: join(dir, 'good') })
})

/** A Kubernetes Secret volume: `token -> ..data/token`, `..data -> ..<timestamp>`, swapped atomically by renaming a new `..data` link. */
function secretVolume(dir: string, token: string): { swap(token: string): void } {
  let n = 0
  const write = (value: string): string => {
    const name = `..2026_12_04_${String(n++).padStart(2, '0')}`
    mkdirSync(join(dir, name))
    writeFileSync(join(dir, name, 'token'), value, { mode: 0o600 })
    return name
  }
  let current = write(token)
  symlinkSync(current, join(dir, '..data'))
  symlinkSync('..data/token', join(dir, 'token'))
  return {
    swap(value: string) {
      const next = write(value)
      symlinkSync(next, join(dir, '..data_tmp'))
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
      rmSync(join(dir, current), { recursive: true })
      current = next
    },
  }
}

t.test('a Secret volume ..data swap is picked up without a signal, twice in a row; a broken token is refused once', async (t) => {
  const dir = t.testdir({})
  const first = fakeToken({ sub: 'svc_test', jti: 'one' })
  const volume = secretVolume(dir, first)
  const { logger, sink } = sinkLogger()
  const changes: string[] = []
  let waiter: ((token: string) => void) | undefined
  const source = new TokenSource({
    spec: { origin: 'sidecar.tokenFile', file: join(dir, 'token') },
    logger,
    settleMs: 20,
    onChange: (token) => {
      changes.push(token)
      waiter?.(token)
    },
  })
  t.teardown(() => source.close())
  t.equal(source.token, first)
  source.start()
  const nextChange = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error('no change seen within 20 s')), 20_000)
      waiter = (token) => {
        clearTimeout(guard)
        resolve(token)
      }
    })

  for (const jti of ['two', 'three']) {
    const token = fakeToken({ sub: 'svc_test', jti })
    const changed = nextChange()
    volume.swap(token)
    t.equal(await changed, token, `swap to ${jti} seen`)
    t.equal(source.token, token)
  }

  // A broken token never replaces a good one; the failure is logged once.
  volume.swap('garbage')
  // The watcher does not keep the process alive (the sidecar's listeners do): hold it open meanwhile.
  const hold = setTimeout(() => {}, 20_000)
  await sink.waitFor((l) => l.event === 'token_reload_failed')
  clearTimeout(hold)
  t.match(sink.events('token_reload_failed')[0], { level: 'error', code: 'ERR_TOKEN_MALFORMED', origin: 'sidecar.tokenFile' })
  t.equal(source.reload(), false)
  t.equal(sink.events('token_reload_failed').length, 1, 'once per distinct failure')
  t.equal(source.token, fakeToken({ sub: 'svc_test', jti: 'three' }))
  t.equal(changes.length, 2)
  t.notOk(sink.text().includes('svc_test'), 'no token content in the logs')

  // reload() (SIGHUP, a refusal) reads on demand too.
  source.close()
  const last = fakeToken({ sub: 'svc_test', jti: 'four' })
  volume.swap(last)
  t.equal(source.reload(), false, 'closed: no more reads')
})

t.test('reload() picks up a changed file on demand; KEYWAY_TOKEN has nothing to watch', async (t) => {
  const dir = t.testdir({ token: `${TOKEN}\n` })
  const { logger } = sinkLogger()
  const seen: string[] = []
  const source = new TokenSource({ spec: { origin: '--token-file', file: join(dir, 'token') }, logger, onChange: (tok) => seen.push(tok) })
  t.equal(source.reload(), false, 'unchanged')
  const next = fakeToken({ sub: 'svc_test', jti: 'x' })
  writeFileSync(join(dir, 'token'), next)
  t.equal(source.reload(), true)
  t.same(seen, [next])
  source.close()
  source.close()

  const env = new TokenSource({ spec: { origin: 'KEYWAY_TOKEN', value: TOKEN }, logger, onChange: () => {} })
  env.start()
  t.equal(env.reload(), false)
  t.same(env.describe(), { origin: 'KEYWAY_TOKEN' })
  env.close()
})
