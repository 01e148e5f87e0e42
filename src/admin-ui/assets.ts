/**
 * The static stylesheet and script of the Admin UI, served as files
 * (`/ui/admin.css`, `/ui/admin.js`): the Content-Security-Policy allows no
 * inline style or script. Kept in this module so that the build ships them
 * with the code, with no front-end build step.
 */

/** `/ui/admin.css`. */
export const ADMIN_CSS = `
:root {
  --bg: #f6f7f9; --panel: #fff; --text: #1c2330; --muted: #5a6472; --line: #dde1e7;
  --accent: #2454c5; --accent-dark: #1a3f96; --ok-bg: #e8f5ec; --ok: #17653a;
  --err-bg: #fdecec; --err: #a11d1d; --warn-bg: #fff6e0; --warn: #7a5200; --tag: #e9eefb;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.45; color: var(--text); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible {
  outline: 3px solid #8fb0ff; outline-offset: 2px;
}
.skip { position: absolute; left: -9999px; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.skip:focus { left: 8px; top: 8px; background: var(--panel); padding: 6px 10px; z-index: 10; }
.top { display: flex; align-items: center; gap: 24px; padding: 0 28px; height: 56px; background: #1c2330; color: #fff; }
.top a { color: #fff; text-decoration: none; }
.brand { font-weight: 650; font-size: 17px; display: flex; align-items: center; gap: 8px; }
.brand .muted { color: #aab3c0; font-weight: 400; }
.logo { display: inline-grid; place-items: center; width: 28px; height: 28px; border-radius: 7px; background: var(--accent); font-weight: 700; }
.top nav ul { display: flex; gap: 4px; list-style: none; margin: 0; padding: 0; }
.top nav a { display: block; padding: 6px 12px; border-radius: 6px; color: #d5dbe4; }
.top nav a:hover { background: #2c3545; }
.top nav a[aria-current="page"] { background: #33415a; color: #fff; }
.signout { margin-left: auto; display: flex; align-items: center; gap: 10px; }
.signout .muted { color: #aab3c0; }
main { max-width: 1100px; margin: 0 auto; padding: 28px; }
main:focus { outline: none; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
.lead { color: var(--muted); margin: 0 0 20px; }
.muted { color: var(--muted); }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px; margin: 0 0 18px; }
.panel > h2:first-child { margin-top: 0; }
.panel > .inline + .hint, .switch + .inline { margin-top: 14px; }
.head { display: flex; align-items: flex-start; justify-content: space-between; gap: 16px; flex-wrap: wrap; }
table { width: 100%; border-collapse: collapse; background: var(--panel); border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
th, td { text-align: left; padding: 10px 14px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); background: #fafbfc; font-weight: 600; }
tr:last-child td { border-bottom: none; }
td.actions { text-align: right; white-space: nowrap; }
.empty { color: var(--muted); font-style: italic; }
.tag { display: inline-block; font-size: 12px; padding: 1px 8px; border-radius: 999px; background: var(--tag); color: var(--accent-dark); font-weight: 600; margin-left: 6px; }
.tag.off { background: #eee; color: #555; }
.tag.warn { background: var(--warn-bg); color: var(--warn); }
.source { white-space: nowrap; display: inline-block; font-size: 13px; padding: 2px 8px; border-radius: 6px; background: #eef1f5; margin: 1px 4px 1px 0; }
.source.direct { background: var(--ok-bg); color: var(--ok); }
.source.temporary { background: var(--warn-bg); color: var(--warn); }
.source.role { background: var(--tag); color: var(--accent-dark); }
button, .button { font: inherit; font-size: 14px; border-radius: 7px; padding: 6px 14px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; display: inline-block; }
button:hover, .button:hover { background: var(--accent-dark); }
button.secondary { background: var(--panel); color: var(--accent); }
button.secondary:hover { background: #eef3ff; }
button.danger { background: var(--panel); color: var(--err); border-color: #e0a4a4; }
button.danger:hover { background: var(--err-bg); }
button.link { background: none; border: none; color: inherit; padding: 0; text-decoration: underline; }
button:disabled { opacity: .5; cursor: not-allowed; }
input[type=text], input[type=email], input[type=password], input[type=number], select {
  font: inherit; padding: 6px 10px; border: 1px solid #c5ccd6; border-radius: 7px; background: #fff; color: var(--text); min-width: 0;
}
label { font-weight: 550; }
.field { display: flex; flex-direction: column; gap: 4px; margin: 0 0 14px; }
.field .hint { font-size: 13px; color: var(--muted); font-weight: 400; }
.inline { display: flex; gap: 10px; align-items: flex-end; flex-wrap: wrap; }
.inline .field { margin: 0; }
.row-form { display: inline-flex; gap: 6px; align-items: center; margin: 0; }
.error { background: var(--err-bg); color: var(--err); border: 1px solid #f0b8b8; padding: 10px 14px; border-radius: 8px; margin: 0 0 14px; }
.error code, .notice code { font-size: 12px; opacity: .8; }
.notice { background: var(--ok-bg); color: var(--ok); border: 1px solid #b5dcc2; padding: 10px 14px; border-radius: 8px; }
.warning { background: var(--warn-bg); color: var(--warn); border: 1px solid #ecd49a; padding: 10px 14px; border-radius: 8px; }
details.add > summary { list-style: none; display: inline-block; }
details.add > summary::-webkit-details-marker { display: none; }
details.add[open] > summary { margin-bottom: 12px; }
details.add form { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; }
.token-box { display: flex; gap: 8px; align-items: center; margin: 12px 0; }
.token-box input { flex: 1; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
.tabs { display: flex; gap: 2px; border-bottom: 1px solid var(--line); margin: 0 0 14px; padding: 0; list-style: none; }
.tabs a { display: block; padding: 8px 14px; text-decoration: none; color: var(--muted); border-bottom: 3px solid transparent; }
.tabs a[aria-current="page"] { color: var(--text); border-bottom-color: var(--accent); font-weight: 600; }
.tabs .count { font-size: 12px; background: #eef1f5; border-radius: 999px; padding: 0 7px; margin-left: 4px; }
.switch { display: flex; gap: 12px; align-items: flex-start; padding: 12px 0; border-bottom: 1px solid var(--line); }
.switch:last-of-type { border-bottom: none; }
.switch input { width: 20px; height: 20px; margin-top: 2px; accent-color: var(--accent); }
.switch .hint { display: block; font-weight: 400; color: var(--muted); font-size: 13px; }
.signin { max-width: 380px; margin: 60px auto; }
.signin .panel { padding: 26px; }
.signin input { width: 100%; }
.chips { display: flex; gap: 6px; flex-wrap: wrap; list-style: none; padding: 0; margin: 0 0 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
`

/**
 * `/ui/admin.js`: small enhancements only; every form works without it.
 * The copy button, the auto-connect switch following the port-overrides
 * switch, and the token page's address (a reload asks for the account page,
 * which never shows a token).
 */
export const ADMIN_JS = `'use strict'
document.addEventListener('DOMContentLoaded', function () {
  var replace = document.body.getAttribute('data-replace-url')
  if (replace && window.history && history.replaceState) history.replaceState(null, '', replace)
  document.querySelectorAll('[data-copy]').forEach(function (button) {
    button.hidden = false
    button.addEventListener('click', function () {
      var field = document.getElementById(button.getAttribute('data-copy'))
      if (!field) return
      field.select()
      var done = function () { button.textContent = 'Copied'; }
      if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand('copy'); done() })
      else { document.execCommand('copy'); done() }
    })
  })
  var po = document.getElementById('portOverrides')
  var ac = document.getElementById('autoConnect')
  if (po && ac) {
    po.addEventListener('change', function () {
      ac.disabled = !po.checked
      if (!po.checked) ac.checked = false
    })
  }
})
`

/** `/ui/icon.svg`: the tab icon (so browsers do not ask the API for /favicon.ico). */
export const ADMIN_ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2454c5"/><path d="M10 7h4v7.5L20.5 7h5l-7.6 8.2L26 25h-5l-5.6-7.1-1.4 1.5V25h-4z" fill="#fff"/></svg>
`
