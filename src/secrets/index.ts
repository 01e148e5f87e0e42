/** Upstream secrets of resources with credentials (password files, environment variables, CA files), read on the gateway only. */
export { SecretResolver } from './resolver.js'
export type { SecretResolverOptions, UpstreamSecret } from './resolver.js'
