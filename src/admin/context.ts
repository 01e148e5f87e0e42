import type { Document } from 'yaml'
import { loadSigningKey, type SigningKey } from '../auth/index.js'
import type { Clock } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import { KeywayError } from '../errors.js'
import type { Credentials, UserCredentials } from '../credentials/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import type { ReadPolicy } from './document.js'
import { editPolicyFile } from './edit.js'
import { ensureDevState, ensurePolicy } from './init.js'

/** What every admin operation needs: the policy file, time, and (for tokens) the signing key and claims. */
export interface AdminContext {
  /** The policy file the operation reads or edits. */
  readonly policyFile: string
  /** The credentials file (password hashes); default `credentials.yaml` beside the policy. */
  readonly credentialsFile?: string
  readonly clock: Clock
  /** The key that signs new service tokens, or a function loading it on first use. */
  readonly signingKey?: SigningKey | (() => Promise<SigningKey>)
  /** `iss` of issued tokens. */
  readonly issuer: string
  /** `aud` of issued tokens. */
  readonly audience: string
  /** How long an edit waits for another edit's lock. Default 10000 ms. */
  readonly lockTimeoutMs?: number
  /**
   * Where the policy and credentials live when it is not the files above (a
   * database store): every operation then reads and edits through it, with
   * the same transforms and the same validation.
   */
  readonly storage?: AdminStorage
}

/**
 * The four primitives every admin operation is built on. The file store's
 * are {@link editPolicyFile} and the credentials file; another store (PostgreSQL)
 * gives its own: `edit` runs `fn` on a YAML document of the whole policy as it
 * is now, validates the edited document, and commits it, serialized against
 * every other edit.
 */
export interface AdminStorage {
  /** `scope`: which accounts `fn` reads or changes (see {@link EditScope}); absent, the whole policy. */
  edit<T>(fn: (doc: Document, current: CompiledPolicy) => T | Promise<T>, scope?: EditScope): Promise<T>
  /** `scope`: which accounts to read (see {@link EditScope}); absent, the whole policy. */
  read(scope?: EditScope): Promise<ReadPolicy>
  readCredentials(): Promise<Credentials>
  editCredentials<T>(fn: (users: Map<string, UserCredentials>) => T): Promise<T>
}

/**
 * Which accounts an edit reads or changes, so that a database store loads
 * (and validates) only those with the settings, resources and roles, not the
 * whole policy; the policy file is edited whole anyway and ignores it. An
 * operation gives one only when it touches no other account: an account left
 * out is simply absent from the document and the compiled policy `fn` sees.
 *
 * - `accounts`: the accounts named by these references (service name, user
 *   email in any case, or account id), as `findAccount` resolves them;
 * - `accountsWithRole`: the accounts holding this role;
 * - `accountsWithGrant`: the accounts with a direct or temporary grant of this resource;
 * - `accountsWithGrantEndedBy`: the accounts with a temporary grant that ended
 *   at or before this instant (milliseconds since the epoch).
 *
 * `{}` loads no account (an edit of settings, resources or roles only).
 */
export interface EditScope {
  readonly accounts?: readonly string[]
  readonly accountsWithRole?: string
  readonly accountsWithGrant?: string
  readonly accountsWithGrantEndedBy?: number
}

/**
 * The admin context of a daemon configuration: its policy file, its signing
 * key (read only when a token is issued) and its token issuer and audience.
 * With `bootstrap: true` (the embedded default), missing development keys are
 * created first, as the gateway would at start, so that `keyway admin` works
 * before the gateway has ever run; the development policy is copied from
 * `bootstrapPolicy` right away, since every operation reads it. With
 * `storage` (a database store) every operation reads and edits through it.
 *
 * @throws KeywayError ERR_CONFIG_IO when that copy fails.
 */
export function adminContextFromConfig(config: KeywayConfig, clock: Clock, storage?: AdminStorage): AdminContext {
  // A database store holds the policy: there is no file to copy.
  if (storage === undefined) ensurePolicy(config)
  let key: Promise<SigningKey> | undefined
  const load = async (): Promise<SigningKey> => {
    await ensureDevState(config, { clock })
    return loadSigningKey(config.keys.signing)
  }
  return {
    policyFile: config.policy,
    credentialsFile: config.credentials,
    clock,
    signingKey: () => (key ??= load()),
    issuer: config.tokens.issuer,
    audience: config.tokens.audience,
    ...(storage === undefined ? {} : { storage }),
  }
}

/** The signing key of `ctx`. */
export async function signingKeyOf(ctx: AdminContext): Promise<SigningKey> {
  const key = ctx.signingKey
  if (key === undefined) throw new KeywayError('ERR_INTERNAL', 'this admin context has no signing key')
  return typeof key === 'function' ? key() : key
}

/** {@link editPolicyFile} on the context's policy file (or the context's storage's edit), with its clock and lock timeout. */
export function edit<T>(ctx: AdminContext, fn: (doc: Document, current: CompiledPolicy) => T | Promise<T>, scope?: EditScope): Promise<T> {
  if (ctx.storage !== undefined) return ctx.storage.edit(fn, scope)
  return editPolicyFile(ctx.policyFile, fn, {
    clock: ctx.clock,
    ...(ctx.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: ctx.lockTimeoutMs }),
  })
}
