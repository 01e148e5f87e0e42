/**
 * Summarises V8 .cpuprofile files (from `node --cpu-prof`): self time by
 * function (name, file:line), top N, and the share of GC, idle and program.
 *
 *   node dist/bench/cpuprofile-summary.js [--top N] [--by file] FILE.cpuprofile...
 */
import { readFileSync } from 'node:fs'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

const args = process.argv.slice(2)
let top = 40
let byFile = false
const files: string[] = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i])
  else if (args[i] === '--by') byFile = args[++i] === 'file'
  else files.push(args[i]!)
}

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0
    const n = byId.get(p.samples[i]!)!
    const f = n.callFrame
    const url = f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:')
    const key = byFile ? url || `(${f.functionName})` : `${f.functionName || '(anonymous)'}  ${url}${url ? `:${f.lineNumber + 1}` : ''}`
    self.set(key, (self.get(key) ?? 0) + dt)
    total += dt
  }
  const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((s, [, v]) => s + v, 0)
  const busy = total - idle
  console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (not idle)`)
  const rows = [...self].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)
  for (const [k, v] of rows) console.log(`${((v / busy) * 100).toFixed(1).padStart(5)}%  ${(v / 1e3).toFixed(0).padStart(7)} ms  ${k}`)
}
