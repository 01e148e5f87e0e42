import { randomBytes } from 'node:crypto'
import { isMap, isScalar, isSeq, YAMLMap, YAMLSeq, type Document, type Node } from 'yaml'
import { KeywayError } from '../errors.js'
import { compilePolicy, parsePolicyText, type Account, type CompiledPolicy, type PolicyDoc } from '../policy/index.js'
import { readPolicyText } from './edit.js'

// Helpers shared by the admin operations: reading the policy, finding the YAML
// nodes an operation changes, and creating new nodes in the style of the file.

/** A policy read for display: the compiled policy and the plain document (for fields the compiled form drops, like token `created`). */
export interface ReadPolicy {
  readonly policy: CompiledPolicy
  readonly doc: PolicyDoc
}

/**
 * Reads and compiles a policy file without taking the edit lock (a reader sees
 * the file before or after an edit, never between: edits rename atomically).
 *
 * @throws KeywayError ERR_POLICY_IO; DocumentError ERR_POLICY_INVALID
 */
export async function readPolicy(file: string): Promise<ReadPolicy> {
  const parsed = parsePolicyText(await readPolicyText(file), file)
  const policy = compilePolicy(parsed.value, { file, locate: parsed.locate })
  return { policy, doc: (parsed.value ?? {}) as PolicyDoc }
}

/**
 * The policy of an admin context as it is now: its storage's (a database
 * store, which reads only the accounts `scope` names when there is one),
 * else its policy file's (always whole).
 */
export async function readPolicyOf<Scope>(
  ctx: { readonly policyFile: string; readonly storage?: { read(scope?: Scope): Promise<ReadPolicy> } },
  scope?: Scope,
): Promise<ReadPolicy> {
  return ctx.storage !== undefined ? ctx.storage.read(scope) : readPolicy(ctx.policyFile)
}

/** The names an operation's messages use for an account: `service "ci" (svc_…)`. */
export function describeAccount(account: Account): string {
  return `${account.type === 'service' ? 'service' : 'user'} "${account.name}" (${account.id})`
}

/**
 * Finds an account by service name, user email (any case) or id.
 *
 * @throws KeywayError ERR_NOT_FOUND
 */
export function findAccount(policy: CompiledPolicy, ref: string, type?: 'service' | 'user'): Account {
  const account = policy.accountByName(ref) ?? policy.accounts.get(ref)
  if (account === undefined || (type !== undefined && account.type !== type)) {
    const what =
      type === 'service'
        ? `no service account named "${ref}" (or with that id)`
        : type === 'user'
          ? `no user with the email "${ref}" (or with that id)`
          : `no account "${ref}": it is not a service name, user email or account id`
    throw new KeywayError('ERR_NOT_FOUND', `${what}; see keyway admin users list`, { detail: { account: ref } })
  }
  return account
}

/** @throws KeywayError ERR_NOT_FOUND unless the role exists. */
export function requireRole(policy: CompiledPolicy, role: string): void {
  if (!policy.roles.has(role)) {
    throw new KeywayError('ERR_NOT_FOUND', `no role named "${role}"; see keyway admin roles list`, { detail: { role } })
  }
}

/** @throws KeywayError ERR_NOT_FOUND unless the resource exists. */
export function requireResource(policy: CompiledPolicy, resource: string): void {
  if (!policy.resources.has(resource)) {
    throw new KeywayError('ERR_NOT_FOUND', `no resource named "${resource}"; see keyway admin resources list`, { detail: { resource } })
  }
}

/** Top-level sections that hold lists. */
export type Section = 'resources' | 'roles' | 'accounts'

/** The root mapping of the document, created when the file is empty. */
export function rootMap(doc: Document): YAMLMap {
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) doc.contents = new YAMLMap() as never
  if (!isMap(doc.contents)) throw new KeywayError('ERR_INTERNAL', 'the policy document is not a mapping')
  return doc.contents
}

/**
 * The list `key` of `map` (a top-level section, or an entry's `roles`,
 * `grants`, `tokens`), created when missing or empty. A list of mappings is
 * made block style (`accounts: []` becomes a block list when something is added).
 */
export function listIn(map: YAMLMap, key: string, itemsAreMaps: boolean): YAMLSeq {
  const node = map.get(key, true) as unknown
  if (isSeq(node)) {
    if (itemsAreMaps && node.items.length === 0) node.flow = false
    return node
  }
  if (node !== undefined && !(isScalar(node) && node.value === null)) {
    throw new KeywayError('ERR_INTERNAL', `\`${key}\` is not a list`)
  }
  const seq = new YAMLSeq()
  seq.flow = !itemsAreMaps
  map.set(key, seq)
  return seq
}

/** The list `key` of `map` when present and non-empty, else undefined; never creates it. */
export function existingList(map: YAMLMap, key: string): YAMLSeq | undefined {
  const node = map.get(key, true) as unknown
  return isSeq(node) && node.items.length > 0 ? node : undefined
}

/** Index of the mapping in `seq` whose `field` equals `value`, or -1. */
export function indexWhere(seq: YAMLSeq, field: string, value: unknown): number {
  return seq.items.findIndex((item) => isMap(item) && item.get(field) === value)
}

const SECTION_ORDER = ['version', 'settings', 'resources', 'roles', 'accounts']

/**
 * The top-level value `key`, created (with `make`) when missing or null, at its
 * usual place: version, settings, resources, roles, accounts.
 */
function section<N>(doc: Document, key: string, is: (n: unknown) => n is N, make: () => N): N {
  const root = rootMap(doc)
  const node = root.get(key, true) as unknown
  if (is(node)) return node
  if (node !== undefined && !(isScalar(node) && node.value === null)) throw new KeywayError('ERR_INTERNAL', `\`${key}\` has the wrong type`)
  const made = make()
  if (node !== undefined) {
    root.set(key, made)
    return made
  }
  const later = SECTION_ORDER.slice(SECTION_ORDER.indexOf(key) + 1)
  const at = root.items.findIndex((p) => isScalar(p.key) && later.includes(String(p.key.value)))
  const pair = doc.createPair(key, made)
  if (at < 0) root.items.push(pair)
  else root.items.splice(at, 0, pair)
  return made
}

/** The top-level list `resources`, `roles` or `accounts`, created when missing, made block style. */
export function sectionList(doc: Document, key: Section): YAMLSeq {
  const seq = section(doc, key, isSeq, () => new YAMLSeq())
  if (seq.items.length === 0) seq.flow = false
  return seq as YAMLSeq
}

/** The top-level `settings` mapping, created when missing. */
export function settingsMap(doc: Document): YAMLMap {
  return section(doc, 'settings', isMap, () => new YAMLMap()) as YAMLMap
}

/** The mapping in section `section` whose `field` equals `value`; it must exist (the compiled policy said so). */
export function entryOf(doc: Document, section: Section, field: string, value: string): YAMLMap {
  const seq = sectionList(doc, section)
  const item = seq.items[indexWhere(seq, field, value)]
  if (!isMap(item)) throw new KeywayError('ERR_INTERNAL', `${section}: no entry with ${field} "${value}" in the document`)
  return item
}

/** The account's mapping in the document. */
export function accountEntry(doc: Document, account: Account): YAMLMap {
  return entryOf(doc, 'accounts', 'id', account.id)
}

/** Removes the items of `seq` for which `drop` is true; returns how many went. */
export function removeWhere(seq: YAMLSeq, drop: (item: unknown) => boolean): number {
  const before = seq.items.length
  seq.items = seq.items.filter((item) => !drop(item))
  return before - seq.items.length
}

/** Removes `key` from `map` when it is an empty list, so entries stay tidy. */
export function dropIfEmpty(map: YAMLMap, key: string): void {
  const node = map.get(key, true) as unknown
  if (isSeq(node) && node.items.length === 0) map.delete(key)
}

/** The plain value of a YAML item (a mapping entry as a plain object). */
export function plain<T = unknown>(item: unknown): T {
  return (isMap(item) || isSeq(item) || isScalar(item) ? (item as Node).toJSON() : item) as T
}

/**
 * A node for `value` in the file's style: mappings and lists of mappings are
 * block style, short lists of plain values are flow (`roles: [ops]`).
 */
export function newNode(doc: Document, value: unknown): Node {
  const node = doc.createNode(value) as Node
  const visit = (n: unknown): void => {
    if (isSeq(n)) {
      n.flow = n.items.length > 0 && n.items.every((i) => isScalar(i))
      n.items.forEach(visit)
    } else if (isMap(n)) n.items.forEach((p) => visit(p.value))
  }
  visit(node)
  return node
}

/** A new random account id: `svc_` or `usr_` and 16 hex digits. */
export function newAccountId(type: 'service' | 'user'): string {
  return `${type === 'service' ? 'svc' : 'usr'}_${randomBytes(8).toString('hex')}`
}

/** An ISO-8601 instant without zero milliseconds: `2026-01-01T00:00:00Z`. */
export function isoInstant(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z')
}

/** Orders strings by code unit, the same on every machine (no locale). */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** `ms` rounded down to the second: instants written to the policy carry no milliseconds. */
export function wholeSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000
}

/** Names of services, roles and resources: lower-case letters, digits, `-`, `_` and `.`, starting with a letter or digit. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/

/**
 * Checks a name typed on the command line.
 *
 * @throws KeywayError ERR_USAGE naming the rule
 */
export function checkName(what: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new KeywayError(
      'ERR_USAGE',
      `"${name}" is not a valid ${what} name: use 1-63 lower-case letters, digits, "-", "_" or ".", starting with a letter or digit`,
    )
  }
}
