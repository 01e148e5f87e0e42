import type { ErrorCode } from '../errors.js'

/** Kinds of resource, as the seed's product groups them in tabs. */
export const RESOURCE_KINDS = ['datasource', 'server', 'cluster', 'website', 'cloud'] as const
/** One of {@link RESOURCE_KINDS}. */
export type ResourceKind = (typeof RESOURCE_KINDS)[number]

/** Account types: people log in with email and password; services use tokens. */
export type AccountType = 'user' | 'service'

// ---------------------------------------------------------------------------
// The policy document as written in YAML (config/policy.yaml). Field names here
// are the YAML keys.
// ---------------------------------------------------------------------------

/** `settings:` */
export interface SettingsDoc {
  /** Fixed local ports per resource. Default false. */
  portOverrides?: boolean
  /** Sidecars bind every granted resource at start. Needs portOverrides. Default false. */
  autoConnect?: boolean
  /** Inclusive range from which override ports are assigned when none is given. Default [15000, 15999]. */
  portRange?: [number, number]
}

/** One entry of `resources:` */
export interface ResourceDoc {
  name: string
  kind: ResourceKind
  /** Protocol type: postgres, mysql, redis, ssh, http, ... (free-form lower-case word). */
  type: string
  /** Upstream `host:port` (IPv6 as `[::1]:5432`). */
  address: string
  /** Local port the sidecar binds when port overrides are on. */
  portOverride?: number
  /** Upstream user the gateway logs in as (credential injection; postgres and redis; optional for redis: the default user). */
  username?: string
  /** File on the gateway holding the upstream password (e.g. a mounted Kubernetes Secret). Never the secret itself. */
  passwordFile?: string
  /** Environment variable of the gateway process holding the upstream password. */
  passwordEnv?: string
  /** Database the gateway always logs in to; else the one the client asks for (postgres only). */
  database?: string
  /** TLS from the gateway to the upstream. Default `disable`. */
  upstreamTls?: UpstreamTlsMode
  /** CA file (PEM) on the gateway for `upstreamTls: verify-full`; else the system CAs. */
  upstreamCa?: string
}

/** TLS modes from the gateway to an upstream with credentials, as libpq's `sslmode` names them. */
export const UPSTREAM_TLS_MODES = ['disable', 'require', 'verify-full'] as const
/** One of {@link UPSTREAM_TLS_MODES}. */
export type UpstreamTlsMode = (typeof UPSTREAM_TLS_MODES)[number]

/** Resource types for which the gateway can log in upstream with the resource's credentials. */
export const CREDENTIAL_TYPES = ['postgres', 'redis'] as const

/**
 * How the gateway logs in to a resource on the client's behalf: the user and
 * where the secret lives. The secret itself is never in the policy; the
 * gateway reads it when a session needs it.
 */
export interface ResourceCredential {
  /** The upstream user; undefined only for redis, whose default user then logs in with the password alone (`AUTH <password>`). */
  readonly username: string | undefined
  /** Where the password is read from. */
  readonly secret: { readonly file: string } | { readonly env: string }
  /** Pinned database, or undefined for the client's. */
  readonly database: string | undefined
  readonly upstreamTls: UpstreamTlsMode
  /** CA file for verify-full, or undefined for the system CAs. */
  readonly upstreamCa: string | undefined
}

/** One entry of `roles:` */
export interface RoleDoc {
  name: string
  /** Resource names this role grants. */
  grants?: string[]
}

/** One entry of an account's `grants:` */
export interface GrantDoc {
  resource: string
  /** ISO-8601 instant. Present: temporary access, valid whatever the roles, until then. */
  expires?: string
}

/** One entry of a service account's `tokens:` (never the token itself). */
export interface TokenRecordDoc {
  /** The token's `jti`. */
  id: string
  /** `sha256:<16 hex>` of the token, for logs and people. */
  fingerprint: string
  /** ISO-8601 creation instant. */
  created?: string
  /** ISO-8601 instant after which the token is refused (rotation grace). */
  expires?: string
}

/** One entry of `accounts:` */
export interface AccountDoc {
  /** Stable id, the `sub` of its tokens (`svc_…` or `usr_…`). */
  id: string
  type: AccountType
  /** Services: the name shown in lists. */
  name?: string
  /** Users: the login email. */
  email?: string
  roles?: string[]
  suspended?: boolean
  grants?: GrantDoc[]
  /** Services: live tokens. */
  tokens?: TokenRecordDoc[]
  /**
   * Never valid: password hashes live in the credentials file. Kept in the
   * type so that an old policy gets a located error naming the migration.
   */
  passwordHash?: string
}

/** The whole policy document. */
export interface PolicyDoc {
  version?: 1
  settings?: SettingsDoc
  resources?: ResourceDoc[]
  roles?: RoleDoc[]
  accounts?: AccountDoc[]
}

// ---------------------------------------------------------------------------
// The compiled, immutable policy.
// ---------------------------------------------------------------------------

/** `settings:` with every default applied. */
export interface Settings {
  readonly portOverrides: boolean
  readonly autoConnect: boolean
  readonly portRange: readonly [number, number]
}

/** A compiled resource: its upstream split into host and port. */
export interface Resource {
  readonly name: string
  readonly kind: ResourceKind
  readonly type: string
  readonly host: string
  readonly port: number
  /** The override port (assigned from the range when the document gives none), or undefined when overrides are off. */
  readonly portOverride: number | undefined
  /** Upstream credentials the gateway injects, or undefined: bytes are forwarded blindly. */
  readonly credential: ResourceCredential | undefined
}

/** A compiled token record of an account. */
export interface TokenRecord {
  readonly id: string
  readonly fingerprint: string
  /** Epoch ms, or Infinity. */
  readonly expiresAt: number
}

/** A compiled account. */
export interface Account {
  readonly id: string
  readonly type: AccountType
  /** Name for services, email for users: what people type on the command line. */
  readonly name: string
  readonly email: string | undefined
  readonly roles: readonly string[]
  readonly suspended: boolean
  readonly tokens: ReadonlyMap<string, TokenRecord>
}

/** Where an allow comes from. */
export type GrantSource =
  | { readonly via: 'role'; readonly role: string }
  | { readonly via: 'direct' }
  | { readonly via: 'temporary'; readonly expiresAt: number }

/**
 * The answer of {@link CompiledPolicy.decide}. Decisions are preallocated and
 * frozen: deciding allocates nothing.
 */
export type Decision =
  | ({ readonly allow: true; readonly code: undefined } & GrantSource)
  | {
      readonly allow: false
      readonly code: Extract<
        ErrorCode,
        'ERR_ACCOUNT_UNKNOWN' | 'ERR_ACCOUNT_SUSPENDED' | 'ERR_RESOURCE_UNKNOWN' | 'ERR_GRANT_DENIED' | 'ERR_GRANT_EXPIRED'
      >
      /** For ERR_GRANT_EXPIRED: when the temporary grant ended. */
      readonly expiredAt?: number
    }

/** One resource an account can reach, with every source of its access. */
export interface EffectiveResource {
  readonly resource: Resource
  readonly sources: readonly GrantSource[]
}

/** An immutable, indexed policy. */
export interface CompiledPolicy {
  /** Increases by one with every successful (re)load in a process; starts at 1. */
  readonly generation: number
  /** sha256 of the canonical document, to tell whether anything changed. */
  readonly digest: string
  readonly settings: Settings
  readonly resources: ReadonlyMap<string, Resource>
  readonly roles: ReadonlyMap<string, readonly string[]>
  readonly accounts: ReadonlyMap<string, Account>
  /** Account by name (services) or email (users). */
  accountByName(name: string): Account | undefined
  /** May `accountId` reach `resource` at `now` (epoch ms)? A few map lookups. */
  decide(accountId: string, resource: string, now: number): Decision
  /** Every resource the account can reach at `now`, sorted by kind then name. */
  effectiveResources(accountId: string, now: number): EffectiveResource[]
  /**
   * The earliest instant after `now` at which some decision changes by itself
   * (a temporary grant or a token record expiring), or Infinity.
   */
  nextExpiry(now: number): number
}
