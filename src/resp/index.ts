/**
 * The Redis protocol (RESP) at the gateway: the AUTH it sends upstream for a
 * resource with credentials, its readiness probe, and the error reply a
 * client is refused with.
 */
export { authenticateRedis, probeRedis } from './auth.js'
export type { RedisLoginOptions, RedisSession } from './auth.js'
export { encodeCommand, keywayErrorReply, ReplyReader, MAX_REPLY_LINE } from './wire.js'
