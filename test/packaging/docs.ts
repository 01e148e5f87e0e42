/**
 * The operator documentation stays true to the code: docs/configuration.md
 * lists every setting with its variable and default (derived here from the
 * schema), docs/troubleshooting.md has a section for every error code, and
 * the links of the operations docs lead somewhere.
 */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runKeyway } from '../helpers/cli.js'
import { configSchema, ENV_ALIASES, envNameOf, settingPaths } from '../../src/config/index.js'
import { ERROR_CODES } from '../../src/errors.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8')

function at(value: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], value)
}

function withSetting(path: string, value: unknown): Record<string, unknown> {
  const root: Record<string, unknown> = {}
  let node = root
  const parts = path.split('.')
  for (const k of parts.slice(0, -1)) node = node[k] = {} as Record<string, unknown>
  node[parts.at(-1)!] = value
  return root
}

/** `30s`, `1h`, `0`: the way a person writes a duration. */
function humanDuration(ms: number): string {
  if (ms === 0) return '0'
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms % size === 0) return `${ms / size}${unit}`
  return `${ms}ms`
}

/** A setting's default as the table shows it. */
function shownDefault(path: string): string {
  const value = at(configSchema.parse({}), path)
  // A number that the schema also takes as "1s" is a duration.
  const duration = typeof value === 'number' && configSchema.safeParse(withSetting(path, '1s')).success
  const text = (v: unknown): string =>
    Array.isArray(v) ? v.map(text).join(',') : v !== null && typeof v === 'object' ? `${(v as { host: string }).host}:${(v as { port: number }).port}` : String(v)
  if (duration) return humanDuration(value)
  if (value === '') return '""'
  if (Array.isArray(value) && value.length === 0) return '[]'
  return text(value)
}

t.test('docs/configuration.md: every setting with its variable and default', async (t) => {
  const doc = read('docs/configuration.md')
  const rows = new Map<string, string[]>()
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim())
    const m = /^`([a-zA-Z.]+)`$/.exec(cells[1] ?? '')
    if (m && /^`KEYWAY_/.test(cells[2] ?? '')) rows.set(m[1]!, cells.slice(1, -1))
  }
  const paths = settingPaths()
  for (const path of paths) {
    const row = rows.get(path)
    t.ok(row, `${path} has a row`)
    if (!row) continue
    t.equal(row[1], `\`${envNameOf(path)}\``, `${path}: its variable`)
    t.equal(row[2], `\`${shownDefault(path)}\``, `${path}: its default`)
    t.ok((row[3] ?? '').length > 10, `${path}: a meaning`)
  }
  t.same([...rows.keys()].filter((p) => !paths.includes(p)), [], 'no row for a setting that does not exist')
  for (const [alias, path] of Object.entries(ENV_ALIASES)) t.match(rows.get(path)?.[3] ?? '', alias, `${path} names its alias ${alias}`)
  for (const name of ['KEYWAY_TOKEN', 'KEYWAY_CONFIG']) t.match(doc, `| \`${name}\` |`, `${name} is documented`)
  t.match(doc, /flags.*>.*environment|1\. \*\*flags\*\*/s, 'precedence is documented')
  for (const code of ['| 0 |', '| 1 |', '| 2 |']) t.match(doc, code, `exit code ${code}`)
})

t.test('docs/configuration.md: the flags table names flags the commands accept', async (t) => {
  const doc = read('docs/configuration.md')
  const section = doc.slice(doc.indexOf('## Flags'), doc.indexOf('## Exit codes'))
  for (const line of section.split('\n').filter((l) => l.startsWith('| `keyway '))) {
    const [commandsCell, flagsCell] = line.split('|').slice(1, 3) as [string, string]
    const commands = [...commandsCell.matchAll(/`(?:keyway )?([a-z]+)`/g)].map((m) => m[1]!)
    const flags = [...flagsCell.matchAll(/`(--[a-z-]+)`/g)].map((m) => m[1]!)
    for (const command of commands) {
      const help = await runKeyway([command, '--help'])
      t.equal(help.code, 0, `keyway ${command} --help`)
      for (const flag of flags) t.match(help.stdout, flag, `keyway ${command} accepts ${flag}`)
    }
  }
})

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#+ (.+)$/gm)].map((m) =>
      m[1]!
        .toLowerCase()
        .replace(/[^\w\- ]/g, '')
        .replace(/ /g, '-'),
    ),
  )
}

t.test('docs/troubleshooting.md: a section for every error code', async (t) => {
  const doc = read('docs/troubleshooting.md')
  const sections = new Set([...doc.matchAll(/^### `(ERR_[A-Z_]+)`$/gm)].map((m) => m[1]!))
  const codes = Object.keys(ERROR_CODES)
  t.same(codes.filter((c) => !sections.has(c)), [], 'every code has a section')
  t.same([...sections].filter((c) => !codes.includes(c)), [], 'every section is a real code')
  for (const c of codes) {
    const body = doc.slice(doc.indexOf(`### \`${c}\``)).split(/\n### /)[0]!
    t.match(body, /\*\*Symptom\*\*/, `${c}: its symptom`)
    t.match(body, /\*\*Fix\*\*/, `${c}: its fix`)
  }
  t.match(doc, 'ss -ltnp', 'how to find who holds a port')
  for (const situation of ['The sidecar is not ready', 'TLS verification fails', 'A policy change is not applied']) t.match(doc, `### ${situation}`)
})

t.test('the operations docs link to things that exist', async (t) => {
  for (const file of ['docs/deployment.md', 'docs/configuration.md', 'docs/troubleshooting.md']) {
    const doc = read(file)
    for (const m of doc.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!
      if (/^https?:/.test(target)) continue
      const [path, anchor] = target.split('#') as [string, string | undefined]
      const resolved = path === '' ? join(ROOT, file) : join(ROOT, dirname(file), path)
      t.ok(existsSync(resolved), `${file}: ${target} exists`)
      if (anchor && resolved.endsWith('.md')) t.ok(anchors(readFileSync(resolved, 'utf8')).has(anchor), `${file}: #${anchor} is a heading of ${path || file}`)
    }
  }
  const deployment = read('docs/deployment.md')
  for (const f of ['deploy/kubernetes/job-with-sidecar.yaml', 'deploy/kubernetes/gateway.yaml', 'deploy/systemd/keyway-listen.service', 'deploy/systemd/keyway-listen@.service', 'deploy/systemd/keyway-gateway.service', 'deploy/docker/keyway.yaml']) {
    t.ok(existsSync(join(ROOT, f)), `${f} exists`)
    t.match(deployment, f.split('/').pop()!, `deployment.md mentions ${f}`)
  }
  for (const section of ['## VM', '### With systemd', '### With a wrapper script', '## Containers', '## Kubernetes', '## Gateway high availability']) {
    t.match(deployment, section, `deployment.md: ${section}`)
  }
})
