import type { ApiError } from './api.js'
import { html, type SafeHtml } from './html.js'

/** Who is signed in, as every page of a session shows it. */
export interface Viewer {
  readonly email: string
  /** Goes in every form of the page as `_csrf`. */
  readonly csrf: string
}

/** The sections of the navigation bar. */
export type Section = 'users' | 'roles' | 'resources' | 'sessions' | 'settings' | 'signin' | 'error'

/** The static files every page links (no inline script or style: the CSP forbids them). */
export const ASSET_PATHS = { css: '/ui/admin.css', js: '/ui/admin.js', icon: '/ui/icon.svg' } as const

/** One page: its title, where it sits in the navigation, and its main content. */
export interface PageOptions {
  readonly title: string
  readonly section: Section
  readonly viewer?: Viewer | undefined
  /** A one-line success message at the top of the page (after a redirect). */
  readonly notice?: string | undefined
  /** With script: the address bar shows this instead (the token page: a reload must not repost). */
  readonly replaceUrl?: string | undefined
  readonly main: SafeHtml
}

const NAV: readonly { section: Section; href: string; label: string }[] = [
  { section: 'users', href: '/users', label: 'Users' },
  { section: 'roles', href: '/roles', label: 'Roles' },
  { section: 'resources', href: '/resources', label: 'Resources' },
  { section: 'sessions', href: '/sessions', label: 'Sessions' },
  { section: 'settings', href: '/settings/port-overrides', label: 'Settings' },
]

/** The whole HTML document of a page. */
export function page(o: PageOptions): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${o.title} · Keyway Admin</title>
<link rel="icon" href="${ASSET_PATHS.icon}" type="image/svg+xml">
<link rel="stylesheet" href="${ASSET_PATHS.css}">
<script src="${ASSET_PATHS.js}" defer></script>
</head>
<body${o.replaceUrl === undefined ? '' : html` data-replace-url="${o.replaceUrl}"`}>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/users"><span class="logo" aria-hidden="true">K</span> Keyway <span class="muted">Admin</span></a>
  ${o.viewer === undefined
    ? ''
    : html`<nav aria-label="Main">
    <ul>${NAV.map((n) => html`<li><a href="${n.href}"${n.section === o.section ? html` aria-current="page"` : ''}>${n.label}</a></li>`)}</ul>
  </nav>
  <form class="signout" method="post" action="/signout">
    ${csrfField(o.viewer)}
    <span class="muted" title="Signed in">${o.viewer.email}</span>
    <button type="submit" class="link">Sign out</button>
  </form>`}
</header>
<main id="main" tabindex="-1">
${o.notice === undefined ? '' : html`<p class="notice" role="status">${o.notice}</p>`}
${o.main}
</main>
</body>
</html>
`
}

/** The hidden CSRF field every form of a session carries. */
export function csrfField(viewer: Viewer): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${viewer.csrf}">`
}

/** An error where the admin acted: the message and its stable code, announced to screen readers. */
export function errorBox(error: ApiError | undefined, id?: string): SafeHtml {
  if (error === undefined) return html``
  return html`<div class="error" role="alert"${id === undefined ? '' : html` id="${id}"`}><strong>${error.message}</strong> <code>${error.code}</code></div>`
}

/** An error to show next to one form of a page (`at` names the form). */
export interface FormError extends ApiError {
  readonly at: string
}

/** The error of form `at`, if that is where it happened. */
export function errorAt(error: FormError | undefined, at: string): SafeHtml {
  return error?.at === at ? errorBox(error) : html``
}
