import t from 'tap'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : []
  })
}

const code = sources(join(root, 'src')).map((f) => readFileSync(f, 'utf8')).join('\n')

t.test('every metric the code registers is in docs/metrics.md, and every documented one exists', async (t) => {
  const doc = readFileSync(join(root, 'docs/metrics.md'), 'utf8')
  const registered = new Set([...code.matchAll(/name: '(keyway_[a-z_]+)'/g)].map((m) => m[1]!))
  const documented = new Set([...doc.matchAll(/^\| `(keyway_[a-z_]+)` \|/gm)].map((m) => m[1]!))
  t.ok(registered.size > 10, 'found the registrations')
  t.same([...registered].filter((n) => !documented.has(n)), [], 'registered but undocumented')
  t.same([...documented].filter((n) => !registered.has(n)), [], 'documented but not registered')
})

t.test('every log event the code writes is in docs/logging.md', async (t) => {
  const doc = readFileSync(join(root, 'docs/logging.md'), 'utf8')
  const written = new Set([...code.matchAll(/event: '([a-z_]+)'/g)].map((m) => m[1]!))
  const documented = new Set([...doc.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!))
  t.ok(written.size > 10, 'found the events')
  t.same([...written].filter((n) => !documented.has(n)), [], 'written but undocumented')
})
