import type { AccountListEntry } from '../admin/index.js'
import { html, type SafeHtml } from './html.js'
import { csrfField, errorAt, page, type FormError, type Viewer } from './layout.js'

/** What the Users page shows. */
export interface UsersView {
  readonly viewer: Viewer
  /** One page of accounts, No Role first (the API's order). */
  readonly accounts: readonly AccountListEntry[]
  readonly roles: readonly string[]
  /** Cursor of the next page, if any. */
  readonly next: string | null
  readonly error?: FormError | undefined
  /** What the admin typed in the add-service form, shown again with its error. */
  readonly values?: Readonly<Record<string, string>> | undefined
  readonly notice?: string | undefined
}

/** The path of an account's page. */
export function accountPath(id: string): string {
  return `/accounts/${encodeURIComponent(id)}`
}

function rows(accounts: readonly AccountListEntry[]): SafeHtml {
  if (accounts.length === 0) return html`<tr><td colspan="4" class="empty">None</td></tr>`
  return html`${accounts.map(
    (a) => html`<tr>
  <td><a href="${accountPath(a.id)}">${a.name}</a>${a.tags.map((t) => html`<span class="tag">${t}</span>`)}</td>
  <td>${a.type === 'service' ? 'Service account' : 'User'}</td>
  <td>${a.noRole ? html`<span class="muted">No Role</span>` : a.roles.join(', ')}</td>
  <td>${a.suspended ? html`<span class="tag warn">suspended</span>` : html`<span class="muted">active</span>`}</td>
</tr>`,
  )}`
}

function table(id: string, accounts: readonly AccountListEntry[]): SafeHtml {
  return html`<table aria-labelledby="${id}">
  <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Roles</th><th scope="col">Status</th></tr></thead>
  <tbody>${rows(accounts)}</tbody>
</table>`
}

/**
 * The Users page as the seed describes it: accounts with No Role first in
 * their own section, services tagged `service`, and **add service** (a name,
 * then **create**).
 */
export function usersPage(v: UsersView): SafeHtml {
  const noRole = v.accounts.filter((a) => a.noRole)
  const withRole = v.accounts.filter((a) => !a.noRole)
  const open = v.error?.at === 'add-service'
  return page({
    title: 'Users',
    section: 'users',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<div class="head">
  <div>
    <h1>Users</h1>
    <p class="lead">People sign in with email and password; service accounts (tagged <span class="tag">service</span>) authenticate with a token.</p>
  </div>
</div>
<details class="add"${open ? html` open` : ''}>
  <summary class="button">add service</summary>
  <form method="post" action="/users/services">
    ${csrfField(v.viewer)}
    ${errorAt(v.error, 'add-service')}
    <div class="inline">
      <div class="field">
        <label for="service-name">Name</label>
        <input type="text" id="service-name" name="name" required maxlength="63" autocomplete="off" spellcheck="false" aria-describedby="service-name-hint" value="${v.values?.name ?? ''}">
      </div>
      <div class="field">
        <label for="service-role">Role</label>
        <select id="service-role" name="role">
          <option value="">No Role</option>
          ${v.roles.map((r) => html`<option value="${r}"${v.values?.role === r ? html` selected` : ''}>${r}</option>`)}
        </select>
      </div>
      <button type="submit">create</button>
    </div>
    <p class="field hint" id="service-name-hint">Only a name: lower-case letters, digits, "-", "_" and ".". A service account needs no email or password. Its token is shown once.</p>
  </form>
</details>
<h2 id="no-role">No Role <span class="muted">(${noRole.length})</span></h2>
<p class="muted">Access is granted to these accounts resource by resource.</p>
${table('no-role', noRole)}
<h2 id="with-role">With a role <span class="muted">(${withRole.length})</span></h2>
${table('with-role', withRole)}
${v.next === null ? '' : html`<p><a href="/users?cursor=${v.next}">Next page</a></p>`}`,
  })
}

/** What the page answering **create** shows: the token, this once. */
export interface ServiceCreatedView {
  readonly viewer: Viewer
  readonly account: { readonly id: string; readonly name: string; readonly roles: readonly string[] }
  readonly token: { readonly token: string; readonly id: string; readonly fingerprint: string; readonly expiresAt: string | null }
  /** `created` or `rotated`. */
  readonly how: 'created' | 'rotated'
}

/**
 * The token of a new service account (or a rotation), shown once with a copy
 * button and a warning. Only the POST that made it answers this page; the
 * account page never shows a token.
 */
export function serviceCreatedPage(v: ServiceCreatedView): SafeHtml {
  return page({
    title: v.how === 'created' ? 'Service account created' : 'New token',
    section: 'users',
    viewer: v.viewer,
    replaceUrl: accountPath(v.account.id),
    main: html`<h1>${v.how === 'created' ? 'Service account created' : 'New token issued'}: ${v.account.name}<span class="tag">service</span></h1>
<div class="panel">
  <p class="warning" role="alert"><strong>Copy this token now.</strong> It is shown only once: Keyway keeps only its fingerprint, and you won't be able to see it again, not even by reloading this page.</p>
  <div class="token-box">
    <label for="token" class="sr-only">Token of ${v.account.name}</label>
    <input type="text" id="token" readonly value="${v.token.token}" spellcheck="false" autocomplete="off">
    <button type="button" data-copy="token" hidden>Copy</button>
  </div>
  <dl class="facts">
    <dt>Token id</dt><dd><code>${v.token.id}</code></dd>
    <dt>Fingerprint</dt><dd><code>${v.token.fingerprint}</code></dd>
    <dt>Expires</dt><dd>${v.token.expiresAt ?? 'never'}</dd>
    <dt>Roles</dt><dd>${v.account.roles.length === 0 ? 'No Role' : v.account.roles.join(', ')}</dd>
  </dl>
  <p>Put it in a file with mode 0600 next to the job and run <code>keyway listen --token-file FILE</code>.</p>
</div>
<p><a class="button" href="${accountPath(v.account.id)}">Grant access to resources</a> <a href="/users">Back to Users</a></p>`,
  })
}
