import { setTimeout as sleep } from 'node:timers/promises'

/** One retry policy for every provider: bounded attempts, exponential backoff with full jitter, Retry-After honoured. */
export interface RetryPolicy {
  /** Calls in all, the first one included. */
  attempts: number
  baseDelayMs: number
  maxDelayMs: number
  /** A Retry-After longer than this is not waited for: the call fails at once with the provider's error. */
  maxRetryAfterMs: number
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 3, baseDelayMs: 200, maxDelayMs: 4000, maxRetryAfterMs: 20_000 }

/** How a failed attempt may be retried: not at all, or after the provider's delay or our backoff. */
export interface RetryVerdict { retry: boolean, afterMs?: number }

/** A Retry-After header (seconds or an HTTP date) or OpenAI's retry-after-ms, in ms; undefined when absent or unreadable. */
export function retryAfterMs (headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = headers?.get('retry-after-ms')
  if (ms != null && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms))
  const value = headers?.get('retry-after')?.trim()
  if (value == null || value === '') return undefined
  if (/^\d+$/.test(value)) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** Backoff before attempt `attempt + 1`: full jitter over an exponentially growing ceiling. */
export function backoffMs (policy: RetryPolicy, attempt: number, random = Math.random): number {
  return Math.round(random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)))
}

/**
 * Runs `attempt` until it succeeds, `classify` says an error is final, the attempts run out or `signal`
 * aborts. The last error is thrown as it came.
 */
export async function withRetry<T> (
  attempt: (n: number) => Promise<T>,
  classify: (err: unknown) => RetryVerdict,
  opts: { policy?: RetryPolicy, signal?: AbortSignal, random?: () => number, onRetry?: (n: number, delayMs: number, err: unknown) => void } = {}
): Promise<T> {
  const policy = opts.policy ?? DEFAULT_RETRY_POLICY
  for (let n = 1; n < policy.attempts; n++) {
    try {
      return await attempt(n)
    } catch (err) {
      const verdict = classify(err)
      if (!verdict.retry || opts.signal?.aborted === true) throw err
      if (verdict.afterMs !== undefined && verdict.afterMs > policy.maxRetryAfterMs) throw err
      const delay = verdict.afterMs ?? backoffMs(policy, n, opts.random)
      opts.onRetry?.(n, delay, err)
      try {
        await sleep(delay, undefined, { signal: opts.signal })
      } catch {
        throw err
      }
    }
  }
  return attempt(policy.attempts)
}
