import type { ResourceListEntry } from '../admin/index.js'
import { RESOURCE_KINDS } from '../policy/index.js'
import { html, type SafeHtml } from './html.js'
import { csrfField, errorAt, page, type FormError, type Viewer } from './layout.js'

/** What the Resources page shows. */
export interface ResourcesView {
  readonly viewer: Viewer
  readonly resources: readonly ResourceListEntry[]
  readonly portOverrides: boolean
  readonly error?: FormError | undefined
  readonly values?: Readonly<Record<string, string>> | undefined
  readonly notice?: string | undefined
}

/** Every resource, **add resource**, and remove. */
export function resourcesPage(v: ResourcesView): SafeHtml {
  const val = (k: string): string => v.values?.[k] ?? ''
  return page({
    title: 'Resources',
    section: 'resources',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<h1>Resources</h1>
<p class="lead">Datasources, servers, clusters, websites and clouds the gateway forwards to.${v.portOverrides ? ' Port overrides are on: each has a fixed local port.' : ' Port overrides are off: sidecars pick local ports.'}</p>
<details class="add"${v.error?.at === 'add-resource' ? html` open` : ''}>
  <summary class="button">add resource</summary>
  <form method="post" action="/resources">
    ${csrfField(v.viewer)}
    ${errorAt(v.error, 'add-resource')}
    <div class="inline">
      <div class="field"><label for="res-name">Name</label><input type="text" id="res-name" name="name" required maxlength="63" autocomplete="off" spellcheck="false" value="${val('name')}"></div>
      <div class="field"><label for="res-kind">Kind</label><select id="res-kind" name="kind">${RESOURCE_KINDS.map((k) => html`<option value="${k}"${val('kind') === k ? html` selected` : ''}>${k}</option>`)}</select></div>
      <div class="field"><label for="res-type">Type</label><input type="text" id="res-type" name="type" required maxlength="40" placeholder="postgres" value="${val('type')}"></div>
      <div class="field"><label for="res-address">Address</label><input type="text" id="res-address" name="address" required maxlength="300" placeholder="db.internal:5432" value="${val('address')}"></div>
      <div class="field"><label for="res-port">Local port <span class="hint">(optional)</span></label><input type="number" id="res-port" name="portOverride" min="1" max="65535" value="${val('portOverride')}"></div>
      <button type="submit">add</button>
    </div>
  </form>
</details>
${errorAt(v.error, 'resources')}
${v.error?.at === 'resources' && v.values?.remove !== undefined && /still granted/.test(v.error.message)
  ? html`<form class="panel inline" method="post" action="/resources/${encodeURIComponent(v.values.remove)}/delete">${csrfField(v.viewer)}<input type="hidden" name="force" value="true">
  <p>Remove <strong>${v.values.remove}</strong> anyway, with every grant of it? Live sessions to it end.</p>
  <button type="submit" class="danger">Remove ${v.values.remove} and its grants</button>
</form>`
  : ''}
<table aria-label="Resources">
  <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Type</th><th scope="col">Address</th><th scope="col">Local port</th><th scope="col">Upstream login</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
  <tbody>${v.resources.length === 0
    ? html`<tr><td colspan="7" class="empty">No resources yet.</td></tr>`
    : v.resources.map((r) => html`<tr>
    <td><strong>${r.name}</strong></td><td>${r.kind}</td><td>${r.type}</td><td><code>${r.address}</code></td>
    <td>${r.portOverride ?? html`<span class="muted">—</span>`}</td><td>${r.username ?? html`<span class="muted">—</span>`}</td>
    <td class="actions"><form class="row-form" method="post" action="/resources/${encodeURIComponent(r.name)}/delete">${csrfField(v.viewer)}
      <button type="submit" class="danger">Remove<span class="sr-only"> ${r.name}</span></button></form></td>
  </tr>`)}</tbody>
</table>`,
  })
}
