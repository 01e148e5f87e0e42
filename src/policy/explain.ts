import type { ErrorCode } from '../errors.js'
import type { CompiledPolicy, GrantSource } from './types.js'

/** The answer of {@link explainAccess}. */
export interface AccessExplanation {
  allow: boolean
  /** Why access is refused; absent when allowed. */
  code?: ErrorCode
  /** Sentences for people, most important first. */
  lines: string[]
}

/**
 * Explains, for people, whether an account may reach a resource at `now` and
 * why: which role grants it, which direct or temporary grant (until when), or
 * what is missing. `accountNameOrId` is an account id, a service name or a user email.
 * Agrees with {@link CompiledPolicy.decide} by construction.
 */
export function explainAccess(policy: CompiledPolicy, accountNameOrId: string, resource: string, now: number): AccessExplanation {
  const acc = policy.accounts.get(accountNameOrId) ?? policy.accountByName(accountNameOrId)
  if (acc === undefined) {
    return { allow: false, code: 'ERR_ACCOUNT_UNKNOWN', lines: [`no account has the id, service name or email "${accountNameOrId}"`] }
  }
  const who = `${acc.type} account "${acc.name}" (${acc.id})`
  const d = policy.decide(acc.id, resource, now)
  if (d.allow) {
    const r = policy.resources.get(resource)!
    const entry = policy.effectiveResources(acc.id, now).find((e) => e.resource.name === resource)
    const sources = entry?.sources ?? [d]
    const lines = [`${who} may reach ${resource} (${r.kind}, ${r.type} at ${formatHostPort(r.host, r.port)})`]
    // Only that a credential is configured, and whose: never where the secret is, never the secret.
    if (r.credential !== undefined) lines.push(`the gateway logs in upstream as ${r.credential.username ?? 'the default user'} (a credential is configured)`)
    for (const s of sources) lines.push(describeSource(s, resource))
    return { allow: true, lines }
  }
  switch (d.code) {
    case 'ERR_ACCOUNT_SUSPENDED':
      return { allow: false, code: d.code, lines: [`${who} is suspended: it reaches no resource until it is unsuspended`] }
    case 'ERR_RESOURCE_UNKNOWN':
      return { allow: false, code: d.code, lines: [`resource "${resource}" does not exist`] }
    case 'ERR_ACCOUNT_UNKNOWN':
      return { allow: false, code: d.code, lines: [`no account has the id "${acc.id}"`] }
    default: {
      const lines = [`${who} may not reach ${resource}`]
      if (d.code === 'ERR_GRANT_EXPIRED' && d.expiredAt !== undefined) {
        lines.push(`its temporary grant for ${resource} expired at ${new Date(d.expiredAt).toISOString()}`)
      }
      if (acc.roles.length === 0) {
        lines.push(`the account has No Role, and no valid direct or temporary grant for ${resource}`)
        lines.push(`to allow it: give a direct grant or a temporary grant (with \`expires\`) for ${resource}, or a role that grants it`)
      } else {
        const names = acc.roles.map((r) => `"${r}"`).join(', ')
        lines.push(`none of its roles (${names}) grants ${resource}, and it holds no valid temporary grant for it`)
        lines.push(`to allow it: add ${resource} to one of its roles, or give a temporary grant (with \`expires\`); direct grants need No Role`)
      }
      return { allow: false, code: d.code, lines }
    }
  }
}

function describeSource(s: GrantSource, resource: string): string {
  switch (s.via) {
    case 'role':
      return `role "${s.role}" grants ${resource}`
    case 'direct':
      return `a direct grant gives ${resource} (the account has No Role)`
    case 'temporary':
      return `a temporary grant gives ${resource} until ${new Date(s.expiresAt).toISOString()}`
  }
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
