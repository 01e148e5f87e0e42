import t from 'tap'
import { pino } from 'pino'
import { ManualClock } from '../../src/clock.js'
import { RefusalAudit } from '../../src/observe/index.js'
import { LogSink } from '../helpers/world.js'

function setup(ratePerSecond: number, burst?: number) {
  const clock = new ManualClock()
  const logs = new LogSink()
  const logger = pino({ level: 'debug', base: {} }, logs)
  const audit = new RefusalAudit({ logger, clock, ratePerSecond, ...(burst === undefined ? {} : { burst }) })
  return { clock, logs, audit }
}

const refusal = (code: 'ERR_TOKEN_EXPIRED' | 'ERR_GRANT_DENIED' = 'ERR_TOKEN_EXPIRED') => ({
  event: 'tunnel_denied',
  code,
  client: '127.0.0.9:4000',
  account: 'svc_x',
  tokenFp: 'sha256:0123456789abcdef',
  extra: { resource: 'db' },
})

t.test('a refusal is one line with code, client, account and fingerprint', async (t) => {
  const { logs, audit } = setup(10)
  audit.refused(refusal(), 'token rejected')
  t.match(logs.events('tunnel_denied'), [{ code: 'ERR_TOKEN_EXPIRED', client: '127.0.0.9:4000', account: 'svc_x', token_fp: 'sha256:0123456789abcdef', resource: 'db', msg: 'token rejected' }])
})

t.test('a flood is cut to the rate; the rest is one summary line a second, by event and code', async (t) => {
  const { clock, logs, audit } = setup(5)
  for (let i = 0; i < 1000; i++) audit.refused(refusal(i % 2 === 0 ? 'ERR_TOKEN_EXPIRED' : 'ERR_GRANT_DENIED'), 'denied')
  t.equal(logs.events('tunnel_denied').length, 5, 'the burst passes, the rest waits')
  t.equal(logs.events('audit_suppressed').length, 0, 'the summary comes after a second')
  clock.advance(1_000)
  t.match(logs.events('audit_suppressed'), [{ suppressed: 995, counts: { 'tunnel_denied ERR_TOKEN_EXPIRED': 497, 'tunnel_denied ERR_GRANT_DENIED': 498 } }])
  // A second later the bucket is full again.
  for (let i = 0; i < 10; i++) audit.refused(refusal(), 'denied')
  t.equal(logs.events('tunnel_denied').length, 10)
  clock.advance(1_000)
  t.equal(logs.events('audit_suppressed').length, 2)
  t.equal(logs.events('audit_suppressed')[1]!.suppressed, 5)
  clock.advance(10_000)
  t.equal(logs.events('audit_suppressed').length, 2, 'no summary when nothing was held back')
})

t.test('close() writes the pending summary and leaves no timer', async (t) => {
  const { clock, logs, audit } = setup(1)
  audit.refused(refusal(), 'a')
  audit.refused(refusal(), 'b')
  audit.close()
  audit.close()
  t.match(logs.events('audit_suppressed'), [{ suppressed: 1 }])
  t.equal(clock.pending, 0)
})
