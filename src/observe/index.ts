export { createLogger, silentLogger, redactSecrets, LineBatcher, type Logger, type CreateLoggerOptions } from './log.js'
export { ObservabilityServer, sendJson, readJson, type ObservabilityServerOptions, type Route } from './http.js'
export { RefusalAudit, type Refusal, type RefusalAuditOptions } from './audit.js'
export { registerBuildInfo, type BuildInfo } from './build-info.js'
