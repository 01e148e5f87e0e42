import t from 'tap'
import { DocumentError, isKeywayError } from '../../src/errors.js'
import { locateIn, parsePolicyText } from '../../src/policy/parse.js'
import { fixtureText } from '../fixtures/policy/docs.js'

function syntaxProblems(text: string, file = 'p.yaml'): DocumentError {
  try {
    parsePolicyText(text, file)
  } catch (err) {
    if (err instanceof DocumentError) return err
    throw err
  }
  throw new Error('expected a DocumentError')
}

t.test('parses YAML into a plain value and keeps the document', async (t) => {
  const parsed = parsePolicyText(fixtureText('valid.yaml'), 'valid.yaml')
  t.equal(parsed.file, 'valid.yaml')
  const value = parsed.value as { resources: { name: string }[]; accounts: { grants?: { expires?: unknown }[] }[] }
  t.equal(value.resources.length, 5)
  t.equal(value.resources[0]?.name, 'prod-db')
  // YAML 1.2 core schema: timestamps stay strings, validated by the policy itself.
  t.equal(typeof value.accounts[0]?.grants?.[0]?.expires, 'string')
  t.ok(parsed.document.contents, 'the yaml Document is kept for editing and locating')
  t.ok(Object.isFrozen(parsed))
})

t.test('an empty file is refused: a truncated write must not revoke everything', async (t) => {
  t.throws(() => parsePolicyText('', 'empty.yaml'), { code: 'ERR_POLICY_INVALID', problems: [{ file: 'empty.yaml', line: 1, col: 1 }] })
  t.throws(() => parsePolicyText('# only a comment\n', 'empty.yaml'), { code: 'ERR_POLICY_INVALID' })
  t.equal((parsePolicyText('version: 1\n', 'min.yaml').value as { version: number }).version, 1)
})

t.test('YAML syntax errors become located problems, all of them', async (t) => {
  const err = syntaxProblems(fixtureText('syntax-error.yaml'), 'syntax-error.yaml')
  t.equal(err.code, 'ERR_POLICY_INVALID')
  t.ok(isKeywayError(err, 'ERR_POLICY_INVALID'))
  t.equal(err.problems.length, 2)
  t.match(err.problems[0], { file: 'syntax-error.yaml', line: 5, col: 1, key: '', message: /YAML syntax: .*same column/ })
  t.match(err.problems[1], { file: 'syntax-error.yaml', line: 7, col: 1, message: /YAML syntax: .*\]/ })
  t.match(err.message, /^syntax-error\.yaml:5:1: YAML syntax/)
})

t.test('duplicate keys are syntax errors at the second key', async (t) => {
  const err = syntaxProblems('version: 1\nresources: []\nresources: []\n')
  t.equal(err.problems.length, 1)
  t.match(err.problems[0], { line: 3, col: 1, message: /unique/ })
})

t.test('several documents in one file are refused', async (t) => {
  const err = syntaxProblems('version: 1\n---\nversion: 1\n')
  t.match(err.problems[0], { line: 2, message: /YAML syntax/ })
})

t.test('alias bombs are refused, not expanded', async (t) => {
  let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n'
  for (let i = 1; i < 12; i++) text += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`
  const err = syntaxProblems(text)
  t.equal(err.code, 'ERR_POLICY_INVALID')
  t.match(err.problems[0]?.message, /YAML/)
})

t.test('locate: keys of mappings, items of sequences, nearest ancestor for missing paths', async (t) => {
  const text = [
    'version: 1', //                        1
    'resources:', //                        2
    '  - name: db', //                      3
    '    kind: datasource', //              4
    'accounts:', //                         5
    '  - id: svc_a', //                     6
    '    roles: [eng, ops]', //             7
    '    grants:', //                       8
    '      - resource: db', //              9
    '        expires: 2026-01-01T00:00:00Z', // 10
  ].join('\n')
  const p = parsePolicyText(text, 'x.yaml')
  t.same(p.locate([]), { line: 1, col: 1 })
  t.same(p.locate(['version']), { line: 1, col: 1 })
  t.same(p.locate(['resources', 0]), { line: 3, col: 5 })
  t.same(p.locate(['resources', 0, 'kind']), { line: 4, col: 5 })
  t.same(p.locate(['accounts', 0, 'roles', 1]), { line: 7, col: 18 })
  t.same(p.locate(['accounts', 0, 'grants', 0]), { line: 9, col: 9 })
  t.same(p.locate(['accounts', 0, 'grants', 0, 'expires']), { line: 10, col: 9 })
  // A missing key resolves to the mapping that lacks it; a missing item to its list.
  t.same(p.locate(['resources', 0, 'address']), { line: 3, col: 5 })
  t.same(p.locate(['accounts', 3]), { line: 5, col: 1 })
  t.same(locateIn(p.document, p.lineCounter, ['accounts', 0, 'id']), { line: 6, col: 5 })
})
