/**
 * Where the policy lives: the one seam gateways, `keyway admin`, `explain`
 * and the admin API depend on. The policy file (`store: file`, the default)
 * or PostgreSQL (`store: postgres`: several gateways share one store and
 * follow its change feed).
 */
export type { KeywayStore } from './store.js'
export { ContextAdminOperations, type AdminOperations } from './admin-operations.js'
export { FileStore, type FileStoreOptions } from './file.js'
export { PostgresStore, CHANNEL, type PostgresStoreOptions } from './pg-store.js'
export { MIGRATIONS, SCHEMA_VERSION, type Migration } from './pg-schema.js'
export { PostgresSessionFeed, SESSIONS_CHANNEL, sessionRequestTimeout, type SessionFeed, type SessionHolder, type HeldSession, type EndAnswer, type ListAnswer } from './pg-sessions.js'
export { canonicalPolicy, formatPolicy } from './canonical.js'
export { openStore, type OpenStoreOptions } from './open.js'
