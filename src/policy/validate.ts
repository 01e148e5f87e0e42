import { parseHostPort } from '../net/index.js'
import { formatPath, type SourcePosition, type YamlPath } from '../yaml/index.js'
import type { Problem } from '../errors.js'
import { CREDENTIAL_TYPES, RESOURCE_KINDS, UPSTREAM_TLS_MODES, type AccountType, type ResourceCredential, type ResourceKind, type Settings, type UpstreamTlsMode } from './types.js'
import { INSTANT_HINT, parseInstant } from './instant.js'
import { closest, suggester, type Suggester } from './suggest.js'

// Shape is checked by hand, not with zod: on the 1,000,000-grant benchmark
// policy zod 4 alone took 330–600 ms (and copied the whole document), while
// the cross-reference pass has to walk every grant anyway and must tolerate
// malformed entries to report every problem at once. One hand-written pass
// does both; see bench/policy-compile.ts. Measured again when the instant
// parser (instant.ts) and the suggestions (suggest.ts) moved out: a strict zod
// schema of the shape alone took 0.9–1.6 s on that policy against 1.4–2.6 s
// for this whole pass (shape, references, defaults, ports), on a loaded
// 2-core machine, so zod would add most of a pass rather than replace one.

/** A path into the policy document: keys and sequence indexes, e.g. `['accounts', 3, 'roles', 0]`. */
export type PolicyPath = YamlPath

export type { SourcePosition }

/** Maps a document path to its position in the source (see `ParsedPolicy.locate`). */
export type Locate = (path: PolicyPath) => SourcePosition

/** Options of {@link validatePolicy}. */
export interface ValidateOptions {
  /** File name put in every problem. Default `<policy>`. */
  file?: string
  /** Locates a path in the source. Without it, problems carry line 0, col 0. */
  locate?: Locate
}

/** A resource after validation: address split, override port assigned. */
export interface ValidatedResource {
  readonly name: string
  readonly kind: ResourceKind
  readonly type: string
  readonly address: string
  /** Host without IPv6 brackets, ready for `net.connect`. */
  readonly host: string
  readonly port: number
  /** Explicit or assigned override port when `settings.portOverrides` is on, else undefined. */
  readonly portOverride: number | undefined
  /** Upstream credentials (the reference to the secret, never the secret), or undefined. */
  readonly credential: ResourceCredential | undefined
}

/** A role after validation. */
export interface ValidatedRole {
  readonly name: string
  /** Granted resource names, in document order. */
  readonly grants: readonly string[]
  /** The same grants as indexes into {@link ValidatedPolicy.resources}. */
  readonly resourceIndexes: Int32Array
}

/** A token record after validation. */
export interface ValidatedTokenRecord {
  readonly id: string
  readonly fingerprint: string
  /** Epoch ms, or Infinity when the record has no `expires`. */
  readonly expiresAt: number
}

/** An account after validation. */
export interface ValidatedAccount {
  readonly id: string
  readonly type: AccountType
  /** Service name or user email. */
  readonly name: string
  readonly email: string | undefined
  readonly roles: readonly string[]
  readonly suspended: boolean
  /** This account's grants are `ValidatedPolicy.grants[grantStart .. grantEnd)`. */
  readonly grantStart: number
  readonly grantEnd: number
  readonly tokens: readonly ValidatedTokenRecord[]
}

/**
 * Every account grant of the policy, grouped by account in document order,
 * as two parallel typed arrays (a million grants cost two allocations).
 */
export interface ValidatedGrants {
  readonly count: number
  /** Index into {@link ValidatedPolicy.resources}. */
  readonly resource: Int32Array
  /** Epoch ms; Infinity for a direct (permanent) grant. */
  readonly expiresAt: Float64Array
}

/** The document after validation: every rule holds, every default applied. */
export interface ValidatedPolicy {
  readonly settings: Settings
  readonly resources: readonly ValidatedResource[]
  readonly roles: readonly ValidatedRole[]
  readonly accounts: readonly ValidatedAccount[]
  readonly grants: ValidatedGrants
}

/** Outcome of {@link validatePolicy}: the normalized policy, or every problem found. */
export type ValidationResult =
  | { readonly ok: true; readonly policy: ValidatedPolicy; readonly problems: readonly [] }
  | { readonly ok: false; readonly policy: undefined; readonly problems: readonly Problem[] }

/** Default `settings.portRange`. */
export const DEFAULT_PORT_RANGE: readonly [number, number] = Object.freeze([15000, 15999] as [number, number])

/** The message of the seed's No Role rule, used wherever it is enforced. */
export const NO_ROLE_MESSAGE =
  'direct grants need No Role: remove the role, or give the grant an `expires` for temporary access'

/** Allowed keys of each object of the document, for typo protection. */
export const POLICY_KEYS = Object.freeze({
  policy: Object.freeze(['version', 'settings', 'resources', 'roles', 'accounts'] as const),
  settings: Object.freeze(['portOverrides', 'autoConnect', 'portRange'] as const),
  resource: Object.freeze(['name', 'kind', 'type', 'address', 'portOverride', 'username', 'passwordFile', 'passwordEnv', 'database', 'upstreamTls', 'upstreamCa'] as const),
  role: Object.freeze(['name', 'grants'] as const),
  account: Object.freeze(['id', 'type', 'name', 'email', 'roles', 'suspended', 'grants', 'tokens', 'passwordHash'] as const),
  grant: Object.freeze(['resource', 'expires'] as const),
  token: Object.freeze(['id', 'fingerprint', 'created', 'expires'] as const),
})

const FINGERPRINT = /^sha256:[0-9a-f]{16}$/
const TYPE_WORD = /^[a-z][a-z0-9-]*$/
const NAME = /^\S(?:[^\n\r\t]*\S)?$/
const EMAIL = /^[^\s@]+@[^\s@]+$/
const SERVICE_ID = /^svc_[A-Za-z0-9._-]+$/
const USER_ID = /^usr_[A-Za-z0-9._-]+$/
const KIND_SET: ReadonlySet<string> = new Set(RESOURCE_KINDS)

/** The account and token patterns of the validator, for `pack-rows.ts`, which checks rows by the same rules. */
export const ACCOUNT_PATTERNS = Object.freeze({ serviceId: SERVICE_ID, userId: USER_ID, name: NAME, email: EMAIL, fingerprint: FINGERPRINT })

type Report = (path: PolicyPath, message: string) => void

interface RawProblem {
  path: PolicyPath
  message: string
}

/**
 * Validates a policy document (the plain value of the YAML, or an object built
 * in memory) and normalizes it. Pure: no I/O, no clock. Reports every problem
 * found, not just the first, each with its dotted key, a message that names
 * the fix and, when `locate` is given, its line and column.
 */
export function validatePolicy(doc: unknown, options: ValidateOptions = {}): ValidationResult {
  const raw: RawProblem[] = []
  const report: Report = (path, message) => {
    raw.push({ path, message })
  }
  const root = doc === null || doc === undefined ? {} : doc
  if (!isRecord(root)) {
    report([], `the policy must be a YAML mapping with the keys ${POLICY_KEYS.policy.join(', ')} (found ${describe(root)})`)
    return fail(raw, options)
  }
  unknownKeys(root, POLICY_KEYS.policy, [], report)
  if (root.version !== undefined && root.version !== 1) report(['version'], `version must be 1 (found ${describe(root.version)})`)
  const settings = checkSettings(root.settings, report)
  const resources = checkResources(listAt(root, 'resources', [], report), settings, report)
  const suggest = suggester()
  const roles = checkRoles(listAt(root, 'roles', [], report), resources.index, suggest, report)
  const accounts = checkAccounts(listAt(root, 'accounts', [], report), resources.index, roles.index, suggest, report)
  if (raw.length > 0) return fail(raw, options)
  return {
    ok: true,
    policy: { settings, resources: resources.valid, roles: roles.valid, accounts: accounts.valid, grants: accounts.grants },
    problems: [],
  }
}

function fail(raw: RawProblem[], options: ValidateOptions): ValidationResult {
  const file = options.file ?? '<policy>'
  const locate = options.locate
  const seen = new Set<string>()
  const problems: Problem[] = []
  for (const p of raw) {
    const key = formatPath(p.path)
    const id = `${key}\u0000${p.message}`
    if (seen.has(id)) continue
    seen.add(id)
    const pos = locate ? locate(p.path) : { line: 0, col: 0 }
    problems.push({ file, line: pos.line, col: pos.col, key, message: p.message })
  }
  // Document order reads best; the sort is stable, so equal positions keep report order.
  if (locate) problems.sort((a, b) => a.line - b.line || a.col - b.col)
  return { ok: false, policy: undefined, problems }
}

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

function checkSettings(value: unknown, report: Report): Settings {
  const dflt = { portOverrides: false, autoConnect: false, portRange: DEFAULT_PORT_RANGE }
  if (value === undefined || value === null) return Object.freeze(dflt)
  if (!isRecord(value)) {
    report(['settings'], `settings must be a mapping with ${POLICY_KEYS.settings.join(', ')} (found ${describe(value)})`)
    return Object.freeze(dflt)
  }
  unknownKeys(value, POLICY_KEYS.settings, ['settings'], report)
  const portOverrides = booleanAt(value, 'portOverrides', ['settings'], report) === true
  const autoConnect = booleanAt(value, 'autoConnect', ['settings'], report) === true
  let portRange = DEFAULT_PORT_RANGE
  const r = value.portRange
  if (r !== undefined) {
    if (!Array.isArray(r) || r.length !== 2) {
      report(['settings', 'portRange'], `portRange must be a list of two ports, [low, high] (found ${describe(r)})`)
    } else {
      const ok0 = portValue(r[0], ['settings', 'portRange', 0], report)
      const ok1 = portValue(r[1], ['settings', 'portRange', 1], report)
      if (ok0 && ok1) {
        if (r[0] > r[1]) report(['settings', 'portRange'], `portRange [${r[0]}, ${r[1]}] is reversed; write it as [low, high]: [${r[1]}, ${r[0]}]`)
        else portRange = Object.freeze([r[0], r[1]] as [number, number])
      }
    }
  }
  if (autoConnect && !portOverrides) {
    report(
      ['settings', 'autoConnect'],
      'autoConnect: true needs portOverrides: true (auto-connect depends on port overrides); set settings.portOverrides: true or turn autoConnect off',
    )
  }
  return Object.freeze({ portOverrides, autoConnect, portRange })
}

function checkResources(
  items: readonly unknown[],
  settings: Settings,
  report: Report,
): { valid: ValidatedResource[]; index: Map<string, number> } {
  const index = new Map<string, number>()
  const valid: ValidatedResource[] = []
  const explicit: (number | undefined)[] = []
  for (let i = 0; i < items.length; i++) {
    const path = ['resources', i]
    const r = items[i]
    explicit.push(undefined)
    if (!isRecord(r)) {
      report(path, `each resource must be a mapping with name, kind, type and address (found ${describe(r)})`)
      continue
    }
    unknownKeys(r, POLICY_KEYS.resource, path, report)
    const n = nameAt(r, 'name', path, report)
    if (n !== undefined) {
      const first = index.get(n)
      if (first !== undefined) report([...path, 'name'], `resource name "${n}" is already used by resources[${first}]; resource names must be unique, rename one`)
      else index.set(n, i)
    }
    const kind = stringAt(r, 'kind', path, report, true)
    let kindOk = false
    if (kind !== undefined) {
      if (KIND_SET.has(kind)) kindOk = true
      else report([...path, 'kind'], `kind "${kind}" is not a resource kind; use one of ${RESOURCE_KINDS.join(', ')}`)
    }
    const type = stringAt(r, 'type', path, report, true)
    let typeOk = false
    if (type !== undefined) {
      if (TYPE_WORD.test(type)) typeOk = true
      else report([...path, 'type'], `type "${type}" must be a lower-case word such as postgres, mysql, redis, ssh or http`)
    }
    const address = stringAt(r, 'address', path, report, true)
    let addr: { host: string; port: number } | undefined
    if (address !== undefined) {
      const a = parseHostPort(address)
      if (typeof a === 'string') report([...path, 'address'], a)
      else addr = a
    }
    if (r.portOverride !== undefined && portValue(r.portOverride, [...path, 'portOverride'], report)) explicit[i] = r.portOverride as number
    const credential = checkCredential(r, typeOk ? type : undefined, path, report)
    if (n !== undefined && kindOk && typeOk && addr !== undefined) {
      valid.push({ name: n, kind: kind as ResourceKind, type: type!, address: address!, host: addr.host, port: addr.port, portOverride: explicit[i], credential })
    }
  }
  const ports = settings.portOverrides ? assignPorts(items, explicit, settings.portRange, report) : undefined
  // Only a valid policy is used, and then every resource is in `valid`, in document order.
  if (valid.length === items.length) {
    for (let i = 0; i < valid.length; i++) valid[i] = { ...valid[i]!, portOverride: ports?.[i] }
  }
  return { valid, index }
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const UPSTREAM_USER = /^[^\u0000]{1,63}$/
const TLS_SET: ReadonlySet<string> = new Set(UPSTREAM_TLS_MODES)
const CREDENTIAL_TYPE_SET: ReadonlySet<string> = new Set(CREDENTIAL_TYPES)

/**
 * The credential fields of a resource: a user and exactly one secret
 * reference, or none of them. Only references are checked here (no I/O): a
 * missing secret fails that resource on the gateway that lacks it
 * (ERR_CREDENTIAL_UNAVAILABLE), never the policy.
 */
function checkCredential(r: Record<string, unknown>, type: string | undefined, path: PolicyPath, report: Report): ResourceCredential | undefined {
  const username = stringAt(r, 'username', path, report, false)
  const file = stringAt(r, 'passwordFile', path, report, false)
  const env = stringAt(r, 'passwordEnv', path, report, false)
  const database = stringAt(r, 'database', path, report, false)
  const tls = stringAt(r, 'upstreamTls', path, report, false)
  const ca = stringAt(r, 'upstreamCa', path, report, false)
  const present = (['username', 'passwordFile', 'passwordEnv', 'database', 'upstreamTls', 'upstreamCa'] as const).filter((k) => r[k] !== undefined)
  if (present.length === 0) return undefined
  let ok = true
  const bad = (key: string, message: string): void => {
    ok = false
    report([...path, key], message)
  }
  if (type !== undefined && !CREDENTIAL_TYPE_SET.has(type)) {
    bad(present[0]!, `the gateway injects credentials only for type ${CREDENTIAL_TYPES.join(', ')} (this resource is type "${type}"); remove ${present.join(', ')}`)
  }
  // Redis has a default user that logs in with the password alone (AUTH <password>); PostgreSQL always names one.
  const userOptional = type === 'redis'
  if (r.username === undefined && !userOptional) {
    bad(present[0]!, `${present[0]} needs \`username\`: add the upstream user the gateway logs in as, or remove ${present.join(', ')}`)
  } else if (username !== undefined && !UPSTREAM_USER.test(username)) {
    bad('username', 'username must be 1 to 63 characters, without NUL')
  }
  if ((r.username !== undefined || userOptional) && r.passwordFile === undefined && r.passwordEnv === undefined) {
    const key = r.username !== undefined ? 'username' : present[0]!
    bad(key, `${key} needs a secret: add passwordFile (a file the gateway reads, such as a mounted Kubernetes Secret) or passwordEnv (a variable of the gateway process)`)
  }
  if (r.database !== undefined && type !== undefined && type !== 'postgres') {
    bad('database', `database pins a PostgreSQL database; this resource is type "${type}": remove database`)
  }
  if (r.passwordFile !== undefined && r.passwordEnv !== undefined) bad('passwordEnv', 'give passwordFile or passwordEnv, not both; remove one')
  if (file !== undefined && !file.startsWith('/')) bad('passwordFile', `passwordFile must be an absolute path on the gateway, e.g. /var/run/secrets/keyway/warehouse-password (found "${file}")`)
  if (env !== undefined && !ENV_NAME.test(env)) bad('passwordEnv', `passwordEnv must be an environment variable name such as WAREHOUSE_PASSWORD (found "${env}")`)
  if (database !== undefined && (database.length === 0 || database.length > 63 || database.includes('\u0000'))) bad('database', 'database must be 1 to 63 characters, without NUL')
  if (tls !== undefined && !TLS_SET.has(tls)) bad('upstreamTls', `upstreamTls "${tls}" is not a TLS mode; use one of ${UPSTREAM_TLS_MODES.join(', ')}`)
  if (ca !== undefined) {
    if (!ca.startsWith('/')) bad('upstreamCa', `upstreamCa must be an absolute path on the gateway (found "${ca}")`)
    if (tls !== 'verify-full') bad('upstreamCa', 'upstreamCa is used only with upstreamTls: verify-full; set upstreamTls: verify-full or remove upstreamCa')
  }
  if (!ok || (username === undefined && !userOptional) || (file === undefined && env === undefined)) return undefined
  return Object.freeze({
    username,
    secret: Object.freeze(file !== undefined ? { file } : { env: env! }),
    database,
    upstreamTls: (tls ?? 'disable') as UpstreamTlsMode,
    upstreamCa: ca,
  })
}

/**
 * Explicit override ports must be unique; every other resource gets the lowest
 * free port of the range, in document order, so the assignment is the same on
 * every load.
 */
function assignPorts(
  items: readonly unknown[],
  explicit: readonly (number | undefined)[],
  range: readonly [number, number],
  report: Report,
): (number | undefined)[] {
  const used = new Map<number, number>()
  const label = (i: number): string => {
    const r = items[i]
    return isRecord(r) && typeof r.name === 'string' ? `resource "${r.name}" (resources[${i}])` : `resources[${i}]`
  }
  const out: (number | undefined)[] = explicit.slice()
  for (let i = 0; i < items.length; i++) {
    const p = explicit[i]
    if (p === undefined) continue
    const first = used.get(p)
    if (first !== undefined) {
      report(
        ['resources', i, 'portOverride'],
        `portOverride ${p} is used by both ${label(first)} and ${label(i)}; override ports must be unique: change one, or drop it to have a free port assigned from settings.portRange`,
      )
    } else used.set(p, i)
  }
  let next = range[0]
  for (let i = 0; i < items.length; i++) {
    const r = items[i]
    // Resources that are not mappings, or whose portOverride is invalid, were reported already.
    if (!isRecord(r) || r.portOverride !== undefined) continue
    while (next <= range[1] && used.has(next)) next++
    if (next > range[1]) {
      report(
        ['resources', i],
        `no free port left in settings.portRange [${range[0]}, ${range[1]}] for ${label(i)}; widen settings.portRange or give the resource a portOverride`,
      )
      continue
    }
    used.set(next, i)
    out[i] = next++
  }
  return out
}

function checkRoles(
  items: readonly unknown[],
  resources: ReadonlyMap<string, number>,
  suggest: Suggester,
  report: Report,
): { valid: ValidatedRole[]; index: Map<string, number> } {
  const index = new Map<string, number>()
  const valid: ValidatedRole[] = []
  for (let i = 0; i < items.length; i++) {
    const path = ['roles', i]
    const r = items[i]
    if (!isRecord(r)) {
      report(path, `each role must be a mapping with a name and grants (found ${describe(r)})`)
      continue
    }
    unknownKeys(r, POLICY_KEYS.role, path, report)
    const n = nameAt(r, 'name', path, report)
    if (n !== undefined) {
      const first = index.get(n)
      if (first !== undefined) {
        report([...path, 'name'], `role name "${n}" is already used by roles[${first}]; role names must be unique, rename one or merge their grants`)
      } else index.set(n, i)
    }
    const grants = listAt(r, 'grants', path, report)
    const names: string[] = []
    const idx = new Int32Array(grants.length)
    let mine: Set<string> | undefined
    for (let j = 0; j < grants.length; j++) {
      const g = grants[j]
      if (typeof g !== 'string') {
        report(['roles', i, 'grants', j], `each role grant must be a resource name (found ${describe(g)})`)
        continue
      }
      const ri = resources.get(g)
      if (ri === undefined) {
        report(['roles', i, 'grants', j], `unknown resource "${g}"${suggest(g, resources)}; add it under resources: or fix the name`)
        continue
      }
      mine ??= new Set()
      if (mine.has(g)) {
        report(['roles', i, 'grants', j], `resource "${g}" is listed twice in this role; remove one`)
        continue
      }
      mine.add(g)
      idx[names.length] = ri
      names.push(g)
    }
    if (n !== undefined) valid.push({ name: n, grants: names, resourceIndexes: idx.length === names.length ? idx : idx.slice(0, names.length) })
  }
  return { valid, index }
}

function checkAccounts(
  items: readonly unknown[],
  resources: ReadonlyMap<string, number>,
  roles: ReadonlyMap<string, number>,
  suggest: Suggester,
  report: Report,
): { valid: ValidatedAccount[]; grants: ValidatedGrants } {
  let total = 0
  for (const a of items) if (isRecord(a) && Array.isArray(a.grants)) total += a.grants.length
  const grantResource = new Int32Array(total)
  const grantExpires = new Float64Array(total)
  let count = 0

  const ids = new Map<string, number>()
  const names = new Map<string, number>()
  const valid: ValidatedAccount[] = []
  for (let i = 0; i < items.length; i++) {
    const path = ['accounts', i]
    const a = items[i]
    if (!isRecord(a)) {
      report(path, `each account must be a mapping with at least an id and a type (found ${describe(a)})`)
      continue
    }
    unknownKeys(a, POLICY_KEYS.account, path, report)
    let ok = true

    const typeValue = stringAt(a, 'type', path, report, true)
    let type: AccountType | undefined
    if (typeValue === 'service' || typeValue === 'user') type = typeValue
    else if (typeValue !== undefined) report([...path, 'type'], `type "${typeValue}" is not an account type; use service or user`)

    // id: unique, prefixed by type
    const id = stringAt(a, 'id', path, report, true)
    if (id === undefined) ok = false
    else {
      if (type === 'service' && !SERVICE_ID.test(id)) {
        report([...path, 'id'], `service account id "${id}" must be "svc_" followed by letters, digits, ".", "_" or "-" (e.g. svc_ci)`)
        ok = false
      } else if (type === 'user' && !USER_ID.test(id)) {
        report([...path, 'id'], `user account id "${id}" must be "usr_" followed by letters, digits, ".", "_" or "-" (e.g. usr_alice)`)
        ok = false
      }
      const first = ids.get(id)
      if (first !== undefined) {
        report([...path, 'id'], `account id "${id}" is already used by accounts[${first}]; account ids must be unique`)
        ok = false
      } else ids.set(id, i)
    }

    // name or email, by type; one namespace so accountByName is unambiguous
    const nameValue = stringAt(a, 'name', path, report, false)
    const emailValue = stringAt(a, 'email', path, report, false)
    let display: string | undefined
    let email: string | undefined
    if (type === 'service') {
      if (a.email !== undefined) report([...path, 'email'], 'a service account has a name only, no email; remove `email`')
      if (a.passwordHash !== undefined) report([...path, 'passwordHash'], 'a service account authenticates with tokens, not a password; remove `passwordHash`')
      if (a.name === undefined) report(path, 'a service account needs a `name`; add one (e.g. name: ci-pipeline)')
      else if (nameValue !== undefined) {
        if (NAME.test(nameValue)) display = nameValue
        else report([...path, 'name'], `service name ${describe(nameValue)} must be non-empty, without surrounding spaces`)
      }
      if (display !== undefined) {
        const first = names.get(display)
        if (first !== undefined) {
          report([...path, 'name'], `name "${display}" is already used by accounts[${first}]; service names and user emails must be unique`)
          display = undefined
        } else names.set(display, i)
      }
    } else if (type === 'user') {
      if (a.name !== undefined) report([...path, 'name'], 'a user is named by its email; remove `name`')
      if (a.email === undefined) report(path, 'a user account needs an `email`; add one (e.g. email: alice@example.com)')
      else if (emailValue !== undefined) {
        if (EMAIL.test(emailValue)) email = display = emailValue
        else report([...path, 'email'], `"${emailValue}" is not an email address; write it as name@domain`)
      }
      if (a.passwordHash !== undefined) {
        // Anyone who reads the policy (a ConfigMap, a 0644 file) could guess passwords offline from it.
        report(
          [...path, 'passwordHash'],
          'password hashes do not belong in the policy; move them to the credentials file with `keyway admin users migrate-passwords` (docs/security.md)',
        )
      }
      if (display !== undefined) {
        const key = display.toLowerCase()
        const first = names.get(key)
        if (first !== undefined) {
          report([...path, 'email'], `email "${display}" is already used by accounts[${first}]; service names and user emails must be unique`)
          display = undefined
        } else names.set(key, i)
      }
    }
    if (display === undefined) ok = false

    const suspended = booleanAt(a, 'suspended', path, report) === true

    // roles
    const roleList = listAt(a, 'roles', path, report)
    const accountRoles: string[] = []
    for (let j = 0; j < roleList.length; j++) {
      const r = roleList[j]
      if (typeof r !== 'string') {
        report(['accounts', i, 'roles', j], `each role must be a role name (found ${describe(r)})`)
        continue
      }
      if (!roles.has(r)) {
        report(['accounts', i, 'roles', j], `unknown role "${r}"${suggest(r, roles)}; add it under roles: or fix the name`)
        continue
      }
      if (accountRoles.includes(r)) {
        report(['accounts', i, 'roles', j], `role "${r}" is listed twice; remove one`)
        continue
      }
      accountRoles.push(r)
    }
    const hasRoles = roleList.length > 0

    // grants: the hot loop at a million grants; nothing allocated on the good path
    const grantList = listAt(a, 'grants', path, report)
    const grantStart = count
    let mine: Map<number, number> | undefined
    for (let j = 0; j < grantList.length; j++) {
      const g = grantList[j]
      if (!isRecord(g)) {
        report(['accounts', i, 'grants', j], `each grant must be a mapping with a \`resource\` and, for temporary access, \`expires\` (found ${describe(g)})`)
        continue
      }
      for (const k in g) {
        if (k !== 'resource' && k !== 'expires' && Object.hasOwn(g, k)) unknownKey(k, POLICY_KEYS.grant, ['accounts', i, 'grants', j, k], report)
      }
      const res = g.resource
      const exp = g.expires
      let good = true
      let expiresAt = Infinity
      if (exp === undefined) {
        if (hasRoles) {
          report(['accounts', i, 'grants', j], NO_ROLE_MESSAGE)
          good = false
        }
      } else if (typeof exp === 'string') {
        expiresAt = parseInstant(exp)
        if (expiresAt !== expiresAt) {
          report(['accounts', i, 'grants', j, 'expires'], `"${exp}" is not a valid ISO-8601 instant; ${INSTANT_HINT}`)
          good = false
        }
      } else {
        report(['accounts', i, 'grants', j, 'expires'], `expires must be an ISO-8601 instant (a string); ${INSTANT_HINT} (found ${describe(exp)})`)
        good = false
      }
      let ri: number | undefined
      if (typeof res !== 'string') {
        if (res === undefined) report(['accounts', i, 'grants', j], 'missing required key `resource`; add the name of the resource to grant')
        else report(['accounts', i, 'grants', j, 'resource'], `resource must be a resource name (found ${describe(res)})`)
        good = false
      } else {
        ri = resources.get(res)
        if (ri === undefined) {
          report(['accounts', i, 'grants', j, 'resource'], `unknown resource "${res}"${suggest(res, resources)}; add it under resources: or fix the name`)
          good = false
        } else if (grantList.length > 1) {
          mine ??= new Map()
          const first = mine.get(ri)
          if (first !== undefined) {
            report(['accounts', i, 'grants', j, 'resource'], `resource "${res}" is already granted by grants[${first}] of this account; keep one grant per resource`)
            good = false
          } else mine.set(ri, j)
        }
      }
      if (good) {
        grantResource[count] = ri!
        grantExpires[count] = expiresAt
        count++
      }
    }
    const grantEnd = count

    // token records
    const tokenList = listAt(a, 'tokens', path, report)
    const tokens: ValidatedTokenRecord[] = []
    let tokenIds: Map<string, number> | undefined
    for (let j = 0; j < tokenList.length; j++) {
      const tpath = ['accounts', i, 'tokens', j]
      const t = tokenList[j]
      if (!isRecord(t)) {
        report(tpath, `each token record must be a mapping with id and fingerprint (found ${describe(t)})`)
        continue
      }
      unknownKeys(t, POLICY_KEYS.token, tpath, report)
      const tid = stringAt(t, 'id', tpath, report, true)
      const fp = stringAt(t, 'fingerprint', tpath, report, true)
      let good = tid !== undefined && fp !== undefined
      if (tid !== undefined) {
        if (tid === '') {
          report([...tpath, 'id'], 'token id must not be empty; it is the token\'s `jti`')
          good = false
        } else {
          tokenIds ??= new Map()
          const first = tokenIds.get(tid)
          if (first !== undefined) {
            report([...tpath, 'id'], `token id "${tid}" is already listed by tokens[${first}] of this account; token ids must be unique per account`)
            good = false
          } else tokenIds.set(tid, j)
        }
      }
      if (fp !== undefined && !FINGERPRINT.test(fp)) {
        report([...tpath, 'fingerprint'], `fingerprint ${describe(fp)} must be "sha256:" followed by the first 16 lower-case hex digits of the token's sha256`)
        good = false
      }
      const created = stringAt(t, 'created', tpath, report, false)
      if (created !== undefined && Number.isNaN(parseInstant(created))) {
        report([...tpath, 'created'], `"${created}" is not a valid ISO-8601 instant; ${INSTANT_HINT}`)
        good = false
      }
      const expires = stringAt(t, 'expires', tpath, report, false)
      let expiresAt = Infinity
      if (expires !== undefined) {
        expiresAt = parseInstant(expires)
        if (Number.isNaN(expiresAt)) {
          report([...tpath, 'expires'], `"${expires}" is not a valid ISO-8601 instant; ${INSTANT_HINT}`)
          good = false
        }
      }
      if (good) tokens.push({ id: tid!, fingerprint: fp!, expiresAt })
    }

    if (ok && type !== undefined && id !== undefined && display !== undefined) {
      valid.push({
        id,
        type,
        name: display,
        email,
        roles: accountRoles,
        suspended,
        grantStart,
        grantEnd,
        tokens,
      })
    }
  }
  return { valid, grants: { count, resource: grantResource, expiresAt: grantExpires } }
}

// ---------------------------------------------------------------------------
// Field checks. Each reports its own problem and returns undefined when the
// value is missing or wrong, so callers only handle good values.
// ---------------------------------------------------------------------------

function unknownKeys(o: Record<string, unknown>, allowed: readonly string[], path: PolicyPath, report: Report): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) unknownKey(k, allowed, [...path, k], report)
}

function unknownKey(key: string, allowed: readonly string[], path: PolicyPath, report: Report): void {
  const guess = closest(key, allowed)
  const where = path.length === 1 ? 'top-level key' : 'key'
  report(path, `unknown ${where} \`${key}\`${guess ? ` (did you mean \`${guess}\`?)` : ''}; remove it or fix its spelling (allowed: ${allowed.join(', ')})`)
}

function stringAt(o: Record<string, unknown>, key: string, path: PolicyPath, report: Report, required: boolean): string | undefined {
  const v = o[key]
  if (typeof v === 'string') return v
  if (v === undefined) {
    if (required) report(path, `missing required key \`${key}\`; add it`)
  } else report([...path, key], `\`${key}\` must be a string (found ${describe(v)})`)
  return undefined
}

function nameAt(o: Record<string, unknown>, key: string, path: PolicyPath, report: Report): string | undefined {
  const v = stringAt(o, key, path, report, true)
  if (v === undefined) return undefined
  if (!NAME.test(v)) {
    report([...path, key], `\`${key}\` ${describe(v)} must be non-empty, without surrounding spaces or line breaks`)
    return undefined
  }
  return v
}

function booleanAt(o: Record<string, unknown>, key: string, path: PolicyPath, report: Report): boolean | undefined {
  const v = o[key]
  if (v === undefined || typeof v === 'boolean') return v
  report([...path, key], `\`${key}\` must be true or false (found ${describe(v)})`)
  return undefined
}

const EMPTY: readonly unknown[] = Object.freeze([])

/** A list value; a missing or empty (`key:` with nothing) list is an empty list. */
function listAt(o: Record<string, unknown>, key: string, path: PolicyPath, report: Report): readonly unknown[] {
  const v = o[key]
  if (Array.isArray(v)) return v
  if (v !== undefined && v !== null) report([...path, key], `\`${key}\` must be a list (found ${describe(v)})`)
  return EMPTY
}

function portValue(v: unknown, path: PolicyPath, report: Report): v is number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return true
  const last = path[path.length - 1]
  report(path, `${typeof last === 'string' ? last : 'port'} must be a port number from 1 to 65535 (found ${describe(v)})`)
  return false
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  return String(value)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}
