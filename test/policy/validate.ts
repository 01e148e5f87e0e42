import t, { type Test } from 'tap'
import { parseHostPort } from '../../src/net/index.js'
import type { Problem } from '../../src/errors.js'
import type { PolicyDoc } from '../../src/policy/types.js'
import {
  DEFAULT_PORT_RANGE,
  NO_ROLE_MESSAGE,
  validatePolicy,
  type ValidatedPolicy,
} from '../../src/policy/validate.js'
import { baseDoc, clone } from '../fixtures/policy/docs.js'

type Doc = Record<string, unknown>

/** Problems of `doc` (none when valid). */
function problems(doc: unknown): readonly Problem[] {
  return validatePolicy(doc).problems
}

/** The validated policy; fails the test when there are problems. */
function valid(t: Test, doc: unknown): ValidatedPolicy {
  const r = validatePolicy(doc)
  t.same(r.problems, [], 'no problems')
  if (!r.ok) throw new Error('expected a valid policy')
  return r.policy
}

/** Asserts exactly one problem, at `key`, whose message matches `message`. */
function one(t: Test, doc: unknown, key: string, message: RegExp | string): void {
  const ps = problems(doc)
  t.equal(ps.length, 1, `one problem (got: ${ps.map((p) => `${p.key}: ${p.message}`).join(' | ')})`)
  t.equal(ps[0]?.key, key)
  if (typeof message === 'string') t.equal(ps[0]?.message, message)
  else t.match(ps[0]?.message, message)
}

/** The base document with a change applied to a copy. */
function edit(fn: (d: Doc & PolicyDoc) => void): Doc {
  const d = clone(baseDoc()) as Doc & PolicyDoc
  fn(d)
  return d
}

t.test('the base document and empty documents are valid', async (t) => {
  const v = valid(t, baseDoc())
  t.equal(v.resources.length, 2)
  t.equal(v.accounts.length, 3)
  t.same(v.settings, { portOverrides: false, autoConnect: false, portRange: [15000, 15999] })
  t.same(valid(t, null).accounts, [])
  t.same(valid(t, {}).settings.portRange, DEFAULT_PORT_RANGE)
  t.same(valid(t, { resources: null, roles: null, accounts: null, settings: null }).roles, [])
})

t.test('the document must be a mapping', async (t) => {
  for (const doc of [[], 'text', 42]) one(t, doc, '', /must be a YAML mapping/)
})

t.test('without a locator problems carry line 0 and the given file', async (t) => {
  const r = validatePolicy({ version: 2 }, { file: 'mem.yaml' })
  t.same(r.problems, [{ file: 'mem.yaml', line: 0, col: 0, key: 'version', message: 'version must be 1 (found 2)' }])
  t.equal(validatePolicy({ version: 2 }).problems[0]?.file, '<policy>')
})

t.test('unknown keys are errors that name the key (typo protection)', async (t) => {
  one(t, { ...baseDoc(), acounts: [] }, 'acounts', /^unknown top-level key `acounts` \(did you mean `accounts`\?\); remove it or fix its spelling/)
  one(t, { ...baseDoc(), extra: 1 }, 'extra', /^unknown top-level key `extra`; remove it/)
  one(t, { settings: { portOverride: true } }, 'settings.portOverride', /unknown key `portOverride` \(did you mean `portOverrides`\?\)/)
  one(t, edit((d) => ((d.resources![0] as unknown as Doc).adress = 'x:1')), 'resources[0].adress', /did you mean `address`/)
  one(t, edit((d) => ((d.roles![0] as unknown as Doc).grant = [])), 'roles[0].grant', /did you mean `grants`/)
  one(t, edit((d) => ((d.accounts![0] as unknown as Doc).rolse = [])), 'accounts[0].rolse', /did you mean `roles`/)
  one(t, edit((d) => ((d.accounts![1]!.grants![0] as unknown as Doc).expire = 'x')), 'accounts[1].grants[0].expire', /did you mean `expires`/)
  one(
    t,
    edit((d) => (d.accounts![0]!.tokens = [{ id: 'a', fingerprint: 'sha256:0123456789abcdef', fingerprnt: 'x' } as never])),
    'accounts[0].tokens[0].fingerprnt',
    /did you mean `fingerprint`/,
  )
})

t.test('version must be 1', async (t) => {
  one(t, { version: 2 }, 'version', 'version must be 1 (found 2)')
  one(t, { version: '1' }, 'version', /must be 1/)
})

t.test('names are unique: resources, roles, account ids, service names, user emails', async (t) => {
  one(
    t,
    edit((d) => d.resources!.push({ name: 'db', kind: 'server', type: 'ssh', address: 'h:22' })),
    'resources[2].name',
    /resource name "db" is already used by resources\[0\]; resource names must be unique/,
  )
  one(t, edit((d) => d.roles!.push({ name: 'eng' })), 'roles[1].name', /role name "eng" is already used by roles\[0\]/)
  one(
    t,
    edit((d) => d.accounts!.push({ id: 'svc_role', type: 'service', name: 'other' })),
    'accounts[3].id',
    /account id "svc_role" is already used by accounts\[0\]; account ids must be unique/,
  )
  one(
    t,
    edit((d) => d.accounts!.push({ id: 'svc_x', type: 'service', name: 'with-role' })),
    'accounts[3].name',
    /name "with-role" is already used by accounts\[0\]; service names and user emails must be unique/,
  )
  // Emails compare without case.
  one(
    t,
    edit((d) => d.accounts!.push({ id: 'usr_x', type: 'user', email: 'ANN@example.test' })),
    'accounts[3].email',
    /email "ANN@example.test" is already used by accounts\[2\]/,
  )
  // One namespace: a service may not be named like a user's email.
  one(
    t,
    edit((d) => d.accounts!.push({ id: 'svc_x', type: 'service', name: 'ann@example.test' })),
    'accounts[3].name',
    /already used by accounts\[2\]/,
  )
})

t.test('a service has a name only; a user has an email', async (t) => {
  one(t, edit((d) => (d.accounts![0]!.email = 'ci@example.test')), 'accounts[0].email', 'a service account has a name only, no email; remove `email`')
  one(t, edit((d) => (d.accounts![0]!.passwordHash = 'scrypt$x')), 'accounts[0].passwordHash', /a service account authenticates with tokens, not a password; remove `passwordHash`/)
  one(t, edit((d) => delete d.accounts![0]!.name), 'accounts[0]', /a service account needs a `name`; add one/)
  one(t, edit((d) => (d.accounts![0]!.name = ' padded')), 'accounts[0].name', /must be non-empty, without surrounding spaces/)
  one(t, edit((d) => delete d.accounts![2]!.email), 'accounts[2]', /a user account needs an `email`; add one/)
  one(t, edit((d) => (d.accounts![2]!.name = 'Ann')), 'accounts[2].name', 'a user is named by its email; remove `name`')
  one(t, edit((d) => (d.accounts![2]!.email = 'ann')), 'accounts[2].email', /"ann" is not an email address; write it as name@domain/)
  one(t, edit((d) => (d.accounts![2]!.passwordHash = 'scrypt$16384$8$1$c2FsdA$aGFzaA')), 'accounts[2].passwordHash', /password hashes do not belong in the policy; move them to the credentials file with `keyway admin users migrate-passwords`/)
  one(t, edit((d) => ((d.accounts![2] as unknown as Doc).type = 'robot')), 'accounts[2].type', /type "robot" is not an account type; use service or user/)
})

t.test('account ids carry the prefix of their type', async (t) => {
  one(t, edit((d) => (d.accounts![0]!.id = 'ci')), 'accounts[0].id', /service account id "ci" must be "svc_" followed by/)
  one(t, edit((d) => (d.accounts![2]!.id = 'svc_ann')), 'accounts[2].id', /user account id "svc_ann" must be "usr_" followed by/)
})

t.test('kind is one of RESOURCE_KINDS, type a lower-case word', async (t) => {
  one(t, edit((d) => ((d.resources![0] as unknown as Doc).kind = 'database')), 'resources[0].kind', /kind "database" is not a resource kind; use one of datasource, server, cluster, website, cloud/)
  for (const bad of ['Postgres', 'my sql', '9p', '']) {
    one(t, edit((d) => (d.resources![0]!.type = bad)), 'resources[0].type', /must be a lower-case word/)
  }
  for (const good of ['postgres', 'k8s', 'sql-server']) valid(t, edit((d) => (d.resources![0]!.type = good)))
})

t.test('address is host:port, port 1–65535, IPv6 in brackets', async (t) => {
  const ok: [string, string, number][] = [
    ['db.internal:5432', 'db.internal', 5432],
    ['10.0.0.1:1', '10.0.0.1', 1],
    ['localhost:65535', 'localhost', 65535],
    ['[::1]:5432', '::1', 5432],
    ['[fd00::10]:22', 'fd00::10', 22],
    ['my_db.svc.cluster.local.:6379', 'my_db.svc.cluster.local.', 6379],
  ]
  for (const [address, host, port] of ok) {
    t.same(parseHostPort(address), { host, port }, address)
    const v = valid(t, edit((d) => (d.resources![0]!.address = address)))
    t.equal(v.resources[0]?.host, host)
    t.equal(v.resources[0]?.port, port)
    t.equal(v.resources[0]?.address, address)
  }
  const bad: [string, RegExp][] = [
    ['db.internal', /has no port/],
    ['db.internal:', /must be a number from 1 to 65535/],
    ['db.internal:0', /must be a number from 1 to 65535/],
    ['db.internal:65536', /must be a number from 1 to 65535/],
    ['db.internal:54x', /must be a number from 1 to 65535/],
    ['::1:5432', /IPv6 address without brackets; put it in brackets: \[::1\]:5432/],
    ['[::1]', /has no port/],
    ['[::1:5432', /unclosed/],
    ['[db]:5432', /not an IPv6 address/],
    ['999.1.1.1:80', /not a valid host name or IPv4 address/],
    ['bad host:80', /not a valid host name/],
    [':80', /not a valid host name/],
  ]
  for (const [address, message] of bad) {
    t.type(parseHostPort(address), 'string', address)
    one(t, edit((d) => (d.resources![0]!.address = address)), 'resources[0].address', message)
  }
  one(t, edit((d) => ((d.resources![0] as unknown as Doc).address = 5432)), 'resources[0].address', /`address` must be a string \(found 5432\)/)
  one(t, edit((d) => delete (d.resources![0] as unknown as Doc).address), 'resources[0]', 'missing required key `address`; add it')
})

t.test('references: unknown roles and resources, with suggestions', async (t) => {
  one(t, edit((d) => d.accounts![0]!.roles!.push('engg')), 'accounts[0].roles[1]', 'unknown role "engg" (did you mean "eng"?); add it under roles: or fix the name')
  one(t, edit((d) => d.accounts![0]!.roles!.push('admins')), 'accounts[0].roles[1]', 'unknown role "admins"; add it under roles: or fix the name')
  one(t, edit((d) => d.roles![0]!.grants!.push('dbb')), 'roles[0].grants[1]', 'unknown resource "dbb" (did you mean "db"?); add it under resources: or fix the name')
  one(
    t,
    edit((d) => d.accounts![1]!.grants!.push({ resource: 'nothing' })),
    'accounts[1].grants[1].resource',
    /^unknown resource "nothing"; add it under resources: or fix the name$/,
  )
})

t.test('No Role rule: a direct grant needs an account without roles', async (t) => {
  // Direct grant + role: the seed's rule, with the fix in the message.
  one(t, edit((d) => (d.accounts![0]!.grants = [{ resource: 'ssh' }])), 'accounts[0].grants[0]', NO_ROLE_MESSAGE)
  t.match(NO_ROLE_MESSAGE, /direct grants need No Role: remove the role, or give the grant an `expires` for temporary access/)
  // An unknown role still makes the account one with a role.
  const ps = problems(edit((d) => d.accounts![1]!.roles = ['ghost']))
  t.same(ps.map((p) => p.key).sort(), ['accounts[1].grants[0]', 'accounts[1].roles[0]'])
  // Temporary grant + role: valid whatever the roles.
  const v = valid(t, edit((d) => (d.accounts![0]!.grants = [{ resource: 'ssh', expires: '2026-02-01T00:00:00Z' }])))
  t.equal(v.grants.expiresAt[v.accounts[0]!.grantStart], Date.UTC(2026, 1, 1))
  // No Role (absent or empty roles): direct grants are fine.
  valid(t, edit((d) => (d.accounts![1]!.roles = [])))
  valid(t, edit((d) => (d.accounts![1]!.roles = null as never)))
  const direct = valid(t, baseDoc())
  t.equal(direct.grants.expiresAt[direct.accounts[1]!.grantStart], Infinity, 'a direct grant never expires')
})

t.test('temporary grants need a real ISO-8601 instant', async (t) => {
  for (const bad of ['2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01T00:00:00', '2026-01-01', 'tomorrow', '']) {
    one(
      t,
      edit((d) => (d.accounts![0]!.grants = [{ resource: 'ssh', expires: bad }])),
      'accounts[0].grants[0].expires',
      /is not a valid ISO-8601 instant; write it like 2026-03-01T00:00:00Z/,
    )
  }
  one(
    t,
    edit((d) => (d.accounts![0]!.grants = [{ resource: 'ssh', expires: 20260101 as never }])),
    'accounts[0].grants[0].expires',
    /expires must be an ISO-8601 instant \(a string\)/,
  )
})

t.test('autoConnect depends on port overrides', async (t) => {
  one(t, { settings: { autoConnect: true } }, 'settings.autoConnect', /\(auto-connect depends on port overrides\); set settings\.portOverrides: true or turn autoConnect off/)
  one(t, { settings: { autoConnect: true, portOverrides: false } }, 'settings.autoConnect', /needs portOverrides: true/)
  t.same(valid(t, { settings: { autoConnect: true, portOverrides: true } }).settings, { portOverrides: true, autoConnect: true, portRange: [15000, 15999] })
})

t.test('port overrides: explicit ports unique, others assigned lowest free first, in document order', async (t) => {
  const doc = (ports: (number | undefined)[], range?: [number, number]): PolicyDoc => ({
    settings: { portOverrides: true, ...(range ? { portRange: range } : {}) },
    resources: ports.map((p, i) => ({
      name: `r${i}`,
      kind: 'server' as const,
      type: 'ssh',
      address: `h${i}:22`,
      ...(p === undefined ? {} : { portOverride: p }),
    })),
  })
  const assigned = (d: PolicyDoc): (number | undefined)[] => valid(t, d).resources.map((r) => r.portOverride)

  t.same(assigned(doc([undefined, undefined, undefined])), [15000, 15001, 15002])
  t.same(assigned(doc([undefined, 15000, undefined, 15002, undefined])), [15001, 15000, 15003, 15002, 15004], 'explicit ports are skipped')
  t.same(assigned(doc([undefined, 22, undefined], [20000, 20001])), [20000, 22, 20001], 'explicit ports outside the range are fine')
  t.same(assigned(doc([undefined, undefined])), assigned(doc([undefined, undefined])), 'deterministic')

  const dup = problems(doc([15005, undefined, 15005]))
  t.equal(dup.length, 1)
  t.equal(dup[0]?.key, 'resources[2].portOverride')
  t.match(dup[0]?.message, /portOverride 15005 is used by both resource "r0" \(resources\[0\]\) and resource "r2" \(resources\[2\]\)/)

  const full = problems(doc([undefined, 30001, undefined, undefined], [30000, 30002]))
  t.equal(full.length, 1)
  t.equal(full[0]?.key, 'resources[3]')
  t.match(full[0]?.message, /no free port left in settings\.portRange \[30000, 30002\] for resource "r3" \(resources\[3\]\); widen settings\.portRange or give the resource a portOverride/)

  for (const bad of [0, 65536, 1.5, '15000']) {
    const ps = problems(doc([bad as number]))
    t.equal(ps.length, 1, String(bad))
    t.equal(ps[0]?.key, 'resources[0].portOverride')
    t.match(ps[0]?.message, /portOverride must be a port number from 1 to 65535/)
  }
  // Overrides off: ports are not assigned, but a bad value is still an error.
  t.same(valid(t, { resources: [{ name: 'a', kind: 'server', type: 'ssh', address: 'h:22', portOverride: 2222 }] }).resources[0]?.portOverride, undefined)
  one(t, { resources: [{ name: 'a', kind: 'server', type: 'ssh', address: 'h:22', portOverride: 0 }] }, 'resources[0].portOverride', /1 to 65535/)

  one(t, { settings: { portRange: [16000, 15000] } }, 'settings.portRange', /portRange \[16000, 15000\] is reversed; write it as \[low, high\]: \[15000, 16000\]/)
  one(t, { settings: { portRange: [15000] } }, 'settings.portRange', /portRange must be a list of two ports/)
  one(t, { settings: { portRange: [15000, 70000] } }, 'settings.portRange[1]', /1 to 65535/)
  t.same(valid(t, { settings: { portRange: [15000, 15000] } }).settings.portRange, [15000, 15000])
})

t.test('token records: ids unique per account, fingerprints sha256: + 16 hex, instants', async (t) => {
  const fp = 'sha256:0123456789abcdef'
  const withTokens = (tokens: unknown[]): Doc => edit((d) => (d.accounts![0]!.tokens = tokens as never))
  const v = valid(t, withTokens([{ id: 'a', fingerprint: fp, created: '2025-12-01T00:00:00Z', expires: '2026-02-01T00:00:00Z' }, { id: 'b', fingerprint: fp }]))
  t.same(v.accounts[0]?.tokens, [
    { id: 'a', fingerprint: fp, expiresAt: Date.UTC(2026, 1, 1) },
    { id: 'b', fingerprint: fp, expiresAt: Infinity },
  ])
  // The same token id on two accounts is fine.
  valid(t, edit((d) => {
    d.accounts![0]!.tokens = [{ id: 'a', fingerprint: fp }]
    d.accounts![1]!.tokens = [{ id: 'a', fingerprint: fp }]
  }))
  one(t, withTokens([{ id: 'a', fingerprint: fp }, { id: 'a', fingerprint: fp }]), 'accounts[0].tokens[1].id', /token id "a" is already listed by tokens\[0\] of this account; token ids must be unique per account/)
  for (const bad of ['sha256:0123456789ABCDEF', 'sha256:0123', 'md5:0123456789abcdef', '0123456789abcdef', 'sha256:0123456789abcdef0']) {
    one(t, withTokens([{ id: 'a', fingerprint: bad }]), 'accounts[0].tokens[0].fingerprint', /must be "sha256:" followed by the first 16 lower-case hex digits/)
  }
  one(t, withTokens([{ id: 'a', fingerprint: fp, expires: 'soon' }]), 'accounts[0].tokens[0].expires', /not a valid ISO-8601 instant/)
  one(t, withTokens([{ id: 'a', fingerprint: fp, created: '2026-02-30T00:00:00Z' }]), 'accounts[0].tokens[0].created', /not a valid ISO-8601 instant/)
  one(t, withTokens([{ id: '', fingerprint: fp }]), 'accounts[0].tokens[0].id', /token id must not be empty/)
  one(t, withTokens([{ fingerprint: fp }]), 'accounts[0].tokens[0]', 'missing required key `id`; add it')
  one(t, withTokens(['tok']), 'accounts[0].tokens[0]', /each token record must be a mapping/)
})

t.test('wrong types and missing keys are reported with the fix', async (t) => {
  one(t, edit((d) => ((d.accounts![0] as unknown as Doc).suspended = 'yes')), 'accounts[0].suspended', '`suspended` must be true or false (found "yes")')
  one(t, edit((d) => ((d.accounts![0] as unknown as Doc).roles = 'eng')), 'accounts[0].roles', '`roles` must be a list (found "eng")')
  one(t, edit((d) => ((d.accounts![0] as unknown as Doc).roles = [7])), 'accounts[0].roles[0]', /each role must be a role name \(found 7\)/)
  one(t, edit((d) => ((d.accounts![1] as unknown as Doc).grants = ['ssh'])), 'accounts[1].grants[0]', /each grant must be a mapping with a `resource`/)
  one(t, edit((d) => ((d.accounts![1] as unknown as Doc).grants = [{}])), 'accounts[1].grants[0]', /missing required key `resource`/)
  one(t, edit((d) => ((d.accounts![1] as unknown as Doc).grants = [{ resource: 3 }])), 'accounts[1].grants[0].resource', /resource must be a resource name \(found 3\)/)
  one(t, edit((d) => ((d.roles![0] as unknown as Doc).grants = [null])), 'roles[0].grants[0]', /each role grant must be a resource name \(found null\)/)
  one(t, edit((d) => (d.roles as unknown[]).push('ops')), 'roles[1]', /each role must be a mapping/)
  one(t, edit((d) => (d.resources as unknown[]).push(null)), 'resources[2]', /each resource must be a mapping/)
  one(t, edit((d) => (d.accounts as unknown[]).push(3)), 'accounts[3]', /each account must be a mapping/)
  one(t, edit((d) => delete (d.accounts![0] as unknown as Doc).type), 'accounts[0]', 'missing required key `type`; add it')
  one(t, edit((d) => delete (d.accounts![0] as unknown as Doc).id), 'accounts[0]', 'missing required key `id`; add it')
  one(t, edit((d) => (d.roles as unknown[]).push({ grants: [] })), 'roles[1]', 'missing required key `name`; add it')
  one(t, edit((d) => d.resources!.push({ name: '', kind: 'server', type: 'ssh', address: 'h:22' })), 'resources[2].name', /must be non-empty/)
  // A broken name breaks what refers to it, and that is reported too.
  t.same(
    problems(edit((d) => delete (d.roles![0] as unknown as Doc).name)).map((p) => p.key),
    ['roles[0]', 'accounts[0].roles[0]', 'accounts[2].roles[0]'],
  )
  one(t, { settings: 'on' }, 'settings', /settings must be a mapping/)
  one(t, { settings: { portOverrides: 'yes' } }, 'settings.portOverrides', /must be true or false/)
  one(t, { resources: {} }, 'resources', '`resources` must be a list (found a mapping)')
})

t.test('duplicates inside one list are reported', async (t) => {
  one(t, edit((d) => d.roles![0]!.grants!.push('db')), 'roles[0].grants[1]', /resource "db" is listed twice in this role; remove one/)
  one(t, edit((d) => d.accounts![0]!.roles!.push('eng')), 'accounts[0].roles[1]', /role "eng" is listed twice; remove one/)
  one(
    t,
    edit((d) => d.accounts![1]!.grants!.push({ resource: 'ssh', expires: '2026-02-01T00:00:00Z' })),
    'accounts[1].grants[1].resource',
    /resource "ssh" is already granted by grants\[0\] of this account; keep one grant per resource/,
  )
})

t.test('every problem is reported at once', async (t) => {
  const doc = {
    version: 1,
    settngs: {},
    settings: { autoConnect: true },
    resources: [
      { name: 'db', kind: 'db', type: 'postgres', address: 'db:5432' },
      { name: 'db', kind: 'server', type: 'ssh', address: 'nohost' },
    ],
    roles: [{ name: 'eng', grants: ['db', 'missing'] }],
    accounts: [
      { id: 'svc_a', type: 'service', name: 'a', roles: ['eng', 'ghost'], grants: [{ resource: 'db' }, { resource: 'db', expires: 'never' }] },
      { id: 'svc_a', type: 'service', name: 'a', email: 'a@b.c' },
      { id: 'usr_b', type: 'user' },
    ],
  }
  const ps = problems(doc)
  t.same(
    ps.map((p) => p.key),
    [
      'settngs',
      'resources[0].kind',
      'resources[1].name',
      'resources[1].address',
      'roles[0].grants[1]',
      'accounts[0].roles[1]',
      'accounts[0].grants[0]',
      'accounts[0].grants[1].expires',
      'accounts[0].grants[1].resource',
      'accounts[1].id',
      'accounts[1].email',
      'accounts[1].name',
      'accounts[2]',
      'settings.autoConnect',
    ].sort((a, b) => ps.findIndex((p) => p.key === a) - ps.findIndex((p) => p.key === b)),
  )
  t.equal(ps.length, 14, 'fourteen problems, one run')
  for (const p of ps) t.ok(p.message.length > 20, `message names the fix: ${p.message}`)
})

