import t from 'tap'
import { compilePolicyText } from '../../src/policy/compile.js'
import { explainAccess } from '../../src/policy/explain.js'
import { START, fixtureText } from '../fixtures/policy/docs.js'

const p = compilePolicyText(fixtureText('valid.yaml'), 'valid.yaml')
const at = (iso: string): number => Date.parse(iso)

t.test('allowed by a role: names the role and the resource', async (t) => {
  const e = explainAccess(p, 'ci-pipeline', 'prod-db', START)
  t.same(e, {
    allow: true,
    lines: [
      'service account "ci-pipeline" (svc_ci) may reach prod-db (datasource, postgres at db.internal:5432)',
      'role "engineering" grants prod-db',
    ],
  })
  t.equal(e.code, undefined)
})

t.test('every source is listed: temporary grant until when, then roles', async (t) => {
  t.same(explainAccess(p, 'svc_ci', 'cache', START).lines.slice(1), [
    'a temporary grant gives cache until 2026-01-05T00:00:00.000Z',
    'role "engineering" grants cache',
  ])
  t.same(explainAccess(p, 'alice@example.com', 'prod-db', START).lines, [
    'user account "Alice@Example.com" (usr_alice) may reach prod-db (datasource, postgres at db.internal:5432)',
    'role "ops" grants prod-db',
    'role "engineering" grants prod-db',
  ])
  t.match(explainAccess(p, 'usr_alice', 'bastion', START).lines[0], /at \[fd00::10\]:22\)$/, 'IPv6 upstream in brackets')
})

t.test('direct and temporary grants of a No Role account', async (t) => {
  t.same(explainAccess(p, 'nightly-etl', 'prod-db', START).lines[1], 'a direct grant gives prod-db (the account has No Role)')
  t.same(explainAccess(p, 'svc_etl', 'bastion', START).lines[1], 'a temporary grant gives bastion until 2026-01-03T12:00:00.000Z')
})

t.test('expired temporary grant: says when it ended and how to allow it', async (t) => {
  const e = explainAccess(p, 'svc_ci', 'grafana', at('2026-01-08T00:00:00Z'))
  t.equal(e.allow, false)
  t.equal(e.code, 'ERR_GRANT_EXPIRED')
  t.same(e.lines, [
    'service account "ci-pipeline" (svc_ci) may not reach grafana',
    'its temporary grant for grafana expired at 2026-01-08T00:00:00.000Z',
    'none of its roles ("engineering") grants grafana, and it holds no valid temporary grant for it',
    'to allow it: add grafana to one of its roles, or give a temporary grant (with `expires`); direct grants need No Role',
  ])
  t.equal(explainAccess(p, 'svc_ci', 'grafana', at('2026-01-08T00:00:00Z') - 1).allow, true, 'one ms earlier it was allowed')
})

t.test('no grant: what is missing, for accounts with roles and with No Role', async (t) => {
  const withRole = explainAccess(p, 'svc_ci', 'bastion', START)
  t.equal(withRole.code, 'ERR_GRANT_DENIED')
  t.match(withRole.lines[1], /none of its roles \("engineering"\) grants bastion/)
  t.match(withRole.lines[2], /direct grants need No Role/)
  const noRole = explainAccess(p, 'svc_etl', 'k8s-prod', START)
  t.equal(noRole.code, 'ERR_GRANT_DENIED')
  t.same(noRole.lines.slice(1), [
    'the account has No Role, and no valid direct or temporary grant for k8s-prod',
    'to allow it: give a direct grant or a temporary grant (with `expires`) for k8s-prod, or a role that grants it',
  ])
})

t.test('suspended, unknown account, unknown resource', async (t) => {
  t.same(explainAccess(p, 'bi-tool', 'prod-db', START), {
    allow: false,
    code: 'ERR_ACCOUNT_SUSPENDED',
    lines: ['service account "bi-tool" (svc_bi) is suspended: it reaches no resource until it is unsuspended'],
  })
  t.same(explainAccess(p, 'nobody', 'prod-db', START), {
    allow: false,
    code: 'ERR_ACCOUNT_UNKNOWN',
    lines: ['no account has the id, service name or email "nobody"'],
  })
  t.same(explainAccess(p, 'svc_ci', 'nothing', START), {
    allow: false,
    code: 'ERR_RESOURCE_UNKNOWN',
    lines: ['resource "nothing" does not exist'],
  })
})

t.test('agrees with decide everywhere on the fixture', async (t) => {
  for (const now of [START, at('2026-01-04T00:00:00Z'), at('2026-02-01T00:00:00Z')]) {
    for (const a of [...p.accounts.keys(), 'svc_ghost']) {
      for (const r of [...p.resources.keys(), 'ghost']) {
        const d = p.decide(a, r, now)
        const e = explainAccess(p, a, r, now)
        t.equal(e.allow, d.allow, `${a} ${r}`)
        t.equal(e.code, d.code, `${a} ${r} code`)
        t.ok(e.lines.length > 0)
      }
    }
  }
})

t.test('a resource with credentials: explain says whose login the gateway makes, never where the secret is', async (t) => {
  const { compilePolicy } = await import('../../src/policy/compile.js')
  const policy = compilePolicy({
    resources: [{ name: 'orders', kind: 'datasource', type: 'postgres', address: '127.0.0.1:6543', username: 'app', passwordFile: '/run/secrets/orders-pw' }],
    roles: [{ name: 'etl', grants: ['orders'] }],
    accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] }],
  })
  const e = explainAccess(policy, 'etl', 'orders', START)
  t.ok(e.lines.includes('the gateway logs in upstream as app (a credential is configured)'))
  t.notOk(JSON.stringify(e).includes('/run/secrets'), 'the secret reference is not shown')
})
