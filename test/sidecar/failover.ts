import t from 'tap'
import { setImmediate as tick } from 'node:timers/promises'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, KeywayError } from '../../src/errors.js'
import type { HostPort } from '../../src/net/index.js'
import { Failover, Unreachable, type FailoverOptions } from '../../src/sidecar/failover.js'
import { sinkLogger } from '../fixtures/sidecar/harness.js'

const A: HostPort = { host: '127.0.0.1', port: 1001 }
const B: HostPort = { host: '127.0.0.1', port: 1002 }

function make(extra: Partial<FailoverOptions> = {}) {
  const clock = new ManualClock()
  const { logger, sink } = sinkLogger()
  const failover = new Failover({ gateways: [A, B], clock, logger, random: () => 1, backoffBaseMs: 250, backoffMaxMs: 1_500, ...extra })
  return { failover, clock, sink }
}

async function logged() {
  // pino writes through a stream: let it flush.
  await tick()
}

t.test('needs a gateway', async (t) => {
  t.throws(() => make({ gateways: [] }), { code: 'ERR_CONFIG_INVALID' })
})

t.test('tries gateways in order, skips unreachable ones and starts next time with the one that answered', async (t) => {
  const { failover, sink } = make()
  t.same(failover.state(), { up: false, gateway: '127.0.0.1:1001', failures: 0 })
  const tried: number[] = []
  const result = await failover.run(async (gw) => {
    tried.push(gw.port)
    if (gw.port === A.port) throw new Unreachable('ECONNREFUSED')
    return 'ok'
  })
  t.equal(result, 'ok')
  t.same(tried, [1001, 1002], 'A, then B')
  t.same(failover.state(), { up: true, gateway: '127.0.0.1:1002', failures: 0 })
  tried.length = 0
  await failover.run(async (gw) => tried.push(gw.port))
  t.same(tried, [1002], 'the good one first')
  await logged()
  t.match(sink.events('gateway_attempt_failed'), [{ gateway: '127.0.0.1:1001', reason: 'ECONNREFUSED' }])
  t.equal(sink.events('gateway_up').length, 1, 'gateway_up once per change')
})

t.test('an answer that is an error (a refusal) means the gateway is up; the error is the caller\'s', async (t) => {
  const { failover } = make()
  const refusal = new KeywayError('ERR_GRANT_DENIED', 'no')
  const tried: number[] = []
  const err = await failover
    .run(async (gw) => {
      tried.push(gw.port)
      throw refusal
    })
    .catch((e: unknown) => e)
  t.equal(err, refusal)
  t.same(tried, [1001], 'the next gateway is not asked')
  t.equal(failover.state().up, true)
})

t.test('a round with no gateway: ERR_GATEWAY_UNAVAILABLE, fail fast during backoff, then dial again', async (t) => {
  const { failover, clock, sink } = make()
  let dials = 0
  const down = async (): Promise<never> => {
    dials++
    throw new Unreachable('ECONNREFUSED')
  }
  const err = (await failover.run(down).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_GATEWAY_UNAVAILABLE'))
  t.equal(err.message, 'no gateway reachable: 127.0.0.1:1001: ECONNREFUSED; 127.0.0.1:1002: ECONNREFUSED')
  t.equal(dials, 2)
  t.match(failover.state(), { up: false, failures: 1, lastError: /ECONNREFUSED/, retryAt: clock.now() + 250 })
  t.equal(failover.retryInMs(), 250, 'random() = 1: the full first delay')

  const fast = (await failover.run(down).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(fast, 'ERR_GATEWAY_UNAVAILABLE'))
  t.match(fast.message, /next try in 250 ms/)
  t.equal(dials, 2, 'nothing dialled during backoff')

  clock.advance(250)
  t.equal(failover.retryInMs(), 0)
  await failover.run(down).catch(() => {})
  t.equal(dials, 4, 'a new round after the backoff')
  t.equal(failover.state().failures, 2)
  t.equal(failover.retryInMs(), 500, 'doubled')
  await logged()
  t.match(sink.events('gateway_down'), [{ level: 'warn', failures: 1, retry_in_ms: 250 }], 'warned once; later rounds are debug')
})

t.test('backoff: equal jitter (at least half the exponential delay), capped', async (t) => {
  const delays = async (random: number): Promise<number[]> => {
    const { failover, clock } = make({ random: () => random })
    const out: number[] = []
    for (let i = 0; i < 6; i++) {
      await failover
        .run(async () => {
          throw new Unreachable('down')
        })
        .catch(() => {})
      out.push(failover.retryInMs())
      clock.advance(failover.retryInMs())
    }
    return out
  }
  t.same(await delays(1), [250, 500, 1000, 1500, 1500, 1500])
  t.same(await delays(0), [125, 250, 500, 750, 750, 750])
})

t.test('a refusal of the token itself asks the other gateways too; the first refusal is the answer when none accepts', async (t) => {
  const { failover } = make()
  const stale = new KeywayError('ERR_TOKEN_KID_UNKNOWN', 'unknown key')
  const tried: number[] = []
  t.equal(
    await failover.run(async (gw) => {
      tried.push(gw.port)
      if (gw.port === A.port) throw stale
      return 'accepted'
    }),
    'accepted',
    'a gateway with a newer key set accepts',
  )
  t.same(tried, [1001, 1002])
  t.equal(failover.state().gateway, '127.0.0.1:1002')

  const { failover: both } = make()
  const err = await both
    .run(async (gw) => {
      throw gw.port === A.port ? stale : new KeywayError('ERR_ACCOUNT_UNKNOWN', 'no such account')
    })
    .catch((e: unknown) => e)
  t.equal(err, stale, 'the first refusal')
  t.match(both.state(), { up: true, gateway: '127.0.0.1:1001' }, 'a refusing gateway is up')
})
