import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { refuseStartup } from '../../src/pgwire/index.js'
import { readAll, readExactly, socketPair } from '../helpers/net.js'
import { SSL_REQUEST, initial, parseErrorResponse, startup } from '../helpers/pgwire.js'

t.test('an SSLRequest gets N, the StartupMessage gets the FATAL ErrorResponse, then EOF', async (t) => {
  const [client, accepted] = await socketPair(t)
  const done = refuseStartup(accepted, 'ERR_GRANT_DENIED', 'no grant for "warehouse"', { clock: new ManualClock(), timeoutMs: 1_000 })
  client.write(initial(SSL_REQUEST))
  t.equal((await readExactly(client, 1)).toString(), 'N')
  const reading = readAll(client)
  client.resume()
  client.write(startup())
  t.same(parseErrorResponse(await reading), { S: 'FATAL', V: 'FATAL', C: '28000', M: 'keyway: ERR_GRANT_DENIED: no grant for "warehouse"' })
  client.end()
  await done
})

t.test('a client that says nothing is closed after the timeout; one that is not PostgreSQL at once', async (t) => {
  const clock = new ManualClock()
  const [quiet, quietAccepted] = await socketPair(t)
  const closed = refuseStartup(quietAccepted, 'ERR_GRANT_DENIED', 'x', { clock, timeoutMs: 1_000 })
  const reading = readAll(quiet).catch(() => Buffer.alloc(0))
  clock.advance(1_000)
  await closed
  t.equal((await reading).length, 0)

  const [http, httpAccepted] = await socketPair(t)
  const done = refuseStartup(httpAccepted, 'ERR_GRANT_DENIED', 'x', { clock, timeoutMs: 1_000 })
  const got = readAll(http).catch(() => Buffer.alloc(0))
  http.write('GET / HTTP/1.1\r\n\r\n')
  await done
  t.equal((await got).length, 0, 'no ErrorResponse to a stranger')
})
