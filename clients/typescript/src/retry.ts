import { retryAfterSeconds } from './errors.js'

export type Fetch = (request: Request) => Promise<Response>

export interface RetryOptions {
  /** Retries after the first attempt (default 2; 0 turns retrying off). */
  retries?: number
  /** The first backoff when the answer has no Retry-After (default 500 ms), doubled per retry, with jitter. */
  baseDelayMs?: number
  /** The longest wait between attempts (default 30 s): a Retry-After beyond it is not waited out, the answer is returned. */
  maxDelayMs?: number
  /** Told before each wait (to log it, say). */
  onRetry?: (info: { attempt: number, status: number, delayMs: number, request: Request }) => void
}

/** Only these are retried: the service did no work and asks to come back (rate limit, overload, a vendor down). */
export const RETRIED_STATUSES: ReadonlySet<number> = new Set([429, 503])

/** How long to wait before retry number `attempt` (0-based): Retry-After when given, otherwise exponential backoff with jitter. */
export function retryDelayMs (attempt: number, retryAfter: string | null, options: RetryOptions = {}, random = Math.random): number {
  const asked = retryAfterSeconds(retryAfter)
  if (asked !== undefined) return asked * 1000
  const base = (options.baseDelayMs ?? 500) * 2 ** attempt
  return Math.round(base / 2 + random() * base / 2)
}

function sleep (ms: number, signal: AbortSignal) {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) { reject(signal.reason); return }
    const timer = setTimeout(() => { signal.removeEventListener('abort', abort); resolve() }, ms)
    const abort = () => { clearTimeout(timer); reject(signal.reason) }
    signal.addEventListener('abort', abort, { once: true })
  })
}

/**
 * A fetch that retries 429 and 503 answers, waiting as Retry-After says (or backing off), never any other status:
 * a 402, a 4xx or a failed call is returned as it is. The request is replayed from a clone, so bodies (uploads
 * included) are sent whole each time; a wait ends early when the request's signal aborts.
 */
export function retryingFetch (options: RetryOptions = {}, base: Fetch = (request) => fetch(request)): Fetch {
  const retries = options.retries ?? 2
  const maxDelayMs = options.maxDelayMs ?? 30_000
  return async (request) => {
    let attempt = 0
    let response = await base(retries > 0 ? request.clone() : request)
    while (attempt < retries && RETRIED_STATUSES.has(response.status)) {
      const delayMs = retryDelayMs(attempt, response.headers.get('retry-after'), options)
      if (delayMs > maxDelayMs) break
      await response.body?.cancel()
      attempt++
      options.onRetry?.({ attempt, status: response.status, delayMs, request })
      await sleep(delayMs, request.signal)
      response = await base(attempt < retries ? request.clone() : request)
    }
    return response
  }
}
