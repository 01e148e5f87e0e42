/**
 * The web Admin UI: server-rendered pages (one file per page) built with an
 * auto-escaping `html` template, a static stylesheet and script, a strict
 * Content-Security-Policy; every read and change goes through the admin API.
 */
export { registerAdminUi, ADMIN_UI_CSP, SIGNIN_COOKIE, type AdminUiOptions } from './routes.js'
export { html, escapeHtml, trusted, SafeHtml, type HtmlValue } from './html.js'
