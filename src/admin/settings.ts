import { KeywayError } from '../errors.js'
import type { CompiledPolicy } from '../policy/index.js'
import { edit, type AdminContext } from './context.js'
import { settingsMap } from './document.js'
import { pinAssignedPorts } from './resources.js'

/** The settings `keyway admin settings set` changes, by their command-line names. */
export const SETTING_NAMES = ['port-overrides', 'auto-connect', 'port-range'] as const

/** A setting's command-line name. */
export type SettingName = (typeof SETTING_NAMES)[number]

/** What `keyway admin settings show` prints (the effective settings, defaults applied). */
export interface SettingsView {
  readonly portOverrides: boolean
  readonly autoConnect: boolean
  readonly portRange: readonly [number, number]
}

/** The effective settings of a policy. */
export function showSettings(policy: CompiledPolicy): SettingsView {
  const { portOverrides, autoConnect, portRange } = policy.settings
  return { portOverrides, autoConnect, portRange: [portRange[0], portRange[1]] }
}

/** What {@link setSetting} did. */
export interface SetSettingResult {
  readonly changed: boolean
  /** Ports written into resources when port overrides were turned on. */
  readonly pinnedPorts: readonly { readonly resource: string; readonly port: number }[]
}

/**
 * Changes one setting:
 * - `port-overrides on|off`: fixed local ports per resource. Turning it on
 *   writes the port assigned to every resource that has none, so ports stay
 *   fixed. Turning it off while auto-connect is on is refused.
 * - `auto-connect on|off`: sidecars bind every granted resource at start.
 *   Auto-connect depends on port overrides: turning it on while they are off
 *   is refused.
 * - `port-range LOW-HIGH`: where override ports are assigned from.
 *
 * @throws KeywayError ERR_USAGE (unknown setting, bad value), ERR_PRECONDITION (the dependency above)
 */
export async function setSetting(ctx: AdminContext, name: string, value: string): Promise<SetSettingResult> {
  const setting = checkSetting(name)
  const parsed = setting === 'port-range' ? parseRange(value) : parseSwitch(setting, value)
  return edit(ctx, (doc, current) => {
    const { portOverrides, autoConnect } = current.settings
    const map = settingsMap(doc)
    if (setting === 'port-range') {
      const [low, high] = parsed as [number, number]
      const same = current.settings.portRange[0] === low && current.settings.portRange[1] === high
      if (!same) map.set('portRange', doc.createNode([low, high], { flow: true }))
      return { changed: !same, pinnedPorts: [] }
    }
    const on = parsed as boolean
    if (setting === 'auto-connect') {
      if (on && !portOverrides) {
        throw new KeywayError(
          'ERR_PRECONDITION',
          'auto-connect depends on port overrides, which are off: run "keyway admin settings set port-overrides on" first',
        )
      }
      if (on === autoConnect) return { changed: false, pinnedPorts: [] }
      map.set('autoConnect', on)
      return { changed: true, pinnedPorts: [] }
    }
    if (!on && autoConnect) {
      throw new KeywayError(
        'ERR_PRECONDITION',
        'auto-connect depends on port overrides and is on: run "keyway admin settings set auto-connect off" first',
      )
    }
    if (on === portOverrides) return { changed: false, pinnedPorts: [] }
    map.set('portOverrides', on)
    return { changed: true, pinnedPorts: on ? pinAssignedPorts(doc, ctx.policyFile) : [] }
  }, {})
}

function checkSetting(name: string): SettingName {
  if (!(SETTING_NAMES as readonly string[]).includes(name)) {
    throw new KeywayError('ERR_USAGE', `unknown setting "${name}"; settings are ${SETTING_NAMES.join(', ')}`)
  }
  return name as SettingName
}

function parseSwitch(name: string, value: string): boolean {
  const v = value.toLowerCase()
  if (v === 'on' || v === 'true') return true
  if (v === 'off' || v === 'false') return false
  throw new KeywayError('ERR_USAGE', `${name} must be on or off (got "${value}")`)
}

function parseRange(value: string): [number, number] {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(value)
  const low = Number(m?.[1])
  const high = Number(m?.[2])
  if (!m || low < 1 || high > 65535 || low > high) {
    throw new KeywayError('ERR_USAGE', `port-range must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 15000-15999 (got "${value}")`)
  }
  return [low, high]
}
