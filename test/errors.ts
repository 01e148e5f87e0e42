import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERROR_CODES, KeywayError, DocumentError, toKeywayError, isKeywayError, isErrorCode, formatProblem, httpStatusOf, type ErrorCode } from '../src/errors.js'

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

t.test('docs/errors.md gives every code the HTTP status of the table', async (t) => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const documented = new Map([...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]))
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) t.equal(documented.get(code), httpStatusOf(code), `${code}: its HTTP status`)
})

t.test('one HTTP status per code: client faults 4xx, server and upstream faults 5xx', async (t) => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const status = httpStatusOf(code)
    if (code.startsWith('ERR_TOKEN_') || code === 'ERR_LOGIN_FAILED' || code === 'ERR_ACCOUNT_UNKNOWN') t.equal(status, 401, code)
  }
  t.equal(httpStatusOf('ERR_ACCOUNT_CONN_LIMIT'), 429, 'a limit is not an authentication failure')
  t.equal(httpStatusOf('ERR_ACCOUNT_SUSPENDED'), 403)
  t.equal(httpStatusOf('ERR_GRANT_DENIED'), 404, 'answers alike for a resource that does not exist')
  t.equal(httpStatusOf('ERR_INTERNAL'), 500)
  t.ok(isErrorCode('ERR_USAGE'))
  t.notOk(isErrorCode('ERR_NOPE'))
  t.notOk(isErrorCode('toString'), 'not fooled by the prototype')
  t.notOk(isErrorCode(42))
})
