import t from 'tap'
import { spawn } from 'node:child_process'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { pino, type DestinationStream, type Logger } from 'pino'
import { createLogger, LineBatcher, redactSecrets } from '../../src/observe/index.js'

const SECRET = 'eyJhbGciOiJFUzI1NiJ9.never-in-a-log-line.sig'

/** A destination that keeps every line pino writes. */
function sink(): DestinationStream & { lines: string[] } {
  const lines: string[] = []
  return { lines, write: (line: string) => void lines.push(line) }
}

/** The logger as it was configured before issue 22: pino's path-based redaction. */
function pathRedactingLogger(destination: DestinationStream): Logger {
  return pino(
    {
      level: 'info',
      base: { component: 'gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['token', '*.token', 'authorization', '*.authorization', 'password', '*.password'], censor: '[redacted]' },
    },
    destination,
  )
}

const withoutTime = (line: string): string => line.replace(/"time":"[^"]*"/, '"time":"-"')

/** Lines of every shape the daemons write, and secret-bearing ones. */
function logEverything(logger: Logger): void {
  logger.info(
    { event: 'session_start', session: 'gw1.abc', account: 'acc_1', account_name: 'job', resource: 'pg', client: '127.0.0.1:4000', token_fp: 'sha256:0123456789abcdef' },
    'session started',
  )
  logger.info({ event: 'session_end', session: 'gw1.abc', bytes_in: 10, bytes_out: 20, duration_ms: 1.5, reason: 'done', error: undefined, ok: true, ratio: Infinity }, 'session ended')
  logger.warn({ event: 'tunnel_denied', code: 'ERR_GRANT_DENIED', resource: undefined }, 'access to "pg" denied: "quoted" \\ and\nnewline')
  logger.info('a message alone')
  logger.info({ token: SECRET, authorization: `Bearer ${SECRET}`, password: SECRET, event: 'top' }, 'top-level secrets')
  logger.info({ token: { nested: SECRET } }, 'a secret field holding an object')
  logger.info({ detail: { token: SECRET, keep: 'this' }, headers: { authorization: SECRET }, form: { password: SECRET, user: 'u' } }, 'one level down')
  logger.info({ detail: { token: undefined, keep: 1 } }, 'a present but undefined secret field')
  logger.info({ deep: { a: { token: 'two levels down is not a path' } }, list: [{ token: 'nor in an array' }] }, 'beyond the paths')
  const err = Object.assign(new Error('upstream refused'), { code: 'ERR_X', token: SECRET })
  logger.error({ event: 'session_error', err }, 'an error carrying a token')
  logger.error({ event: 'session_error', err: new Error('plain', { cause: new Error('inner') }) }, 'an error without one')
  const child = logger.child({ token: SECRET, req: { password: SECRET, id: 7 }, component2: 'child' })
  child.info({ event: 'child_line' }, 'bindings redacted too')
}

t.test('redaction: every line is byte for byte what pino path-based redaction wrote, and no secret is written', async (t) => {
  const before = sink()
  const after = sink()
  // One call site: the errors' stacks are the same text.
  for (const logger of [pathRedactingLogger(before), createLogger({ level: 'info', base: { component: 'gateway' }, destination: after })]) logEverything(logger)
  t.equal(after.lines.length, before.lines.length)
  t.same(after.lines.map(withoutTime), before.lines.map(withoutTime), 'fields, order, escaping and censoring unchanged')
  for (const line of after.lines) t.notMatch(line, 'never-in-a-log-line', 'no secret in the line')
  const parsed = after.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(parsed[4], { token: '[redacted]', authorization: '[redacted]', password: '[redacted]', event: 'top' })
  t.match(parsed[6], { detail: { token: '[redacted]', keep: 'this' }, headers: { authorization: '[redacted]' }, form: { password: '[redacted]', user: 'u' } })
  t.match(parsed[9], { err: { type: 'Error', message: 'upstream refused', code: 'ERR_X', token: '[redacted]' } })
  t.match(parsed[11], { token: '[redacted]', req: { password: '[redacted]', id: 7 }, event: 'child_line' })
})

t.test('redactSecrets returns a line without secrets as it is, and never changes the caller objects', async (t) => {
  const plain = { event: 'session_start', session: 's', nested: { a: 1 } }
  t.equal(redactSecrets(plain), plain, 'the same object: nothing copied')
  const detail = { token: SECRET, keep: 1 }
  const err = Object.assign(new Error('x'), { password: SECRET })
  const fields = { token: SECRET, detail, err }
  const out = redactSecrets(fields)
  t.not(out, fields)
  t.same(fields, { token: SECRET, detail: { token: SECRET, keep: 1 }, err }, 'the caller object keeps its values')
  t.equal(detail.token, SECRET)
  t.equal(err.password, SECRET)
  t.ok(out.err instanceof Error, 'an error stays an error (pino serialises it)')
  t.equal(out.err.message, 'x')
  t.equal((out.err as Error & { password: string }).password, '[redacted]')
})

class Collect extends Writable {
  readonly writes: string[] = []
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.writes.push(chunk.toString('utf8'))
    cb()
  }
}

t.test('LineBatcher: the lines of a turn leave in one write after it; flush and close write at once', async (t) => {
  const out = new Collect()
  const exitHooks = process.listenerCount('exit')
  const lines = new LineBatcher(out)
  t.teardown(() => lines.close())
  t.equal(process.listenerCount('exit'), exitHooks, 'no exit hook while nothing waits')
  const logger = createLogger({ destination: lines })
  logger.info({ event: 'a' }, 'one')
  logger.info({ event: 'b' }, 'two')
  t.same(out.writes, [], 'nothing written during the turn')
  t.equal(process.listenerCount('exit'), exitHooks + 1, 'one exit hook once lines wait')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(out.writes.length, 1, 'one write for the turn')
  t.equal(process.listenerCount('exit'), exitHooks + 1, 'the hook stays for later turns: not added and removed per turn')
  logger.info({ event: 'b2' }, 'two and a half')
  t.equal(process.listenerCount('exit'), exitHooks + 1, 'a later turn adds no second hook')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(out.writes.length, 2, 'one write for that turn too')
  t.same(out.writes[0]!.trimEnd().split('\n').map((l) => (JSON.parse(l) as { event: string }).event), ['a', 'b'])
  out.writes.splice(1)

  logger.info({ event: 'c' }, 'three')
  let flushed = false
  logger.flush(() => (flushed = true))
  t.ok(flushed, "pino's flush callback is called")
  t.equal(out.writes.length, 2, 'flush wrote the pending line')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(out.writes.length, 2, 'and nothing is written twice')

  logger.info({ event: 'd' }, 'four')
  lines.close()
  lines.close()
  t.equal(out.writes.length, 3, 'close wrote the pending line')
  t.equal(process.listenerCount('exit'), exitHooks, 'no exit hook left after close (idempotent)')
  logger.info({ event: 'e' }, 'after close')
  t.equal(out.writes.length, 4, 'after close, a line is written at once')
  t.match(out.writes.join(''), /"event":"c"[\s\S]*"event":"d"[\s\S]*"event":"e"/)
})

/** Runs the exit worker; resolves with its exit code and its stderr lines. */
async function exitWorker(mode: 'exit' | 'throw', count: number): Promise<{ code: number | null; lines: string[] }> {
  const worker = fileURLToPath(new URL('../fixtures/observe/exit-worker.ts', import.meta.url))
  const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript') || a.includes('typescript-hooks'))
  const child = spawn(process.execPath, [...execArgv, worker, mode, String(count)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  return { code, lines: stderr.split('\n').filter((l) => l.startsWith('{')) }
}

t.test('LineBatcher: lines buffered when the process exits are written (process.exit, uncaught error)', async (t) => {
  for (const mode of ['exit', 'throw'] as const) {
    const { code, lines } = await exitWorker(mode, 500)
    t.equal(code, mode === 'exit' ? 0 : 1, `${mode}: exit code`)
    t.equal(lines.length, 500, `${mode}: every line logged before the end was written`)
    const last = JSON.parse(lines.at(-1) ?? '{}') as { n?: number; token?: string }
    t.equal(last.n, 499, `${mode}: the last one too`)
    t.equal(last.token, '[redacted]')
  }
})
