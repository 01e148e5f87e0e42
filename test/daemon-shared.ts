import t from 'tap'
import { getHeapSpaceStatistics } from 'node:v8'
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

t.test('releaseStartupMemory shrinks the young generation V8 grew while starting', async (t) => {
  churn()
  const grown = newSpace()
  t.ok(grown > 1024 * 1024, `the churn grew the young generation (${(grown / 1048576).toFixed(1)} MB)`)
  releaseStartupMemory(0)
  const deadline = Date.now() + 10_000
  while (newSpace() >= grown && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(newSpace() < grown, `shrunk from ${(grown / 1048576).toFixed(1)} MB to ${(newSpace() / 1048576).toFixed(1)} MB`)
})
