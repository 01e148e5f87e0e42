import type { ResourceListEntry, RoleListEntry } from '../admin/index.js'
import { html, type SafeHtml } from './html.js'
import { csrfField, errorAt, page, type FormError, type Viewer } from './layout.js'
import { accountPath } from './users.js'

/** The path of a role's page. */
export function rolePath(name: string): string {
  return `/roles/${encodeURIComponent(name)}`
}

/** What the Roles page shows. */
export interface RolesView {
  readonly viewer: Viewer
  readonly roles: readonly RoleListEntry[]
  readonly error?: FormError | undefined
  readonly values?: Readonly<Record<string, string>> | undefined
  readonly notice?: string | undefined
}

/** Every role with its grants and holders, and **create role**. */
export function rolesPage(v: RolesView): SafeHtml {
  return page({
    title: 'Roles',
    section: 'roles',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<h1>Roles</h1>
<p class="lead">Accounts holding a role inherit every resource the role grants.</p>
<form class="panel inline" method="post" action="/roles">
  ${csrfField(v.viewer)}
  <div class="field"><label for="role-name">New role</label>
    <input type="text" id="role-name" name="name" required maxlength="63" autocomplete="off" spellcheck="false" value="${v.values?.name ?? ''}"></div>
  <button type="submit">Create role</button>
</form>
${errorAt(v.error, 'create-role')}
<table aria-label="Roles">
  <thead><tr><th scope="col">Role</th><th scope="col">Grants</th><th scope="col">Accounts</th></tr></thead>
  <tbody>${v.roles.length === 0
    ? html`<tr><td colspan="3" class="empty">No roles yet.</td></tr>`
    : v.roles.map((r) => html`<tr>
    <td><a href="${rolePath(r.name)}">${r.name}</a></td>
    <td>${r.grants.length === 0 ? html`<span class="muted">none</span>` : r.grants.map((g) => html`<span class="source">${g}</span>`)}</td>
    <td>${r.accounts.length === 0 ? html`<span class="muted">none</span>` : r.accounts.join(', ')}</td>
  </tr>`)}</tbody>
</table>`,
  })
}

/** What one role's page shows. */
export interface RoleView {
  readonly viewer: Viewer
  readonly role: RoleListEntry
  /** The role's ETag, carried by its forms. */
  readonly etag: string
  readonly resources: readonly ResourceListEntry[]
  readonly error?: FormError | undefined
  readonly notice?: string | undefined
}

/** One role: grant or remove each resource, see its holders, delete it. */
export function rolePage(v: RoleView): SafeHtml {
  const r = v.role
  const hidden = html`${csrfField(v.viewer)}<input type="hidden" name="etag" value="${v.etag}">`
  return page({
    title: `Role ${r.name}`,
    section: 'roles',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<p><a href="/roles">← Roles</a></p>
<h1>${r.name}</h1>
<p class="lead">Held by ${r.accounts.length === 0 ? 'no account' : r.accounts.map((a, i) => html`${i > 0 ? ', ' : ''}<a href="${accountPath(a)}">${a}</a>`)}.</p>
${errorAt(v.error, 'role')}
<table aria-label="Resources of role ${r.name}">
  <thead><tr><th scope="col">Resource</th><th scope="col">Kind</th><th scope="col">Type</th><th scope="col">Granted</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
  <tbody>${v.resources.length === 0
    ? html`<tr><td colspan="5" class="empty">No resources yet: add one on the <a href="/resources">Resources</a> page.</td></tr>`
    : v.resources.map((res) => {
        const granted = r.grants.includes(res.name)
        return html`<tr>
    <td><strong>${res.name}</strong></td><td>${res.kind}</td><td>${res.type}</td>
    <td>${granted ? html`<span class="source role">granted</span>` : html`<span class="muted">no</span>`}</td>
    <td class="actions"><form class="row-form" method="post" action="${rolePath(r.name)}/grants">${hidden}<input type="hidden" name="resource" value="${res.name}">
      ${granted
        ? html`<button type="submit" name="action" value="remove" class="danger">Remove<span class="sr-only"> ${res.name}</span></button>`
        : html`<button type="submit" name="action" value="grant" class="secondary">Grant<span class="sr-only"> ${res.name}</span></button>`}
    </form></td>
  </tr>`
      })}</tbody>
</table>
<h2>Delete this role</h2>
<form class="panel inline" method="post" action="${rolePath(r.name)}/delete">${hidden}
  ${r.accounts.length === 0 ? '' : html`<div class="field"><label><input type="checkbox" name="force" value="true"> Also unassign it from its ${r.accounts.length} account(s)</label></div>`}
  <button type="submit" class="danger">Delete role</button>
</form>`,
  })
}
