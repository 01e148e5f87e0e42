import type { AccountView, ResourceListEntry } from '../admin/index.js'
import { RESOURCE_KINDS, type ResourceKind } from '../policy/index.js'
import { html, type SafeHtml } from './html.js'
import { csrfField, errorAt, page, type FormError, type Viewer } from './layout.js'
import { accountPath } from './users.js'

/** The durations offered for temporary access, in seconds. */
export const TEMPORARY_DURATIONS: readonly { readonly seconds: number; readonly label: string }[] = [
  { seconds: 3_600, label: '1 hour' },
  { seconds: 4 * 3_600, label: '4 hours' },
  { seconds: 8 * 3_600, label: '8 hours' },
  { seconds: 86_400, label: '1 day' },
  { seconds: 7 * 86_400, label: '7 days' },
]

/** How long old tokens keep working after a rotation, in seconds. */
export const ROTATION_GRACES: readonly { readonly seconds: number; readonly label: string }[] = [
  { seconds: 0, label: 'no time (revoke them now)' },
  { seconds: 3_600, label: '1 hour' },
  { seconds: 86_400, label: '1 day' },
  { seconds: 7 * 86_400, label: '7 days' },
]

/** Tab labels of the resource kinds, in the seed's order. */
export const KIND_LABELS: Readonly<Record<ResourceKind, string>> = {
  datasource: 'Datasources',
  server: 'Servers',
  cluster: 'Clusters',
  website: 'Websites',
  cloud: 'Clouds',
}

/** What an account's page shows. */
export interface AccountPageView {
  readonly viewer: Viewer
  readonly account: AccountView
  /** The account's ETag: every form carries it, so a stale edit is refused. */
  readonly etag: string
  /** Every resource, to grant from. */
  readonly resources: readonly ResourceListEntry[]
  /** Every role's name, to assign from. */
  readonly roles: readonly string[]
  /** The selected tab. */
  readonly kind: ResourceKind
  readonly error?: FormError | undefined
  readonly notice?: string | undefined
}

/** Parses `?kind=`: one of the kinds, else the first. */
export function kindOf(value: unknown): ResourceKind {
  return (RESOURCE_KINDS as readonly unknown[]).includes(value) ? (value as ResourceKind) : 'datasource'
}

function sourceChip(source: string): SafeHtml {
  const cls = source === 'direct' ? 'direct' : source.startsWith('temporary') ? 'temporary' : 'role'
  const text = source === 'direct' ? 'Direct grant' : source.startsWith('role ') ? `From role ${source.slice(5)}` : source.replace(/^temporary/, 'Temporary')
  return html`<span class="source ${cls}">${text}</span>`
}

function resourceRow(v: AccountPageView, r: ResourceListEntry, sources: readonly string[]): SafeHtml {
  const own = sources.some((s) => s === 'direct' || s.startsWith('temporary'))
  const fromRole = sources.some((s) => s.startsWith('role '))
  const base = html`${csrfField(v.viewer)}<input type="hidden" name="etag" value="${v.etag}"><input type="hidden" name="kind" value="${v.kind}"><input type="hidden" name="resource" value="${r.name}">`
  let action: SafeHtml
  if (own) {
    action = html`<form class="row-form" method="post" action="${accountPath(v.account.id)}/grants">${base}
  <button type="submit" name="action" value="remove" class="danger">Remove<span class="sr-only"> access to ${r.name}</span></button>
</form>`
  } else if (fromRole) {
    action = html`<span class="muted">Inherited: change the role to change it</span>`
  } else {
    const durationId = `duration-${r.name}`
    action = html`<form class="row-form" method="post" action="${accountPath(v.account.id)}/grants">${base}
  ${v.account.noRole ? html`<button type="submit" name="action" value="grant">Grant<span class="sr-only"> ${r.name}</span></button>` : ''}
  <label for="${durationId}" class="sr-only">Temporary access to ${r.name} for</label>
  <select id="${durationId}" name="seconds">${TEMPORARY_DURATIONS.map((d) => html`<option value="${d.seconds}">${d.label}</option>`)}</select>
  <button type="submit" name="action" value="temporary" class="secondary">Grant for<span class="sr-only"> this long: ${r.name}</span></button>
</form>`
  }
  return html`<tr>
  <td><strong>${r.name}</strong></td>
  <td>${r.type}</td>
  <td><code>${r.address}</code></td>
  <td>${r.portOverride ?? html`<span class="muted">on demand</span>`}</td>
  <td>${sources.length === 0 ? html`<span class="muted">No access</span>` : sources.map(sourceChip)}</td>
  <td class="actions">${action}</td>
</tr>`
}

/**
 * An account's configuration: its roles, and every resource in tabs by kind,
 * where a click grants or removes a direct grant, grants temporary access,
 * or shows that the access comes from a role.
 */
export function accountPage(v: AccountPageView): SafeHtml {
  const a = v.account
  const reach = new Map<string, readonly string[]>()
  for (const k of RESOURCE_KINDS) for (const r of a.resources[k]) reach.set(r.name, r.sources)
  const shown = v.resources.filter((r) => r.kind === v.kind)
  const others = v.roles.filter((r) => !a.roles.includes(r))
  const hasDirect = RESOURCE_KINDS.some((k) => a.resources[k].some((r) => r.sources.includes('direct')))
  return page({
    title: a.name,
    section: 'users',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<p><a href="/users">← Users</a></p>
<div class="head">
  <div>
    <h1>${a.name}${a.tags.map((t) => html`<span class="tag">${t}</span>`)}${a.suspended ? html`<span class="tag warn">suspended</span>` : ''}</h1>
    <p class="lead">${a.type === 'service' ? 'Service account' : 'User'} · <code>${a.id}</code>${a.noRole ? ' · No Role: access is granted resource by resource' : ''}</p>
  </div>
</div>
${errorAt(v.error, 'account')}
<section class="panel" aria-labelledby="roles-h">
  <h2 id="roles-h">Roles</h2>
  ${errorAt(v.error, 'roles')}
  ${a.roles.length === 0
    ? html`<p class="muted">No Role.</p>`
    : html`<ul class="chips">${a.roles.map(
        (r) => html`<li class="source role"><a href="/roles/${encodeURIComponent(r)}">${r}</a>
      <form class="row-form" method="post" action="${accountPath(a.id)}/roles">${csrfField(v.viewer)}<input type="hidden" name="etag" value="${v.etag}"><input type="hidden" name="kind" value="${v.kind}"><input type="hidden" name="role" value="${r}">
        <button type="submit" name="action" value="unassign" class="link">Unassign<span class="sr-only"> role ${r}</span></button>
      </form></li>`,
      )}</ul>`}
  ${others.length === 0
    ? ''
    : html`<form class="inline" method="post" action="${accountPath(a.id)}/roles">${csrfField(v.viewer)}<input type="hidden" name="etag" value="${v.etag}"><input type="hidden" name="kind" value="${v.kind}">
    <div class="field"><label for="assign-role">Assign a role</label>
      <select id="assign-role" name="role">${others.map((r) => html`<option value="${r}">${r}</option>`)}</select></div>
    ${hasDirect ? html`<div class="field"><label><input type="checkbox" name="dropDirectGrants" value="true"> Remove its direct grants</label></div>` : ''}
    <button type="submit" name="action" value="assign" class="secondary">Assign</button>
  </form>`}
</section>
<section aria-labelledby="resources-h">
  <h2 id="resources-h">Resources</h2>
  ${errorAt(v.error, 'grants')}
  <nav aria-label="Resource kinds"><ul class="tabs">${RESOURCE_KINDS.map((k) => {
    const total = v.resources.filter((r) => r.kind === k).length
    return html`<li><a href="${accountPath(a.id)}?kind=${k}"${k === v.kind ? html` aria-current="page"` : ''}>${KIND_LABELS[k]}<span class="count">${total}</span></a></li>`
  })}</ul></nav>
  <table aria-label="${KIND_LABELS[v.kind]}">
    <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Address</th><th scope="col">Local port</th><th scope="col">Access</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
    <tbody>${shown.length === 0 ? html`<tr><td colspan="6" class="empty">No ${KIND_LABELS[v.kind].toLowerCase()} yet.</td></tr>` : shown.map((r) => resourceRow(v, r, reach.get(r.name) ?? []))}</tbody>
  </table>
  ${a.noRole ? '' : html`<p class="muted">Direct grants need No Role; with a role, grant temporary access or change the role.</p>`}
  ${a.expiredGrants.length === 0 ? '' : html`<p class="muted">Ended temporary grants: ${a.expiredGrants.map((g) => `${g.resource} (${g.expired})`).join(', ')}</p>`}
</section>
${a.type === 'service'
  ? html`<section aria-labelledby="tokens-h">
  <h2 id="tokens-h">Tokens</h2>
  <table aria-labelledby="tokens-h">
    <thead><tr><th scope="col">Id</th><th scope="col">Fingerprint</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
    <tbody>${a.tokens.length === 0
      ? html`<tr><td colspan="5" class="empty">No tokens.</td></tr>`
      : a.tokens.map((t) => html`<tr><td><code>${t.id}</code></td><td><code>${t.fingerprint}</code></td><td>${t.created ?? '—'}</td><td>${t.expires ?? 'never'}${t.expired ? html` <span class="tag warn">expired</span>` : ''}</td>
      <td class="actions"><form class="row-form" method="post" action="${accountPath(a.id)}/tokens/revoke">${csrfField(v.viewer)}<input type="hidden" name="token" value="${t.id}">
        <button type="submit" class="danger">Revoke<span class="sr-only"> token ${t.id}</span></button></form></td></tr>`)}</tbody>
  </table>
  ${errorAt(v.error, 'tokens')}
  <form class="inline panel" method="post" action="${accountPath(a.id)}/tokens/rotate">${csrfField(v.viewer)}
    <div class="field"><label for="grace">Old tokens keep working for</label>
      <select id="grace" name="graceSeconds">${ROTATION_GRACES.map((g) => html`<option value="${g.seconds}"${g.seconds === 3_600 ? html` selected` : ''}>${g.label}</option>`)}</select></div>
    <button type="submit" class="secondary">Rotate token</button>
  </form>
  <p class="muted">Tokens are shown only when issued; Keyway keeps their fingerprints.</p>
  <h2 id="delete-h">Delete this service account</h2>
  <form class="inline panel" method="post" action="${accountPath(a.id)}/delete">${csrfField(v.viewer)}
    ${errorAt(v.error, 'delete')}
    <div class="field"><label><input type="checkbox" name="confirm" value="yes" required> Its tokens stop working at once</label></div>
    <button type="submit" class="danger">Delete ${a.name}</button>
  </form>
</section>`
  : ''}`,
  })
}
