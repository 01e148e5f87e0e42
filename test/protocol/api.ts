import t from 'tap'
import { ApiErrorSchema, LoginRequestSchema, LoginResponseSchema, parseApiAnswer, ResourcesResponseSchema, WhoamiResponseSchema } from '../../src/protocol/index.js'

const VIEW = {
  settings: { portOverrides: true, autoConnect: false },
  resources: [
    { name: 'pg', kind: 'datasource', type: 'postgres', portOverride: 15432 },
    { name: 'web', kind: 'website', type: 'http', portOverride: null },
  ],
  generation: 3,
}

t.test('GET /v1/resources: a good view passes; a missing portOverride reads as null; unknown keys are dropped', async (t) => {
  t.same(parseApiAnswer(ResourcesResponseSchema, VIEW), VIEW)
  const loose = { ...VIEW, extra: 1, resources: [{ name: 'ssh', kind: 'server', type: 'ssh', later: true }] }
  t.same(parseApiAnswer(ResourcesResponseSchema, loose), { ...VIEW, resources: [{ name: 'ssh', kind: 'server', type: 'ssh', portOverride: null }] })
  t.same(parseApiAnswer(ResourcesResponseSchema, { ...VIEW, resources: [{ ...VIEW.resources[0], kind: 'queue' }] })?.resources[0]?.kind, 'queue', 'a kind from a newer gateway is kept')
})

t.test('GET /v1/resources: every malformed view is refused', async (t) => {
  const bad: unknown[] = [
    null,
    'view',
    [],
    { ...VIEW, settings: null },
    { ...VIEW, settings: { portOverrides: 'yes', autoConnect: false } },
    { ...VIEW, settings: { portOverrides: true } },
    { ...VIEW, resources: 'pg' },
    { ...VIEW, resources: [null] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], name: '' }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], name: 7 }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], kind: 1 }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], type: undefined }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], portOverride: 0 }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], portOverride: 65536 }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], portOverride: 1.5 }] },
    { ...VIEW, resources: [{ ...VIEW.resources[0], portOverride: '15432' }] },
    { ...VIEW, generation: 'one' },
  ]
  for (const body of bad) t.equal(parseApiAnswer(ResourcesResponseSchema, body), undefined, JSON.stringify(body))
})

t.test('whoami, login and errors', async (t) => {
  const who = {
    account: { id: 'svc_1', name: 'etl', type: 'service', roles: ['etl'] },
    token: { id: 'tok_1', fingerprint: 'sha256:0123456789abcdef', kind: 'service', expiresAt: null },
  }
  t.same(parseApiAnswer(WhoamiResponseSchema, who), who)
  t.equal(parseApiAnswer(WhoamiResponseSchema, { ...who, account: { ...who.account, type: 'robot' } }), undefined)
  t.equal(parseApiAnswer(WhoamiResponseSchema, { account: who.account }), undefined)
  t.same(parseApiAnswer(LoginResponseSchema, { token: 'a.b.c', expiresAt: '2026-01-01T00:00:00.000Z' }), { token: 'a.b.c', expiresAt: '2026-01-01T00:00:00.000Z' })
  t.equal(parseApiAnswer(LoginResponseSchema, { token: 1 }), undefined)
  t.ok(LoginRequestSchema.safeParse({ email: 'a@b', password: 'x' }).success)
  t.notOk(LoginRequestSchema.safeParse({ email: 'a@b' }).success)
  t.ok(ApiErrorSchema.safeParse({ code: 'ERR_USAGE', message: 'm' }).success)
})
