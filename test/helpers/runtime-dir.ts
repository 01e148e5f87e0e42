import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Teardown } from './fake-gateway.js'

/**
 * A sidecar runtime directory path for one test, not yet created (the
 * sidecar makes it 0700): short, under the system's temporary folder,
 * because a Unix socket path must stay under 108 bytes. Removed on teardown.
 */
export function tempRuntimeDir(t: Teardown): string {
  const parent = mkdtempSync(join(tmpdir(), 'kw-'))
  t.teardown(() => rmSync(parent, { recursive: true, force: true }))
  return join(parent, 'rt')
}
