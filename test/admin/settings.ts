import t from 'tap'
import { readPolicy, setSetting, showSettings } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { FIXTURE_POLICY, writeAdminSetup } from '../helpers/cli.js'

t.test('auto-connect depends on port overrides, both ways', async (t) => {
  const off = FIXTURE_POLICY.replace('portOverrides: true', 'portOverrides: false')
  const setup = await writeAdminSetup(t.testdir(), off)
  const ctx = setup.ctx(new ManualClock())
  const err = (await t.rejects(setSetting(ctx, 'auto-connect', 'on'))) as KeywayError
  t.equal(err.code, 'ERR_PRECONDITION')
  t.match(err.message, /auto-connect depends on port overrides/)
  t.match(err.message, /settings set port-overrides on/)
  t.equal(setup.policyText(), off, 'nothing written')

  t.same(await setSetting(ctx, 'port-overrides', 'on'), { changed: true, pinnedPorts: [{ resource: 'web', port: 16001 }] })
  t.same(await setSetting(ctx, 'auto-connect', 'on'), { changed: true, pinnedPorts: [] })
  t.match(setup.policyText(), /autoConnect: true # flipped by the settings tests\n/, 'the line comment stays')
  const refuse = (await t.rejects(setSetting(ctx, 'port-overrides', 'off'))) as KeywayError
  t.equal(refuse.code, 'ERR_PRECONDITION')
  t.match(refuse.message, /auto-connect depends on port overrides.*auto-connect off/)
  t.same(await setSetting(ctx, 'auto-connect', 'off'), { changed: true, pinnedPorts: [] })
  t.same(await setSetting(ctx, 'port-overrides', 'off'), { changed: true, pinnedPorts: [] })
  t.same(showSettings((await readPolicy(setup.policyFile)).policy), { portOverrides: false, autoConnect: false, portRange: [16000, 16099] })
})

t.test('turning port overrides on writes every assigned port', async (t) => {
  const setup = await writeAdminSetup(
    t.testdir(),
    'version: 1\nresources:\n  - name: a\n    kind: server\n    type: ssh\n    address: h:22\n  - name: b\n    kind: server\n    type: ssh\n    address: h:23\n',
  )
  const ctx = setup.ctx(new ManualClock())
  const r = await setSetting(ctx, 'port-overrides', 'on')
  t.same(r.pinnedPorts, [{ resource: 'a', port: 15000 }, { resource: 'b', port: 15001 }])
  t.equal(
    setup.policyText(),
    'version: 1\nsettings:\n  portOverrides: true\nresources:\n  - name: a\n    kind: server\n    type: ssh\n    address: h:22\n    portOverride: 15000\n  - name: b\n    kind: server\n    type: ssh\n    address: h:23\n    portOverride: 15001\n',
    'settings created in its usual place, after version',
  )
  t.same(await setSetting(ctx, 'port-overrides', 'on'), { changed: false, pinnedPorts: [] }, 'setting it again changes nothing')
})

t.test('port range, and bad names and values', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(new ManualClock())
  t.same(await setSetting(ctx, 'port-range', '20000-20999'), { changed: true, pinnedPorts: [] })
  t.match(setup.policyText(), /portRange: \[20000, 20999\]/)
  t.same(showSettings((await readPolicy(setup.policyFile)).policy).portRange, [20000, 20999])
  for (const [name, value] of [
    ['colour', 'on'],
    ['auto-connect', 'maybe'],
    ['port-range', '2000'],
    ['port-range', '3000-2000'],
    ['port-range', '1-70000'],
  ] as const) {
    t.ok(isKeywayError(await t.rejects(setSetting(ctx, name, value)), 'ERR_USAGE'), `${name} ${value}`)
  }
})
