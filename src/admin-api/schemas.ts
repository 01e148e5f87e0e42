import { z } from 'zod'
import { RESOURCE_KINDS } from '../policy/index.js'

/** `POST /v1/admin/login`. */
export const LoginBody = z.strictObject({
  email: z.string().min(1).max(320),
  password: z.string().min(1).max(1024),
  /** Also answer with a bearer token (a login token) for scripts. */
  token: z.boolean().optional(),
})

/** `POST /v1/admin/services`. */
export const CreateServiceBody = z.strictObject({
  name: z.string().min(1).max(100),
  role: z.string().min(1).max(100).optional(),
})

/** `POST /v1/admin/services/{name}/tokens/rotate`. */
export const RotateBody = z.strictObject({
  /** Seconds the old tokens keep working; default one hour. */
  graceSeconds: z.number().int().min(0).max(30 * 86_400).optional(),
})

/** `POST /v1/admin/roles`. */
export const CreateRoleBody = z.strictObject({ name: z.string().min(1).max(100) })

/** `PUT /v1/admin/accounts/{account}/roles/{role}`. */
export const AssignRoleBody = z.strictObject({ dropDirectGrants: z.boolean().optional() })

/** `PUT /v1/admin/accounts/{account}/grants/{resource}`: direct, or temporary for `seconds`. */
export const GrantBody = z.strictObject({ seconds: z.number().int().min(60).max(365 * 86_400).optional() })

/** `POST /v1/admin/resources`. */
export const AddResourceBody = z.strictObject({
  name: z.string().min(1).max(100),
  kind: z.enum(RESOURCE_KINDS),
  type: z.string().min(1).max(40),
  address: z.string().min(1).max(300),
  portOverride: z.number().int().min(1).max(65_535).optional(),
})

/** `PATCH /v1/admin/settings`. */
export const SettingsBody = z.strictObject({
  portOverrides: z.boolean().optional(),
  autoConnect: z.boolean().optional(),
  portRange: z.tuple([z.number().int().min(1).max(65_535), z.number().int().min(1).max(65_535)]).optional(),
})

/** `?force=true` on deletes that would take access away from holders. */
export const ForceQuery = z.strictObject({ force: z.enum(['true', 'false']).optional() })

/** `?limit=&cursor=` of list endpoints. */
export const PageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(500).optional(),
  cursor: z.string().regex(/^\d{1,9}$/).optional(),
})

/** The one error shape of every admin API answer that is not a success. */
export const ErrorBody = z.object({ code: z.string(), message: z.string(), detail: z.record(z.string(), z.unknown()).optional() })

/** One live session in `GET /v1/admin/sessions` (never a token). */
export const LiveSessionItem = z.object({
  id: z.string(),
  account: z.object({ id: z.string(), name: z.string(), type: z.string() }),
  resource: z.string(),
  startedAt: z.string().describe('ISO-8601'),
  /** Client → upstream, and upstream → client, so far. */
  bytes: z.object({ in: z.number().int(), out: z.number().int() }),
  /** The gateway holding the session, when known. */
  gateway: z.string().optional(),
})

/** `GET /v1/admin/sessions`. */
export const LiveSessionList = z.object({
  items: z.array(LiveSessionItem),
  next: z.string().nullable(),
  /** PostgreSQL store: gateways that did not answer in time, whose sessions the list lacks (absent when every gateway answered). */
  unanswered: z.array(z.string()).optional(),
})
