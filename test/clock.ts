import t from 'tap'
import { ManualClock, parseDuration, systemClock } from '../src/clock.js'

t.test('ManualClock runs due timers in order, only when advanced', async (t) => {
  const clock = new ManualClock(1000)
  const seen: string[] = []
  clock.setTimeout(() => seen.push('b'), 20)
  clock.setTimeout(() => seen.push('a'), 10)
  const c = clock.setTimeout(() => seen.push('c'), 15)
  clock.clearTimeout(c)
  clock.advance(9)
  t.same(seen, [])
  clock.advance(11)
  t.same(seen, ['a', 'b'])
  t.equal(clock.now(), 1020)
  t.equal(clock.pending, 0)
})

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('500ms'), 500)
  t.equal(parseDuration('30s'), 30_000)
  t.equal(parseDuration('1.5h'), 5_400_000)
  t.equal(parseDuration('7d'), 604_800_000)
  t.equal(parseDuration('soon'), undefined)
  t.equal(parseDuration('5'), undefined)
})

t.test('systemClock timers fire and can be cleared', async (t) => {
  // systemClock timers are unref'd by design: hold the loop open meanwhile.
  const keepAlive = setInterval(() => {}, 1_000)
  t.teardown(() => clearInterval(keepAlive))
  const fired = await new Promise<boolean>((resolve) => {
    systemClock.setTimeout(() => resolve(true), 1)
  })
  t.ok(fired)
  const h = systemClock.setTimeout(() => t.fail('cleared timer fired'), 1)
  systemClock.clearTimeout(h)
  t.ok(Math.abs(systemClock.now() - Date.now()) < 1000)
})
