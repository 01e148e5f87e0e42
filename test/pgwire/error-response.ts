import t from 'tap'
import { encodeErrorResponse, keywayErrorResponse } from '../../src/pgwire/index.js'
import { parseErrorResponse } from '../helpers/pgwire.js'

t.test('an ErrorResponse carries severity, SQLSTATE and message, with a length that matches', async (t) => {
  const fields = parseErrorResponse(encodeErrorResponse({ severity: 'FATAL', sqlState: '57P01', message: 'bye, café' }))
  t.same(fields, { S: 'FATAL', V: 'FATAL', C: '57P01', M: 'bye, café' })
})

t.test('a NUL in the message cannot end the field early', async (t) => {
  t.same(parseErrorResponse(encodeErrorResponse({ severity: 'FATAL', sqlState: '57P01', message: 'a\0b' })).M, 'ab')
})

t.test('keywayErrorResponse says keyway, the code and the message, with the code\'s SQLSTATE', async (t) => {
  t.same(parseErrorResponse(keywayErrorResponse('ERR_GRANT_DENIED', 'no grant')), { S: 'FATAL', V: 'FATAL', C: '28000', M: 'keyway: ERR_GRANT_DENIED: no grant' })
})
