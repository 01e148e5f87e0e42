import type { SettingsView } from '../admin/index.js'
import { html, type SafeHtml } from './html.js'
import { csrfField, errorAt, page, type FormError, type Viewer } from './layout.js'

/** What Settings > Port Overrides shows. */
export interface PortOverridesView {
  readonly viewer: Viewer
  readonly settings: SettingsView
  readonly etag: string
  readonly error?: FormError | undefined
  readonly notice?: string | undefined
}

/**
 * Settings > Port Overrides: port overrides, and auto-connect, whose switch
 * is disabled while port overrides are off (auto-connect depends on them).
 */
export function portOverridesPage(v: PortOverridesView): SafeHtml {
  const s = v.settings
  return page({
    title: 'Settings › Port Overrides',
    section: 'settings',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<h1>Settings</h1>
<nav aria-label="Settings"><ul class="tabs"><li><a href="/settings/port-overrides" aria-current="page">Port Overrides</a></li></ul></nav>
<form class="panel" method="post" action="/settings/port-overrides">
  ${csrfField(v.viewer)}<input type="hidden" name="etag" value="${v.etag}">
  ${errorAt(v.error, 'settings')}
  <div class="switch">
    <input type="checkbox" id="portOverrides" name="portOverrides" value="on"${s.portOverrides ? html` checked` : ''} aria-describedby="po-hint">
    <label for="portOverrides">Port overrides<span class="hint" id="po-hint">Every resource gets a fixed local port, the same on every sidecar.</span></label>
  </div>
  <div class="switch">
    <input type="checkbox" id="autoConnect" name="autoConnect" value="on"${s.autoConnect ? html` checked` : ''}${s.portOverrides ? '' : html` disabled`} aria-describedby="ac-hint">
    <label for="autoConnect">Auto-connect<span class="hint" id="ac-hint">Sidecars bind every granted resource at start, so service accounts connect with no further step. ${s.portOverrides ? 'Needs port overrides.' : 'Turn port overrides on first: auto-connect depends on them.'}</span></label>
  </div>
  <div class="inline">
    <div class="field"><label for="range-low">Port range from</label><input type="number" id="range-low" name="rangeLow" min="1" max="65535" required value="${s.portRange[0]}"></div>
    <div class="field"><label for="range-high">to</label><input type="number" id="range-high" name="rangeHigh" min="1" max="65535" required value="${s.portRange[1]}"></div>
  </div>
  <p class="hint muted">Resources without a port of their own get the lowest free port of this range.</p>
  <button type="submit">Save</button>
</form>`,
  })
}
