/**
 * The PostgreSQL wire protocol at the gateway: the login made on a client's
 * behalf with a resource's credentials, and the ErrorResponse a client is
 * given when Keyway ends or refuses its session.
 */
export { injectLogin } from './inject.js'
export type { ForwardedCancel, InjectedSession, InjectOptions } from './inject.js'
export { SaltedPasswordCache, scramClient, saltPassword, md5Password, SCRAM_SHA_256 } from './scram.js'
export type { ScramClient } from './scram.js'
export { encodeErrorResponse, sqlstateOf } from './error-response.js'
