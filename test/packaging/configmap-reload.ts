/**
 * deploy/kubernetes/gateway.yaml mounts the policy ConfigMap as a folder and
 * relies on the gateway's watcher to pick up updates. A ConfigMap volume is
 * updated the way the kubelet's atomic writer does it: a new timestamped
 * folder, a `..data_tmp` symlink to it renamed over `..data`, while
 * `policy.yaml` stays a symlink to `..data/policy.yaml`. This reproduces that
 * layout and swap and checks that the PolicyStore reloads, and that a broken
 * update keeps the last good policy.
 */
import t from 'tap'
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { packPolicyFileHere, PolicyStore, type ReloadResult } from '../../src/policy/index.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function manifestPolicy(): string {
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes/gateway.yaml'), 'utf8')).map((d) => d.toJS() as Record<string, any>)
  return docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'keyway-policy')!.data['policy.yaml'] as string
}

/** Writes a ConfigMap payload the way the kubelet does: new folder, then an atomic `..data` swap. */
function publish(dir: string, version: number, files: Record<string, string>): void {
  const payload = `..2026_01_01_00_00_0${version}.${1000 + version}`
  mkdirSync(join(dir, payload))
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, payload, name), text)
  symlinkSync(payload, join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  for (const name of Object.keys(files)) {
    try {
      symlinkSync(join('..data', name), join(dir, name))
    } catch {
      // Already linked by the first payload: the link itself never changes.
    }
  }
}

t.test('a ConfigMap update (..data symlink swap) reloads the policy; a broken one keeps the last good', async (t) => {
  const dir = t.testdir()
  const policy = manifestPolicy()
  publish(dir, 1, { 'policy.yaml': policy })
  // One swap is several file events; the debounce may turn them into more than one reload, so wait for the one that matters.
  let waiter: { pred: (r: ReloadResult) => boolean; resolve: (r: ReloadResult) => void } | undefined
  // The watcher is unref'd (a gateway's listeners keep the process alive): the deadline keeps this test's loop alive and fails it if no reload comes.
  const reload = (pred: (r: ReloadResult) => boolean): Promise<ReloadResult> =>
    new Promise((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error('no matching reload within 10 s of the ..data swap')), 10_000)
      waiter = {
        pred,
        resolve: (r) => {
          clearTimeout(deadline)
          resolve(r)
        },
      }
    })
  const store = new PolicyStore({
    file: join(dir, 'policy.yaml'),
    debounceMs: 10,
    // This test is about the watcher: pack on this thread (a worker start costs seconds under the TypeScript loader).
    pack: async (file, o) => packPolicyFileHere({ file, limits: o.limits }),
    onReload: (r) => {
      if (waiter?.pred(r)) {
        waiter.resolve(r)
        waiter = undefined
      }
    },
  })
  t.teardown(() => store.close())
  const first = await store.start()
  t.ok(first.roles.has('etl'), 'the manifest policy loads')
  store.watch()

  const changed = policy.replace('roles:\n', 'roles:\n  - name: reporting\n    grants: [warehouse]\n')
  t.not(changed, policy)
  let reloaded = reload((r) => r.ok && r.changed)
  publish(dir, 2, { 'policy.yaml': changed })
  await reloaded
  t.ok(store.current().roles.has('reporting'), 'the swap was seen and the new policy is in force')
  t.ok(store.current().generation > first.generation, 'a new generation')

  reloaded = reload((r) => !r.ok)
  publish(dir, 3, { 'policy.yaml': 'version: 1\nresources: [oops\n' })
  const broken = await reloaded
  t.equal(broken.ok ? undefined : broken.error.code, 'ERR_POLICY_INVALID', 'a broken update is refused')
  t.ok(store.current().roles.has('reporting'), 'the last good policy stays in force')
})
