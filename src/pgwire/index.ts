/**
 * The PostgreSQL wire protocol at the gateway: the login made on a client's
 * behalf with a resource's credentials, and the ErrorResponse a client is
 * given when Keyway ends or refuses its session.
 */
export { injectLogin, probeLogin } from './inject.js'
export type { ForwardedCancel, InjectedSession, InjectOptions, ProbeOptions } from './inject.js'
export { SaltedPasswordCache, scramClient, saltPassword, md5Password, SCRAM_SHA_256 } from './scram.js'
export type { ScramClient } from './scram.js'
export { encodeErrorResponse, keywayErrorResponse } from './error-response.js'
export type { ErrorFields } from './error-response.js'
export { DEFAULT_SQLSTATE, SQLSTATE_BY_CODE, sqlStateOf } from './sqlstate.js'
export { PgWireTracker } from './tracker.js'
export type { WireState } from './tracker.js'
export { refuseStartup } from './refuse.js'
