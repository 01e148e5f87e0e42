/**
 * The admin HTTP API (`/v1/admin/…`) on its own listener: sign-in, sessions,
 * CSRF, admin bearer tokens, audited and validated edits through an
 * {@link AdminBackend}, and its OpenAPI document.
 */
export { AdminServer, SESSION_COOKIE, ADMIN_BODY_LIMIT, type AdminServerOptions } from './server.js'
export { FileAdminBackend, type AdminBackend } from './backend.js'
export { SessionStore, type AdminSession, type SessionStoreOptions } from './sessions.js'
export { localSessions, clusterSessions, type LiveSessionControl, type LiveSessionInfo, type LiveSessionListing, type ListedSession, type LocalSessions } from './live.js'
