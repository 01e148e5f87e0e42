import t from 'tap'
import { INSTANT_HINT, parseInstant } from '../../src/policy/instant.js'

t.test('parseInstant reads ISO-8601 instants with a zone', async (t) => {
  t.equal(parseInstant('2026-03-01T00:00:00Z'), Date.UTC(2026, 2, 1))
  t.equal(parseInstant('2026-03-01T00:00:00.250Z'), Date.UTC(2026, 2, 1) + 250)
  t.equal(parseInstant('2026-03-01T00:00:00.123456789Z'), Date.UTC(2026, 2, 1) + 123)
  t.equal(parseInstant('2026-03-01T00:00Z'), Date.UTC(2026, 2, 1))
  t.equal(parseInstant('2026-03-01T01:30:00+01:30'), Date.UTC(2026, 2, 1))
  t.equal(parseInstant('2026-02-28T19:00:00-05:00'), Date.UTC(2026, 2, 1))
  t.equal(parseInstant('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29), 'leap day')
  t.equal(parseInstant('2026-03-01t00:00:00z'), Date.UTC(2026, 2, 1), 'RFC 3339 allows lower case')
  t.equal(parseInstant('0099-01-01T00:00:00Z'), new Date('0099-01-01T00:00:00Z').getTime(), 'years below 100')
  for (const bad of ['2025-02-29T00:00:00Z', '2026-04-31T00:00:00Z', '2026-01-01T00:60:00Z', '2026-01-01T00:00:60Z', '2026-01-01T00:00:00+24:00', '2026-01-01 00:00:00Z']) {
    t.ok(Number.isNaN(parseInstant(bad)), bad)
  }
})

t.test('the fast path and the general path agree', async (t) => {
  for (const text of ['2026-03-01T00:00:00Z', '2026-12-31T23:59:59.999Z', '1999-01-01T00:00:00.000Z']) {
    t.equal(parseInstant(text), Date.parse(text), text)
    t.equal(parseInstant(text.replace('Z', '+00:00')), Date.parse(text), `${text} with +00:00`)
  }
  t.equal(parseInstant('2026-01-01T00:00:00.12Z'), Date.UTC(2026, 0, 1) + 120, 'one to nine fraction digits')
  for (const bad of ['2026-13-01T00:00:00Z', '2026-00-10T00:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01T00:00:0aZ', '999-01-01T00:00:00Z', '2026-01-01T00:00:00']) {
    t.ok(Number.isNaN(parseInstant(bad)), bad)
  }
  t.match(INSTANT_HINT, /2026-03-01T00:00:00Z/)
})
