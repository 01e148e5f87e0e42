import t from 'tap'
import { formatPath, parseLocated } from '../../src/yaml/document.js'

t.test('formatPath writes dotted keys', async (t) => {
  t.equal(formatPath([]), '')
  t.equal(formatPath(['version']), 'version')
  t.equal(formatPath(['accounts', 3, 'roles', 0]), 'accounts[3].roles[0]')
  t.equal(formatPath(['settings', 'portRange', 1]), 'settings.portRange[1]')
})

t.test('parseLocated points at keys, falls back to the nearest parent, and locates syntax errors', async (t) => {
  const doc = parseLocated('gateway:\n  listen: 127.0.0.1:1\nlist:\n  - a\n  - b\n', 'k.yaml')
  t.same(doc.problems, [])
  t.same(doc.value, { gateway: { listen: '127.0.0.1:1' }, list: ['a', 'b'] })
  t.same(doc.locate(['gateway', 'listen']), { line: 2, col: 3 })
  t.same(doc.locate(['list', 1]), { line: 5, col: 5 })
  t.same(doc.locate(['gateway', 'missing']), { line: 1, col: 1 })
  const bad = parseLocated('a: [\n', 'bad.yaml')
  t.ok(bad.problems.length > 0)
  t.match(bad.problems[0], { file: 'bad.yaml', line: Number })
  t.equal(bad.value, undefined)
})
