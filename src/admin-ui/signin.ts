import type { ApiError } from './api.js'
import { html, type SafeHtml } from './html.js'
import { errorBox, page } from './layout.js'

/** What the sign-in page shows. */
export interface SignInView {
  /** The form's CSRF token (the same value is in the sign-in cookie). */
  readonly csrf: string
  readonly email?: string | undefined
  readonly next?: string | undefined
  readonly error?: ApiError | undefined
  readonly notice?: string | undefined
}

/** The sign-in page: email and password, errors on the form. */
export function signInPage(v: SignInView): SafeHtml {
  return page({
    title: 'Sign in',
    section: 'signin',
    notice: v.notice,
    main: html`<div class="signin">
  <h1>Sign in</h1>
  <p class="lead">Keyway Admin: service accounts, roles and resources.</p>
  <form class="panel" method="post" action="/signin" novalidate>
    ${errorBox(v.error)}
    <input type="hidden" name="_csrf" value="${v.csrf}">
    ${v.next === undefined ? '' : html`<input type="hidden" name="next" value="${v.next}">`}
    <div class="field">
      <label for="email">Email</label>
      <input type="email" id="email" name="email" autocomplete="username" required value="${v.email ?? ''}"${v.email === undefined ? html` autofocus` : ''}>
    </div>
    <div class="field">
      <label for="password">Password</label>
      <input type="password" id="password" name="password" autocomplete="current-password" required${v.email === undefined ? '' : html` autofocus`}>
    </div>
    <button type="submit">Sign in</button>
  </form>
  <p class="muted">No admin yet? On the gateway host: <code>keyway admin users create you@example.com --admin --password-stdin</code></p>
</div>`,
  })
}
