import { Gauge, type Registry } from 'prom-client'

/** What `keyway_build_info` says about the running process. */
export interface BuildInfo {
  /** Keyway's version (package.json). */
  version: string
  /** `process.version`, e.g. `v26.12.1`. */
  nodeVersion: string
  /** The data path uses Node's internals (read-buffer/node-internals.ts): the switch is on and the start-up self-test passed. */
  fastPath: boolean
}

/**
 * Registers `keyway_build_info{version,node_version,fast_path}` (always 1)
 * on `registry`, for the gateway and the sidecar alike (docs/metrics.md).
 */
export function registerBuildInfo(registry: Registry, info: BuildInfo): void {
  const gauge = new Gauge({
    name: 'keyway_build_info',
    help: 'Always 1: the Keyway version, the Node version, and whether the data path uses Node internals (fast_path).',
    labelNames: ['version', 'node_version', 'fast_path'] as const,
    registers: [registry],
  })
  gauge.set({ version: info.version, node_version: info.nodeVersion, fast_path: info.fastPath ? 'true' : 'false' }, 1)
}
