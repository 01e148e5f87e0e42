import type { Document } from 'yaml'
import { loadSigningKey, type SigningKey } from '../auth/index.js'
import type { Clock } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import { KeywayError } from '../errors.js'
import type { CompiledPolicy } from '../policy/index.js'
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
}

/**
 * The admin context of a daemon configuration: its policy file, its signing
 * key (read only when a token is issued) and its token issuer and audience.
 * With `bootstrap: true` (the embedded default), missing development keys are
 * created first, as the gateway would at start, so that `keyway admin` works
 * before the gateway has ever run; the development policy is copied from
 * `bootstrapPolicy` right away, since every operation reads it.
 *
 * @throws KeywayError ERR_CONFIG_IO when that copy fails.
 */
export function adminContextFromConfig(config: KeywayConfig, clock: Clock): AdminContext {
  ensurePolicy(config)
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
  }
}

/** The signing key of `ctx`. */
export async function signingKeyOf(ctx: AdminContext): Promise<SigningKey> {
  const key = ctx.signingKey
  if (key === undefined) throw new KeywayError('ERR_INTERNAL', 'this admin context has no signing key')
  return typeof key === 'function' ? key() : key
}

/** {@link editPolicyFile} on the context's policy file, with its clock and lock timeout. */
export function edit<T>(ctx: AdminContext, fn: (doc: Document, current: CompiledPolicy) => T | Promise<T>): Promise<T> {
  return editPolicyFile(ctx.policyFile, fn, {
    clock: ctx.clock,
    ...(ctx.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: ctx.lockTimeoutMs }),
  })
}
