import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERROR_CODES, KeywayError, DocumentError, toKeywayError, isKeywayError, formatProblem } from '../src/errors.js'

t.test('docs/errors.md lists exactly the codes of src/errors.ts', async (t) => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const documented = new Set([...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]))
  const defined = new Set(Object.keys(ERROR_CODES))
  t.same([...defined].filter((c) => !documented.has(c)), [], 'every code is documented')
  t.same([...documented].filter((c) => !defined.has(c as string)), [], 'every documented code exists')
})

t.test('errors carry code and cause; callers branch on code', async (t) => {
  const cause = new Error('boom')
  const err = new KeywayError('ERR_GRANT_DENIED', 'no grant', { cause })
  t.equal(err.code, 'ERR_GRANT_DENIED')
  t.equal(err.cause, cause)
  t.ok(isKeywayError(err, 'ERR_GRANT_DENIED'))
  t.notOk(isKeywayError(err, 'ERR_TOKEN_EXPIRED'))
  t.equal(toKeywayError(err), err)
  t.equal(toKeywayError(new Error('x')).code, 'ERR_INTERNAL')
  t.equal(toKeywayError('x', 'ERR_POLICY_IO').code, 'ERR_POLICY_IO')
  const doc = new DocumentError('ERR_POLICY_INVALID', [{ file: 'p.yaml', line: 3, col: 5, key: 'roles[0].name', message: 'duplicate' }])
  t.equal(doc.message, 'p.yaml:3:5: duplicate (roles[0].name)')
  t.equal(formatProblem({ file: 'f', line: 1, col: 2, key: '', message: 'm' }), 'f:1:2: m')
})
