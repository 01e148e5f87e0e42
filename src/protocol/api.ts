import { z } from 'zod'
import type { AccountType } from '../policy/index.js'

// One zod schema per message of the gateway API. The gateway builds its
// answers as the schemas' types (and its tests parse them with the schemas);
// clients check what they receive with `parseApiAnswer`, so a malformed answer
// fails where it arrives rather than in whatever uses it later.

/** HTTP paths of the gateway API (ALPN http/1.1 on the gateway's TLS port). */
export const API_PATHS = {
  whoami: '/v1/whoami',
  resources: '/v1/resources',
  login: '/v1/login',
  ready: '/v1/ready',
} as const

const ACCOUNT_TYPES = ['user', 'service'] as const satisfies readonly AccountType[]

/** `GET /v1/whoami` (Authorization: Bearer TOKEN). */
export const WhoamiResponseSchema = z.object({
  account: z.object({ id: z.string(), name: z.string(), type: z.enum(ACCOUNT_TYPES), roles: z.array(z.string()) }),
  token: z.object({ id: z.string(), fingerprint: z.string(), kind: z.enum(['service', 'login']), expiresAt: z.string().nullable() }),
})
/** `GET /v1/whoami` answer. */
export type WhoamiResponse = z.infer<typeof WhoamiResponseSchema>

/**
 * One entry of `GET /v1/resources`: what a sidecar may bind, never the
 * upstream address. `kind` is any string so that a sidecar keeps working with
 * a newer gateway that knows more kinds; a missing `portOverride` reads as null.
 */
export const ApiResourceSchema = z.object({
  name: z.string().min(1),
  kind: z.string(),
  type: z.string(),
  /** Local port to bind when port overrides are on; null otherwise. */
  portOverride: z.number().int().min(1).max(65535).nullable().default(null),
})
/** One entry of `GET /v1/resources`. */
export type ApiResource = z.infer<typeof ApiResourceSchema>

/** The `token` of {@link ResourcesResponseSchema}: when the presenting token stops working. */
export const TokenDeadlineSchema = z.object({
  /** ISO-8601 instant, or null when the token has no end. */
  expiresAt: z.string().nullable(),
  /** The token was rotated out: the deadline ends its grace. */
  rotatedOut: z.boolean(),
})
/** The `token` of {@link ResourcesResponse}. */
export type TokenDeadline = z.infer<typeof TokenDeadlineSchema>

/**
 * `GET /v1/resources` (Authorization: Bearer TOKEN). Carries an `ETag`; a
 * request with `If-None-Match` of the same view gets `304`.
 */
export const ResourcesResponseSchema = z.object({
  settings: z.object({ portOverrides: z.boolean(), autoConnect: z.boolean() }),
  resources: z.array(ApiResourceSchema),
  /** Policy generation the view was computed from. */
  generation: z.number(),
  /**
   * When the presenting token stops working: the earlier of its `exp` and the
   * end of its rotation grace (`tokens rotate --grace`). `expiresAt` is null
   * for an open-ended token; `rotatedOut` is true when the deadline is the end
   * of a rotation grace (then it is refused with `ERR_TOKEN_REVOKED`, else
   * `ERR_TOKEN_EXPIRED`). Absent from gateways older than this field.
   */
  token: TokenDeadlineSchema.optional(),
})
/** `GET /v1/resources` answer. */
export type ResourcesResponse = z.infer<typeof ResourcesResponseSchema>

/** `POST /v1/login` body. */
export const LoginRequestSchema = z.object({ email: z.string(), password: z.string() })
/** `POST /v1/login` body. */
export type LoginRequest = z.infer<typeof LoginRequestSchema>

/** `POST /v1/login` answer. */
export const LoginResponseSchema = z.object({ token: z.string(), expiresAt: z.string() })
/** `POST /v1/login` answer. */
export type LoginResponse = z.infer<typeof LoginResponseSchema>

/**
 * `GET /v1/ready?resource=NAME` (Authorization: Bearer TOKEN): whether a
 * real connection through the gateway to the resource's upstream works now
 * (a login for a resource with credentials, else a TCP connect). Answered
 * only for a resource the token's account is granted (else 404
 * `ERR_GRANT_DENIED`, unknown names too). The gateway reuses an answer for a
 * few seconds: `checkedAt` says when it was found.
 */
export const ReadyResponseSchema = z.object({
  resource: z.string(),
  ready: z.boolean(),
  /** Why not: a Keyway error code (ERR_UPSTREAM_UNREACHABLE, ERR_UPSTREAM_LOGIN_FAILED, ...). */
  code: z.string().optional(),
  message: z.string().optional(),
  /** ISO-8601 instant of the probe that gave this answer. */
  checkedAt: z.string(),
})
/** `GET /v1/ready` answer. */
export type ReadyResponse = z.infer<typeof ReadyResponseSchema>

/** Body of every non-2xx API answer. */
export const ApiErrorSchema = z.object({ code: z.string(), message: z.string() })
/** Body of every non-2xx API answer. */
export type ApiError = z.infer<typeof ApiErrorSchema>

/**
 * Checks an answer of the gateway API against its schema: the parsed value
 * (unknown keys dropped, defaults applied), or `undefined` when the body does
 * not have the message's shape.
 */
export function parseApiAnswer<T>(schema: z.ZodType<T>, body: unknown): T | undefined {
  const result = schema.safeParse(body)
  return result.success ? result.data : undefined
}
