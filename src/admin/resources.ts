import { resolve } from 'node:path'
import { isMap, type Document } from 'yaml'
import { KeywayError } from '../errors.js'
import { formatHostPort } from '../net/index.js'
import { parseHostPort } from '../net/index.js'
import { RESOURCE_KINDS, type CompiledPolicy, type GrantDoc, type ResourceDoc, type ResourceKind } from '../policy/index.js'
import { edit, type AdminContext } from './context.js'
import { compileEdited } from './edit.js'
import { accountEntry, checkName, compareText, dropIfEmpty, entryOf, existingList, indexWhere, newNode, plain, removeWhere, sectionList } from './document.js'

/**
 * How the gateway logs in upstream for a resource (credential injection): the
 * user and a reference to the secret, never the secret itself.
 */
export interface ResourceCredentialOptions {
  /** Upstream user the gateway logs in as. */
  username?: string
  /** File on the gateway holding the password; a relative path is made absolute against the working directory. */
  passwordFile?: string
  /** Environment variable of the gateway holding the password. */
  passwordEnv?: string
  /** Pinned database; else the client's. */
  database?: string
  /** disable, require or verify-full. */
  upstreamTls?: string
  /** CA file for verify-full; a relative path is made absolute. */
  upstreamCa?: string
}

/** What `keyway admin resources add` takes. */
export interface AddResourceOptions extends ResourceCredentialOptions {
  name: string
  kind: string
  /** Protocol: postgres, mysql, redis, ssh, http, ... */
  type: string
  /** Upstream `host:port` (IPv6 as `[::1]:5432`). */
  address: string
  /** Local port sidecars bind; when port overrides are on and it is omitted, one is assigned from the range. */
  portOverride?: number
}

/** One row of {@link listResources}: the stable JSON shape of `keyway admin resources list --json`. */
export interface ResourceListEntry {
  readonly name: string
  readonly kind: ResourceKind
  readonly type: string
  readonly address: string
  /** The local port when port overrides are on, else null. */
  readonly portOverride: number | null
  /** The upstream user the gateway logs in as, or null (bytes forwarded blindly). Never the secret. */
  readonly username: string | null
}

/** What {@link addResource} did. */
export interface AddResourceResult {
  readonly name: string
  /** The resource's override port; null when overrides are off and none was given. */
  readonly portOverride: number | null
  /** True when the port was assigned from the range (and written). */
  readonly assigned: boolean
  /** Other resources whose assigned ports were written to the file in the same edit. */
  readonly pinned: readonly { readonly resource: string; readonly port: number }[]
}

const TYPE_WORD = /^[a-z][a-z0-9-]*$/

/**
 * Adds a resource. When port overrides are on and no port is given, the
 * policy assigns the lowest free port of the range, and that port is written
 * into the file, so it stays fixed when other resources come and go (as are
 * the assigned ports of other resources that had none written).
 *
 * @throws KeywayError ERR_USAGE (bad name, kind, type, address or port), ERR_ALREADY_EXISTS (name or port taken)
 */
export async function addResource(ctx: AdminContext, options: AddResourceOptions): Promise<AddResourceResult> {
  const { name, kind, type, address, portOverride } = options
  checkName('resource', name)
  if (!(RESOURCE_KINDS as readonly string[]).includes(kind)) {
    throw new KeywayError('ERR_USAGE', `--kind must be one of ${RESOURCE_KINDS.join(', ')} (got "${kind}")`)
  }
  if (!TYPE_WORD.test(type)) throw new KeywayError('ERR_USAGE', `--type must be a lower-case word such as postgres, mysql, redis, ssh or http (got "${type}")`)
  const parsed = parseHostPort(address)
  if (typeof parsed === 'string') throw new KeywayError('ERR_USAGE', `--address: ${parsed}`)
  if (portOverride !== undefined && !(Number.isInteger(portOverride) && portOverride >= 1 && portOverride <= 65535)) {
    throw new KeywayError('ERR_USAGE', `--port-override must be a port number from 1 to 65535 (got ${portOverride})`)
  }
  return edit(ctx, (doc, current) => {
    if (current.resources.has(name)) throw new KeywayError('ERR_ALREADY_EXISTS', `resource "${name}" already exists`, { detail: { resource: name } })
    if (portOverride !== undefined) {
      const owner = portOwner(doc, current, portOverride)
      if (owner !== undefined) {
        throw new KeywayError('ERR_ALREADY_EXISTS', `port ${portOverride} is already the override port of resource "${owner}"; choose another or omit --port-override`, {
          detail: { port: portOverride, resource: owner },
        })
      }
    }
    const resource: ResourceDoc = {
      name,
      kind: kind as ResourceKind,
      type,
      address,
      ...(portOverride === undefined ? {} : { portOverride }),
      ...credentialFields(options),
    }
    sectionList(doc, 'resources').add(newNode(doc, resource))
    if (!current.settings.portOverrides) return { name, portOverride: portOverride ?? null, assigned: false, pinned: [] }
    // Pin every assigned port, not only the new one: an unpinned port would move when a resource before it goes.
    const pinned = pinAssignedPorts(doc, ctx.policyFile)
    const mine = pinned.find((p) => p.resource === name)
    return { name, portOverride: mine?.port ?? portOverride ?? null, assigned: mine !== undefined, pinned: pinned.filter((p) => p !== mine) }
  }, {})
}

const CREDENTIAL_KEYS = ['username', 'passwordFile', 'passwordEnv', 'database', 'upstreamTls', 'upstreamCa'] as const

/** The credential keys to write, paths made absolute; `upstreamTls: disable` is the default and not written. */
function credentialFields(o: ResourceCredentialOptions): Partial<ResourceDoc> {
  const out: Record<string, string> = {}
  if (o.username !== undefined) out.username = o.username
  if (o.passwordFile !== undefined) out.passwordFile = resolve(o.passwordFile)
  if (o.passwordEnv !== undefined) out.passwordEnv = o.passwordEnv
  if (o.database !== undefined) out.database = o.database
  if (o.upstreamTls !== undefined && o.upstreamTls !== 'disable') out.upstreamTls = o.upstreamTls
  if (o.upstreamCa !== undefined) out.upstreamCa = resolve(o.upstreamCa)
  return out as Partial<ResourceDoc>
}

/** What `keyway admin resources set` changes; absent fields stay as they are. */
export interface SetResourceOptions extends ResourceCredentialOptions {
  address?: string
  /** Remove every credential field first: the gateway forwards bytes blindly again. */
  clearCredentials?: boolean
}

/**
 * Changes a resource's address or credential fields. A new secret reference
 * replaces the other kind (`passwordFile` drops `passwordEnv` and the reverse);
 * `upstreamTls: disable` drops `upstreamCa`. The edited policy is validated
 * as a whole before it is written.
 *
 * @returns the keys changed.
 * @throws KeywayError ERR_NOT_FOUND, ERR_USAGE; DocumentError ERR_POLICY_INVALID
 */
export async function setResource(ctx: AdminContext, name: string, options: SetResourceOptions): Promise<{ name: string; changed: string[] }> {
  if (options.address !== undefined) {
    const parsed = parseHostPort(options.address)
    if (typeof parsed === 'string') throw new KeywayError('ERR_USAGE', `--address: ${parsed}`)
  }
  if (options.passwordFile !== undefined && options.passwordEnv !== undefined) throw new KeywayError('ERR_USAGE', 'give --password-file or --password-env, not both')
  return edit(ctx, (doc, current) => {
    if (!current.resources.has(name)) throw new KeywayError('ERR_NOT_FOUND', `no resource named "${name}"; see keyway admin resources list`, { detail: { resource: name } })
    const entry = entryOf(doc, 'resources', 'name', name)
    const changed: string[] = []
    if (options.clearCredentials === true) {
      for (const k of CREDENTIAL_KEYS) if (entry.has(k)) entry.delete(k)
      changed.push('credentials cleared')
    }
    if (options.address !== undefined) {
      entry.set('address', options.address)
      changed.push('address')
    }
    const fields = credentialFields(options) as Record<string, string>
    if (fields.passwordFile !== undefined) entry.delete('passwordEnv')
    if (fields.passwordEnv !== undefined) entry.delete('passwordFile')
    if (options.upstreamTls === 'disable') {
      entry.delete('upstreamTls')
      entry.delete('upstreamCa')
      changed.push('upstreamTls')
    }
    for (const [k, v] of Object.entries(fields)) {
      entry.set(k, v)
      changed.push(k)
    }
    if (changed.length === 0) throw new KeywayError('ERR_USAGE', 'nothing to change: give --address, --username, --password-file, --password-env, --database, --upstream-tls, --upstream-ca or --clear-credentials')
    return { name, changed }
  }, {})
}

/** Every resource, sorted by kind (the seed's tab order) then name. */
export function listResources(policy: CompiledPolicy): ResourceListEntry[] {
  const order = (k: ResourceKind): number => RESOURCE_KINDS.indexOf(k)
  return [...policy.resources.values()]
    .map((r) => ({
      name: r.name,
      kind: r.kind,
      type: r.type,
      address: formatHostPort({ host: r.host, port: r.port }),
      portOverride: r.portOverride ?? null,
      username: r.credential?.username ?? null,
    }))
    .sort((a, b) => order(a.kind) - order(b.kind) || compareText(a.name, b.name))
}

/** Options of {@link removeResource}. */
export interface RemoveResourceOptions {
  /** Also remove the roles' and accounts' grants of the resource. */
  force?: boolean
}

/**
 * Removes a resource. While roles or accounts grant it, removal is refused
 * with the list of them; with `force` those grants are removed in the same edit.
 *
 * @returns the roles and accounts whose grants were removed.
 * @throws KeywayError ERR_NOT_FOUND, ERR_USAGE (still granted, without force)
 */
export async function removeResource(
  ctx: AdminContext,
  name: string,
  options: RemoveResourceOptions = {},
): Promise<{ name: string; roles: string[]; accounts: string[] }> {
  return edit(ctx, (doc, current) => {
    if (!current.resources.has(name)) throw new KeywayError('ERR_NOT_FOUND', `no resource named "${name}"; see keyway admin resources list`, { detail: { resource: name } })
    const roles = [...current.roles].filter(([, grants]) => grants.includes(name)).map(([role]) => role)
    const accounts = [...current.accounts.values()].filter((a) => {
      const grants = existingList(accountEntry(doc, a), 'grants')
      return grants?.items.some((g) => plain<GrantDoc>(g).resource === name) ?? false
    })
    if ((roles.length > 0 || accounts.length > 0) && options.force !== true) {
      const users = [...roles.map((r) => `role ${r}`), ...accounts.map((a) => a.name)]
      throw new KeywayError('ERR_USAGE', `resource "${name}" is still granted by ${users.join(', ')}; revoke those grants first, or pass --force to remove them with the resource`, {
        detail: { resource: name, roles, accounts: accounts.map((a) => a.id) },
      })
    }
    for (const role of roles) {
      const grants = existingList(entryOf(doc, 'roles', 'name', role), 'grants')
      if (grants !== undefined) removeWhere(grants, (item) => plain(item) === name)
    }
    for (const account of accounts) {
      const entry = accountEntry(doc, account)
      const grants = existingList(entry, 'grants')
      if (grants !== undefined) removeWhere(grants, (item) => plain<GrantDoc>(item).resource === name)
      dropIfEmpty(entry, 'grants')
    }
    // Removing a resource must not move the assigned ports of the ones after it.
    if (current.settings.portOverrides) pinAssignedPorts(doc, ctx.policyFile)
    const list = sectionList(doc, 'resources')
    list.delete(indexWhere(list, 'name', name))
    return { name, roles, accounts: accounts.map((a) => a.name) }
  }, { accountsWithGrant: name })
}

/**
 * Writes the port the policy assigned to each resource that has none, so
 * ports stay fixed from now on (used when port overrides are turned on).
 *
 * @returns the ports written.
 */
export function pinAssignedPorts(doc: Document, file: string): { resource: string; port: number }[] {
  const compiled = compileEdited(doc, file)
  const pinned: { resource: string; port: number }[] = []
  for (const item of sectionList(doc, 'resources').items) {
    if (!isMap(item) || item.has('portOverride')) continue
    const name = String(item.get('name'))
    const port = compiled.resources.get(name)?.portOverride
    if (port === undefined) continue
    item.set('portOverride', port)
    pinned.push({ resource: name, port })
  }
  return pinned
}

/** The resource whose override port (written, or assigned by the policy) is `port`. */
function portOwner(doc: Document, current: CompiledPolicy, port: number): string | undefined {
  for (const r of current.resources.values()) if (r.portOverride === port) return r.name
  for (const item of sectionList(doc, 'resources').items) if (isMap(item) && item.get('portOverride') === port) return String(item.get('name'))
  return undefined
}
