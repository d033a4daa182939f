import type { components } from './schema.js'

/** Every error code of the contract. */
export type ErrorCode = components['schemas']['ErrorCode']

/** The code of an answer that did not carry the error envelope (a proxy's page, say). */
export const UNEXPECTED_RESPONSE = 'UNEXPECTED_RESPONSE'

interface Envelope { code?: unknown, message?: unknown, requestId?: unknown, details?: unknown }

/**
 * The one error of the client: a non-2xx answer, or a stream that ended with an `error` event. `code` is the
 * contract's code (the envelope's, or the OpenAI-shaped body's `error.code` under /v1/openai); `requestId` is
 * what support needs; `retryAfter` is the seconds a 429 or 503 asked to wait.
 */
export class PortalApiError extends Error {
  override readonly name = 'PortalApiError'
  readonly status: number
  readonly code: ErrorCode | typeof UNEXPECTED_RESPONSE
  readonly requestId: string | undefined
  readonly details: Record<string, unknown> | undefined
  readonly retryAfter: number | undefined

  constructor (status: number, body: unknown, headers?: Headers) {
    const envelope = errorOf(body)
    const code = typeof envelope?.code === 'string' ? envelope.code as ErrorCode : UNEXPECTED_RESPONSE
    const message = typeof envelope?.message === 'string' ? envelope.message : `The service answered ${status} without its error envelope.`
    super(`${code}: ${message}`)
    this.status = status
    this.code = code
    this.requestId = typeof envelope?.requestId === 'string' ? envelope.requestId : headers?.get('x-request-id') ?? undefined
    this.details = typeof envelope?.details === 'object' && envelope.details !== null ? envelope.details as Record<string, unknown> : undefined
    this.retryAfter = retryAfterSeconds(headers?.get('retry-after') ?? null)
  }

  /** The error of a non-2xx answer (its body is read). */
  static async from (response: Response): Promise<PortalApiError> {
    const text = await response.text()
    let body: unknown
    try { body = JSON.parse(text) } catch { body = undefined }
    return new PortalApiError(response.status, body, response.headers)
  }
}

function errorOf (body: unknown): Envelope | undefined {
  const error = (body as { error?: unknown } | undefined)?.error
  return typeof error === 'object' && error !== null ? error as Envelope : undefined
}

/** Retry-After in seconds: a number of seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterSeconds (value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim())
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000))
}
