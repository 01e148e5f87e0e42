import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findRoot(): string {
  // Sources run from src/ under the test loader and from dist/src/ when built.
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config'))) return dir
    const parent = dirname(dir)
    if (parent === dir) throw new Error('keyway: cannot find the package root (package.json beside config/)')
    dir = parent
  }
}

/** The installed package's root folder (holds package.json and config/). */
export const PACKAGE_ROOT = findRoot()

/** The package version, for `keyway --version`. */
export const VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version
