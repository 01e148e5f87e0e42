import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { SlabPool } from '../../src/mux/slab-pool.js'

function pool(keeping = (): boolean => true): { pool: SlabPool; clock: ManualClock } {
  const clock = new ManualClock(0)
  return { pool: new SlabPool({ slabSize: 1024, maxFree: 3, idleMs: 1000, clock, keeping }), clock }
}

t.test('a written slab is reused for the next frame', async (t) => {
  const { pool: p } = pool()
  const a = p.take()
  t.equal(a.length, 1024)
  p.written()
  t.equal(p.free, 1)
  t.equal(p.take(), a, 'the same buffer')
  t.equal(p.free, 0)
})

t.test('completions return slabs in write order, and no more than maxFree are kept', async (t) => {
  const { pool: p } = pool()
  const taken = [p.take(), p.take(), p.take(), p.take(), p.take()]
  for (let i = 0; i < taken.length; i++) p.written()
  t.equal(p.free, 3, 'maxFree')
  t.equal(p.take(), taken[2], 'the last kept comes back first')
})

t.test('a failed write stops all reuse: later completions may be out of step', async (t) => {
  const { pool: p } = pool()
  p.take()
  const b = p.take()
  p.written(new Error('EPIPE'))
  t.notOk(p.reusing)
  p.written()
  t.equal(p.free, 0)
  t.not(p.take(), b)
})

t.test('nothing is kept while the owner says so (a connection without streams)', async (t) => {
  let keep = false
  const { pool: p } = pool(() => keep)
  p.take()
  p.written()
  t.equal(p.free, 0)
  keep = true
  p.take()
  p.written()
  t.equal(p.free, 1)
  p.dropFree()
  t.equal(p.free, 0)
})

t.test('idle trimming cuts the free slabs to what the last period took, on the injected clock', async (t) => {
  const { pool: p, clock } = pool()
  for (let i = 0; i < 3; i++) p.take()
  for (let i = 0; i < 3; i++) p.written()
  t.equal(p.free, 3)
  clock.advance(1000)
  t.equal(p.free, 3, 'three were taken in the first period')
  p.take()
  p.written()
  clock.advance(1000)
  t.equal(p.free, 1, 'one taken in the second period: one kept')
  clock.advance(1000)
  t.equal(p.free, 0, 'none taken: none kept')
  clock.advance(5000)
  t.equal(p.free, 0)
})

t.test('close drops every slab and the timer; it is idempotent', async (t) => {
  const { pool: p, clock } = pool()
  p.take()
  p.written()
  p.close()
  p.close()
  t.equal(p.free, 0)
  t.equal(clock.pending, 0, 'no timer left')
  p.written()
  t.equal(p.free, 0)
})
