import { DelegateBackoff, handleWhen, retry, type IRetryBackoffContext } from 'cockatiel'

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
 * aborts. The last error is thrown as it came. The loop is cockatiel's retry policy; the backoff is ours (full
 * jitter, or the provider's Retry-After), and so is the abort: cockatiel's wait between attempts does not listen
 * to the signal, so a call whose client left ends at once instead of after the wait.
 */
export async function withRetry<T> (
  attempt: (n: number) => Promise<T>,
  classify: (err: unknown) => RetryVerdict,
  opts: { policy?: RetryPolicy, signal?: AbortSignal, random?: () => number, onRetry?: (n: number, delayMs: number, err: unknown) => void } = {}
): Promise<T> {
  const policy = opts.policy ?? DEFAULT_RETRY_POLICY
  const signal = opts.signal ?? new AbortController().signal
  const retriable = (err: unknown) => {
    const verdict = classify(err)
    return verdict.retry && !(verdict.afterMs !== undefined && verdict.afterMs > policy.maxRetryAfterMs)
  }
  const backoff = new DelegateBackoff<IRetryBackoffContext<unknown>>((context) =>
    classify((context.result as { error: unknown }).error).afterMs ?? backoffMs(policy, context.attempt, opts.random))
  const retrier = retry(handleWhen(retriable), { maxAttempts: policy.attempts - 1, backoff }).dangerouslyUnref()
  let last: unknown
  let waiting = false
  let n = 0
  // cockatiel's timer is unreferenced so that an abandoned wait holds nothing; this one keeps the process up
  // while a wait is real.
  let hold: NodeJS.Timeout | undefined
  const release = () => { clearTimeout(hold) }
  retrier.onRetry((event) => {
    waiting = true
    hold = setTimeout(release, event.delay)
    opts.onRetry?.(event.attempt, event.delay, (event as { error: unknown }).error)
  })
  const run = retrier.execute(async () => {
    waiting = false
    release()
    // The signal aborted during the wait: the attempt is not made (cockatiel then gives up with this error).
    if (n > 0 && signal.aborted) throw last
    try {
      return await attempt(++n)
    } catch (err) {
      last = err
      throw err
    }
  }, signal)
  let giveUp!: (err: unknown) => void
  const abandoned = new Promise<never>((_resolve, reject) => { giveUp = reject })
  const onAbort = () => { if (waiting) giveUp(last) }
  signal.addEventListener('abort', onAbort, { once: true })
  abandoned.catch(() => {})
  try {
    return await Promise.race([run, abandoned])
  } finally {
    release()
    signal.removeEventListener('abort', onAbort)
  }
}
