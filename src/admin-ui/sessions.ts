import type { ApiError } from './api.js'
import { html, type SafeHtml } from './html.js'
import { csrfField, errorAt, page, type FormError, type Viewer } from './layout.js'
import { accountPath } from './users.js'

/** One live session as `GET /v1/admin/sessions` answers it. */
export interface LiveSessionEntry {
  readonly id: string
  readonly account: { readonly id: string; readonly name: string; readonly type: string }
  readonly resource: string
  readonly startedAt: string
  readonly bytes: { readonly in: number; readonly out: number }
  readonly gateway?: string
}

/** What the Sessions page shows. */
export interface SessionsView {
  readonly viewer: Viewer
  readonly sessions: readonly LiveSessionEntry[]
  /** Gateways that did not answer the list in time (PostgreSQL store): their sessions are missing. */
  readonly unanswered?: readonly string[] | undefined
  /** Why no sessions can be listed here (an admin server without a gateway). */
  readonly unavailable?: ApiError | undefined
  readonly error?: FormError | undefined
  readonly notice?: string | undefined
}

/** The live sessions the admin API reaches (this gateway's, or every gateway's on the PostgreSQL store), each with an **End** button. */
export function sessionsPage(v: SessionsView): SafeHtml {
  return page({
    title: 'Sessions',
    section: 'sessions',
    viewer: v.viewer,
    notice: v.notice,
    main: html`<h1>Sessions</h1>
<p class="lead">Live sessions through this gateway, or on the PostgreSQL store through every gateway. Ending one closes it at once; its client is told <code>ERR_SESSION_ENDED_BY_ADMIN</code> and may connect again while its access stands.</p>
${errorAt(v.error, 'sessions')}
${v.unanswered !== undefined && v.unanswered.length > 0 ? html`<p class="panel" role="status">Not listed: the sessions of ${v.unanswered.join(', ')}, which did not answer in time.</p>` : ''}
${v.unavailable === undefined
    ? html`<table aria-label="Live sessions">
  <thead><tr><th scope="col">Account</th><th scope="col">Resource</th><th scope="col">Started</th><th scope="col">Bytes in / out</th><th scope="col">Gateway</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
  <tbody>${v.sessions.length === 0
    ? html`<tr><td colspan="6" class="empty">No live sessions.</td></tr>`
    : v.sessions.map((s) => html`<tr>
    <td><a href="${accountPath(s.account.id)}">${s.account.name}</a>${s.account.type === 'service' ? html` <span class="tag">service</span>` : ''}</td>
    <td>${s.resource}</td>
    <td><time datetime="${s.startedAt}">${s.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}</time></td>
    <td>${formatBytes(s.bytes.in)} / ${formatBytes(s.bytes.out)}</td>
    <td>${s.gateway ?? html`<span class="muted">unknown</span>`}</td>
    <td class="actions"><form class="row-form" method="post" action="/sessions/${encodeURIComponent(s.id)}/end">${csrfField(v.viewer)}
      <button type="submit" class="danger">End<span class="sr-only"> session of ${s.account.name} to ${s.resource}</span></button>
    </form></td>
  </tr>`)}</tbody>
</table>`
    : html`<p class="panel">${v.unavailable.message} <code>${v.unavailable.code}</code></p>`}`,
  })
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}
