import type { Clock } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import type { Logger } from '../observe/index.js'
import type { PolicyStoreOptions, ReloadResult } from '../policy/index.js'
import type { Registry } from 'prom-client'
import { FileStore } from './file.js'
import { PostgresStore } from './pg-store.js'
import type { KeywayStore } from './store.js'

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  readonly clock: Clock
  readonly logger: Logger
  readonly registry?: Registry
  readonly onReload?: (result: ReloadResult) => void
  readonly onError?: (err: unknown) => void
  /** The file store's reader (see `PolicyStoreOptions.pack`). */
  readonly pack?: PolicyStoreOptions['pack']
}

/** The store `config.store` names: the policy file, or PostgreSQL. Nothing is read until `start()`. */
export function openStore(config: KeywayConfig, options: OpenStoreOptions): KeywayStore {
  const observe = { ...(options.onReload ? { onReload: options.onReload } : {}), ...(options.onError ? { onError: options.onError } : {}) }
  if (config.store === 'postgres') {
    return new PostgresStore({ config, clock: options.clock, logger: options.logger, ...(options.registry ? { registry: options.registry } : {}), ...observe })
  }
  return new FileStore({ config, clock: options.clock, logger: options.logger, ...(options.pack ? { pack: options.pack } : {}), ...observe })
}
