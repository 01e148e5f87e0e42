/**
 * YAML documents that can point at any of their keys (`file:line:col`), for
 * the policy and the daemon configuration.
 */
export { parseLocated, locateIn, formatPath } from './document.js'
export type { LocatedDocument, YamlPath, SourcePosition } from './document.js'
