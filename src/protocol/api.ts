import type { AccountType, ResourceKind } from '../policy/index.js'

/** HTTP paths of the gateway API (ALPN http/1.1 on the gateway's TLS port). */
export const API_PATHS = {
  whoami: '/v1/whoami',
  resources: '/v1/resources',
  login: '/v1/login',
} as const

/** `GET /v1/whoami` (Authorization: Bearer TOKEN). */
export interface WhoamiResponse {
  account: { id: string; name: string; type: AccountType; roles: string[] }
  token: { id: string; fingerprint: string; kind: 'service' | 'login'; expiresAt: string | null }
}

/** One entry of `GET /v1/resources`: what a sidecar may bind. Never the upstream address. */
export interface ApiResource {
  name: string
  kind: ResourceKind
  type: string
  /** Local port to bind when port overrides are on; null otherwise. */
  portOverride: number | null
}

/**
 * `GET /v1/resources` (Authorization: Bearer TOKEN). Carries an `ETag`; a
 * request with `If-None-Match` of the same view gets `304`.
 */
export interface ResourcesResponse {
  settings: { portOverrides: boolean; autoConnect: boolean }
  resources: ApiResource[]
  /** Policy generation the view was computed from. */
  generation: number
  /**
   * When the presenting token stops working: the earlier of its `exp` and the
   * end of its rotation grace (`tokens rotate --grace`). `expiresAt` is null
   * for an open-ended token; `rotatedOut` is true when the deadline is the end
   * of a rotation grace (then it is refused with `ERR_TOKEN_REVOKED`, else
   * `ERR_TOKEN_EXPIRED`). Absent from gateways older than this field.
   */
  token?: TokenDeadline
}

/** The `token` of {@link ResourcesResponse}. */
export interface TokenDeadline {
  /** ISO-8601 instant, or null when the token has no end. */
  expiresAt: string | null
  /** The token was rotated out: the deadline ends its grace. */
  rotatedOut: boolean
}

/** `POST /v1/login` body. */
export interface LoginRequest {
  email: string
  password: string
}

/** `POST /v1/login` answer. */
export interface LoginResponse {
  token: string
  expiresAt: string
}

/** Body of every non-2xx API answer. */
export interface ApiError {
  code: string
  message: string
}
