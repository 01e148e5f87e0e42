import t from 'tap'
import { closest, distance, suggester } from '../../src/policy/suggest.js'

t.test('distance: edits, with a swap of neighbours as one', async (t) => {
  t.equal(distance('roles', 'roles'), 0)
  t.equal(distance('rolse', 'roles'), 1, 'a swap')
  t.equal(distance('grant', 'grants'), 1, 'an insertion')
  t.equal(distance('adress', 'address'), 1)
  t.equal(distance('abc', 'xyz'), 3)
  t.equal(distance('', 'abc'), 3)
})

t.test('closest: the nearest candidate within a third of the length, case-insensitive', async (t) => {
  t.equal(closest('acounts', ['settings', 'resources', 'roles', 'accounts']), 'accounts')
  t.equal(closest('PortOverride', ['portOverrides', 'autoConnect']), 'portOverrides')
  t.equal(closest('engg', ['eng', 'ops']), 'eng', 'short words allow one edit')
  t.equal(closest('xyz', ['eng', 'ops']), undefined, 'nothing near')
  t.equal(closest('databse', ['database', 'datab']), 'database', 'the nearest wins')
  t.equal(closest('ab', ['abcd']), undefined, 'a length gap beyond the bound is skipped')
})

t.test('suggester: a hint for the first 50 unknown names, none beyond or among 20,000+ names', async (t) => {
  const suggest = suggester()
  const known = new Map([['eng', 0], ['ops', 1]])
  t.equal(suggest('engg', known), ' (did you mean "eng"?)')
  t.equal(suggest('zzzzzz', known), '')
  for (let i = 0; i < 48; i++) suggest('engg', known)
  t.equal(suggest('engg', known), '', 'the budget is spent')
  const big = new Map(Array.from({ length: 20_001 }, (_, i) => [`r${i}`, i] as const))
  t.equal(suggester()('r1x', big), '', 'too many names to search')
})
