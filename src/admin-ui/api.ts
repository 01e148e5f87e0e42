import type { FastifyInstance, FastifyRequest } from 'fastify'

/** One answer of the admin API, as the pages read it. */
export interface ApiAnswer<T = any> {
  readonly status: number
  readonly ok: boolean
  readonly json: T
  readonly etag: string | undefined
  readonly setCookie: string | string[] | undefined
  readonly retryAfter: string | undefined
}

/** An error answer of the admin API: its stable code and message. */
export interface ApiError {
  readonly status: number
  readonly code: string
  readonly message: string
}

/**
 * The pages' way to read and change anything: a request to the admin API
 * (`/v1/admin/…`) on the same server, made in-process (fastify `inject`)
 * with the browser's cookie, its CSRF token, its Origin and the ETag the
 * form carried. So every change of the UI is authenticated, CSRF-checked,
 * validated, If-Match-checked and audited by exactly the code that serves
 * the API, and the UI cannot do anything the API does not allow.
 */
export class AdminApiClient {
  readonly #app: FastifyInstance
  readonly #req: FastifyRequest

  constructor(app: FastifyInstance, req: FastifyRequest) {
    this.#app = app
    this.#req = req
  }

  /** Calls the API as the browser behind this request. */
  async call<T = any>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, options: { body?: unknown; csrf?: string | undefined; ifMatch?: string | undefined } = {}): Promise<ApiAnswer<T>> {
    const h = this.#req.headers
    const headers: Record<string, string> = { host: h.host ?? 'localhost' }
    if (h.cookie !== undefined) headers.cookie = h.cookie
    if (typeof h.origin === 'string') headers.origin = h.origin
    if (options.csrf !== undefined) headers['x-csrf-token'] = options.csrf
    if (options.ifMatch !== undefined && options.ifMatch !== '') headers['if-match'] = options.ifMatch
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    const res = await this.#app.inject({
      method,
      url,
      headers,
      remoteAddress: this.#req.ip,
      ...(options.body === undefined ? {} : { payload: JSON.stringify(options.body) }),
    })
    let json: any
    try {
      json = res.body === '' ? undefined : JSON.parse(res.body)
    } catch {
      json = undefined
    }
    const etag = res.headers.etag
    const retry = res.headers['retry-after']
    return {
      status: res.statusCode,
      ok: res.statusCode < 400,
      json,
      etag: typeof etag === 'string' ? etag : undefined,
      setCookie: res.headers['set-cookie'] as string | string[] | undefined,
      retryAfter: typeof retry === 'string' ? retry : undefined,
    }
  }

  /** Every item of a paginated list (the API's cursor pages of 500). */
  async all<T>(path: string): Promise<T[]> {
    const items: T[] = []
    let cursor: string | null = null
    do {
      const r: ApiAnswer<{ items: T[]; next: string | null }> = await this.call('GET', `${path}?limit=500${cursor === null ? '' : `&cursor=${cursor}`}`)
      if (!r.ok) throw apiFailure(r)
      items.push(...r.json.items)
      cursor = r.json.next
    } while (cursor !== null)
    return items
  }
}

/** The error of a failed answer, for showing on the page. */
export function errorOf(r: ApiAnswer): ApiError {
  const code = typeof r.json?.code === 'string' ? r.json.code : 'ERR_INTERNAL'
  const message = typeof r.json?.message === 'string' ? r.json.message : `the admin API answered ${r.status}`
  return { status: r.status, code, message }
}

/** A failed answer as something a page handler can throw. */
export class ApiFailure extends Error {
  readonly error: ApiError

  constructor(error: ApiError) {
    super(`${error.code}: ${error.message}`)
    this.error = error
  }
}

/** Wraps a failed answer in an {@link ApiFailure}. */
export function apiFailure(r: ApiAnswer): ApiFailure {
  return new ApiFailure(errorOf(r))
}
