import type { ApiError } from './api.js'
import { html, type SafeHtml } from './html.js'
import { errorBox, page, type Viewer } from './layout.js'

/** A page that could not be shown (not found, forbidden, refused): the error and a way back. */
export function errorPage(error: ApiError, viewer?: Viewer): SafeHtml {
  return page({
    title: 'Error',
    section: 'error',
    viewer,
    main: html`<h1>${error.status === 404 ? 'Not found' : error.status === 403 ? 'Refused' : 'Something went wrong'}</h1>
${errorBox(error)}
<p><a href="${viewer === undefined ? '/signin' : '/users'}">${viewer === undefined ? 'Sign in' : 'Back to Users'}</a></p>`,
  })
}
