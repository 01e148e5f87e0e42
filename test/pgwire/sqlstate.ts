import t from 'tap'
import { ERROR_CODES } from '../../src/errors.js'
import { DEFAULT_SQLSTATE, SQLSTATE_BY_CODE, sqlStateOf } from '../../src/pgwire/index.js'

t.test('every code of the table is a Keyway code and maps to a five-character SQLSTATE', async (t) => {
  for (const [code, state] of Object.entries(SQLSTATE_BY_CODE)) {
    t.ok(code in ERROR_CODES, code)
    t.match(state, /^[0-9A-Z]{5}$/, code)
  }
})

t.test('the ends a gateway brings about have fitting SQLSTATEs; anything else is admin_shutdown', async (t) => {
  t.equal(sqlStateOf('ERR_GRANT_DENIED'), '28000')
  t.equal(sqlStateOf('ERR_GRANT_EXPIRED'), '28000')
  t.equal(sqlStateOf('ERR_ACCOUNT_SUSPENDED'), '28000')
  t.equal(sqlStateOf('ERR_TOKEN_EXPIRED'), '28000')
  t.equal(sqlStateOf('ERR_TOKEN_REVOKED'), '28000')
  t.equal(sqlStateOf('ERR_SHUTTING_DOWN'), '57P01')
  t.equal(sqlStateOf('ERR_INTERNAL'), DEFAULT_SQLSTATE)
  t.equal(DEFAULT_SQLSTATE, '57P01')
})
