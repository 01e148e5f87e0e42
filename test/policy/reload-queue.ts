import t from 'tap'
import { ReloadQueue } from '../../src/policy/index.js'

/** A reload the test finishes by hand; counts how many started. */
function manual(): { queue: ReloadQueue<number>; started: () => number; finish: (fail?: boolean) => void } {
  let started = 0
  const pending: { resolve: (n: number) => void; reject: (e: Error) => void }[] = []
  const queue = new ReloadQueue<number>(
    () =>
      new Promise<number>((resolve, reject) => {
        started++
        pending.push({ resolve, reject })
      }),
  )
  return {
    queue,
    started: () => started,
    finish: (fail = false) => {
      const next = pending.shift()!
      if (fail) next.reject(new Error('broken'))
      else next.resolve(started)
    },
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

t.test('one reload at a time; asks during it share one queued reload that runs after', async (t) => {
  const m = manual()
  const first = m.queue.reload()
  t.equal(m.queue.running, first)
  const second = m.queue.reload()
  const third = m.queue.reload()
  t.equal(second, third, 'later asks share the queued one')
  t.equal(m.started(), 1, 'the queued one waits')
  m.finish()
  t.equal(await first, 1)
  await turn()
  t.equal(m.started(), 2, 'the queued one started after the first')
  m.finish()
  t.equal(await second, 2)
  t.equal(m.queue.running, undefined)
  const fourth = m.queue.reload()
  t.equal(m.started(), 3, 'idle again: a new ask runs at once')
  m.finish()
  t.equal(await fourth, 3)
})

t.test('a failed reload rejects its askers, and the queued one still runs', async (t) => {
  const m = manual()
  const first = m.queue.reload()
  const queued = m.queue.reload()
  m.finish(true)
  await t.rejects(first, /broken/)
  await turn()
  t.equal(m.started(), 2)
  m.finish()
  t.equal(await queued, 2)
})
