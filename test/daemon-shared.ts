import t from 'tap'
import { getHeapSpaceStatistics } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { releaseStartupMemory } from '../src/daemon-shared.js'

const newSpace = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0

/** Allocates short-lived garbage that survives a few scavenges, which makes V8 grow its young generation. */
function churn(): void {
  let keep: unknown[] = []
  for (let i = 0; i < 200_000; i++) {
    keep.push({ i, s: `item ${i}` })
    if (keep.length > 50_000) keep = []
  }
}

t.test('with forward.nodeInternals off, releaseStartupMemory does nothing (no V8 flag set after start)', async (t) => {
  // Runs first in this process: no earlier test has set --expose-gc.
  const cancel = releaseStartupMemory(false, 0)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(runInNewContext('typeof gc'), 'undefined', 'gc was never exposed')
  cancel()
})

t.test('releaseStartupMemory shrinks the young generation V8 grew while starting', async (t) => {
  churn()
  const grown = newSpace()
  t.ok(grown > 1024 * 1024, `the churn grew the young generation (${(grown / 1048576).toFixed(1)} MB)`)
  releaseStartupMemory(true, 0)
  const deadline = Date.now() + 10_000
  while (newSpace() >= grown && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(newSpace() < grown, `shrunk from ${(grown / 1048576).toFixed(1)} MB to ${(newSpace() / 1048576).toFixed(1)} MB`)
})
