import t, { type Test } from 'tap'
import type { Problem } from '../../src/errors.js'
import { compilePolicy, validatePolicy } from '../../src/policy/index.js'

/** A policy with one resource carrying `fields`. */
function doc(fields: Record<string, unknown>, type = 'postgres'): unknown {
  return { resources: [{ name: 'warehouse', kind: 'datasource', type, address: '127.0.0.1:6543', ...fields }] }
}

function problems(fields: Record<string, unknown>, type?: string): readonly Problem[] {
  return validatePolicy(doc(fields, type)).problems
}

function one(t: Test, fields: Record<string, unknown>, key: string, message: RegExp, type?: string): void {
  const ps = problems(fields, type)
  t.equal(ps.length, 1, `one problem (got: ${ps.map((p) => `${p.key}: ${p.message}`).join(' | ')})`)
  t.equal(ps[0]?.key, key)
  t.match(ps[0]?.message, message)
}

t.test('a resource with a user and a secret reference compiles to a credential; without them, none', async (t) => {
  const p = compilePolicy(doc({ username: 'app', passwordFile: '/var/run/secrets/keyway/warehouse', database: 'orders', upstreamTls: 'verify-full', upstreamCa: '/etc/keyway/db-ca.pem' }))
  t.same(p.resources.get('warehouse')!.credential, {
    username: 'app',
    secret: { file: '/var/run/secrets/keyway/warehouse' },
    database: 'orders',
    upstreamTls: 'verify-full',
    upstreamCa: '/etc/keyway/db-ca.pem',
  })
  t.same(compilePolicy(doc({ username: 'app', passwordEnv: 'WAREHOUSE_PASSWORD' })).resources.get('warehouse')!.credential, {
    username: 'app',
    secret: { env: 'WAREHOUSE_PASSWORD' },
    database: undefined,
    upstreamTls: 'disable',
    upstreamCa: undefined,
  })
  t.equal(compilePolicy(doc({})).resources.get('warehouse')!.credential, undefined)
  t.not(compilePolicy(doc({ username: 'app', passwordEnv: 'A' })).digest, compilePolicy(doc({ username: 'app', passwordEnv: 'B' })).digest, 'the reference is part of the digest')
})

t.test('every credential rule names the key and the fix', async (t) => {
  one(t, { username: 'app' }, 'resources[0].username', /needs a secret: add passwordFile .* or passwordEnv/)
  one(t, { passwordFile: '/s' }, 'resources[0].passwordFile', /needs `username`/)
  one(t, { username: 'app', passwordFile: '/s', passwordEnv: 'X' }, 'resources[0].passwordEnv', /not both/)
  one(t, { username: 'app', passwordFile: 'relative/pw' }, 'resources[0].passwordFile', /absolute path/)
  one(t, { username: 'app', passwordEnv: 'NOT-A-NAME' }, 'resources[0].passwordEnv', /environment variable name/)
  one(t, { username: 'app', passwordEnv: 'X', upstreamTls: 'prefer' }, 'resources[0].upstreamTls', /disable, require, verify-full/)
  one(t, { username: 'app', passwordEnv: 'X', upstreamTls: 'require', upstreamCa: '/ca.pem' }, 'resources[0].upstreamCa', /only with upstreamTls: verify-full/)
  one(t, { username: 'app', passwordEnv: 'X', upstreamTls: 'verify-full', upstreamCa: 'ca.pem' }, 'resources[0].upstreamCa', /absolute path/)
  one(t, { username: 'app', passwordEnv: 'X', database: '' }, 'resources[0].database', /1 to 63 characters/)
  one(t, { username: 7, passwordEnv: 'X' }, 'resources[0].username', /must be a string/)
  one(t, { username: 'app', passwordEnv: 'X' }, 'resources[0].username', /only for type postgres, redis .* "ssh"/, 'ssh')
  one(t, { password: 'hunter2' }, 'resources[0].password', /unknown key/)
})

t.test('a secret that does not exist does not make the policy invalid: only references are checked', async (t) => {
  t.same(problems({ username: 'app', passwordFile: '/no/such/file' }), [])
})

t.test('redis: credentials with or without a username (the default user); database is postgres-only', async (t) => {
  t.same(compilePolicy(doc({ username: 'app', passwordFile: '/s' }, 'redis')).resources.get('warehouse')!.credential, {
    username: 'app',
    secret: { file: '/s' },
    database: undefined,
    upstreamTls: 'disable',
    upstreamCa: undefined,
  })
  t.same(compilePolicy(doc({ passwordEnv: 'REDIS_PASSWORD', upstreamTls: 'require' }, 'redis')).resources.get('warehouse')!.credential, {
    username: undefined,
    secret: { env: 'REDIS_PASSWORD' },
    database: undefined,
    upstreamTls: 'require',
    upstreamCa: undefined,
  })
  one(t, { username: 'app', passwordEnv: 'X', database: 'orders' }, 'resources[0].database', /pins a PostgreSQL database; this resource is type "redis": remove database/, 'redis')
  one(t, { upstreamTls: 'require' }, 'resources[0].upstreamTls', /needs a secret: add passwordFile/, 'redis')
  one(t, { passwordFile: '/s' }, 'resources[0].passwordFile', /needs `username`/, 'postgres')
})
