import t from 'tap'
import { LoginLimiter } from '../../src/auth/index.js'
import { ManualClock } from '../../src/clock.js'

t.test('per account: free failures, then a delay that doubles up to the maximum', async (t) => {
  const clock = new ManualClock()
  const limiter = new LoginLimiter({ clock, accountFreeFailures: 3, addressFreeFailures: 1000, baseDelayMs: 1_000, maxDelayMs: 8_000 })
  for (let i = 0; i < 3; i++) {
    t.equal(limiter.retryAfter('ada@example.com', '10.0.0.1'), 0)
    limiter.failed('ada@example.com', '10.0.0.1')
  }
  t.equal(limiter.retryAfter('ada@example.com', '10.0.0.1'), 0, 'three failures are free')
  const delays: number[] = []
  for (let i = 0; i < 6; i++) {
    limiter.failed('ada@example.com', '10.0.0.1')
    delays.push(limiter.retryAfter('ADA@example.com', '10.0.0.2'))
    clock.advance(delays.at(-1)!)
  }
  t.same(delays, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000], 'grows, capped; the account counts from any address, in any case')
  t.equal(limiter.retryAfter('bob@example.com', '10.0.0.1'), 0, 'another account is not held back')
  limiter.succeeded('ada@example.com', '10.0.0.1')
  t.equal(limiter.retryAfter('ada@example.com', '10.0.0.1'), 0, 'a success starts the account over')
})

t.test('per address: a spray over many accounts is held back too, and a success does not clear it', async (t) => {
  const clock = new ManualClock()
  const limiter = new LoginLimiter({ clock, accountFreeFailures: 100, addressFreeFailures: 5, baseDelayMs: 500 })
  for (let i = 0; i < 6; i++) limiter.failed(`user${i}@example.com`, '10.0.0.7')
  t.equal(limiter.retryAfter('new@example.com', '10.0.0.7'), 500)
  t.equal(limiter.retryAfter('new@example.com', '10.0.0.8'), 0, 'other addresses are not')
  limiter.succeeded('new@example.com', '10.0.0.7')
  t.equal(limiter.retryAfter('new@example.com', '10.0.0.7'), 500)
})

t.test('failures are forgotten after a quiet spell, and memory is bounded', async (t) => {
  const clock = new ManualClock()
  const limiter = new LoginLimiter({ clock, accountFreeFailures: 0, addressFreeFailures: 0, forgetAfterMs: 60_000, maxKeys: 100 })
  limiter.failed('ada@example.com', '10.0.0.1')
  t.ok(limiter.retryAfter('ada@example.com', '10.0.0.1') > 0)
  clock.advance(60_000)
  t.equal(limiter.retryAfter('ada@example.com', '10.0.0.1'), 0)
  for (let i = 0; i < 1000; i++) limiter.failed(`spray${i}@example.com`, `10.1.${i >> 8}.${i & 255}`)
  t.ok(limiter.size <= 100, `at most maxKeys remembered (${limiter.size})`)
})
