import t from 'tap'
import { backoffMs, DEFAULT_RETRY_POLICY, retryAfterMs, withRetry } from '../../providers/retry.js'

t.test('retryAfterMs reads retry-after-ms, seconds and HTTP dates', async (t) => {
  const now = Date.parse('2026-11-22T10:00:00Z')
  t.equal(retryAfterMs(new Headers({ 'retry-after-ms': '1500' }), now), 1500)
  t.equal(retryAfterMs(new Headers({ 'retry-after': '3' }), now), 3000)
  t.equal(retryAfterMs(new Headers({ 'retry-after': 'Sun, 22 Nov 2026 10:00:05 GMT' }), now), 5000)
  t.equal(retryAfterMs(new Headers({ 'retry-after': 'Sun, 22 Nov 2026 09:00:00 GMT' }), now), 0, 'a date in the past: now')
  t.equal(retryAfterMs(new Headers({ 'retry-after': 'soon' }), now), undefined)
  t.equal(retryAfterMs(new Headers({ 'retry-after-ms': 'x', 'retry-after': '' }), now), undefined)
  t.equal(retryAfterMs(new Headers(), now), undefined)
  t.equal(retryAfterMs(undefined), undefined)
})

t.test('backoff grows exponentially under a ceiling, with full jitter', async (t) => {
  const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 100, maxDelayMs: 1000 }
  t.same([1, 2, 3, 4, 5].map((n) => backoffMs(policy, n, () => 1)), [100, 200, 400, 800, 1000])
  t.equal(backoffMs(policy, 3, () => 0), 0)
  t.equal(backoffMs(policy, 3, () => 0.5), 200)
})

const policy = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 50 }

t.test('withRetry retries what may succeed, up to the attempts, and no further', async (t) => {
  const retries: number[] = []
  let calls = 0
  const result = await withRetry(async () => { if (++calls < 3) throw new Error('busy'); return 'ok' },
    () => ({ retry: true }), { policy, onRetry: (n) => retries.push(n) })
  t.equal(result, 'ok')
  t.same(retries, [1, 2])
  t.equal(await withRetry(async () => 'first', () => ({ retry: false })), 'first', 'the default policy')

  calls = 0
  await t.rejects(withRetry(async () => { calls++; throw new Error('always') }, () => ({ retry: true }), { policy }), { message: 'always' })
  t.equal(calls, 3)

  calls = 0
  await t.rejects(withRetry(async () => { calls++; throw new Error('final') }, () => ({ retry: false }), { policy }), { message: 'final' })
  t.equal(calls, 1, 'a final error is not retried')
})

t.test('withRetry honours Retry-After, and gives up when it is longer than allowed', async (t) => {
  let calls = 0
  const started = Date.now()
  await withRetry(async () => { if (++calls === 1) throw new Error('429'); return 1 }, () => ({ retry: true, afterMs: 30 }), { policy })
  t.ok(Date.now() - started >= 25)
  calls = 0
  await t.rejects(withRetry(async () => { calls++; throw new Error('429 long') }, () => ({ retry: true, afterMs: 60_000 }), { policy }), { message: '429 long' })
  t.equal(calls, 1)
})

t.test('withRetry stops when its signal aborts, during the wait or before it', async (t) => {
  const controller = new AbortController()
  let calls = 0
  const run = withRetry(async () => { calls++; throw new Error('down') }, () => ({ retry: true, afterMs: 40 }), { policy, signal: controller.signal })
  setTimeout(() => controller.abort(), 5)
  await t.rejects(run, { message: 'down' })
  t.equal(calls, 1)
  // The wait that was abandoned ends later without making the attempt.
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.equal(calls, 1, 'no attempt after the abort')
  await t.rejects(withRetry(async () => { throw new Error('again') }, () => ({ retry: true }), { policy, signal: controller.signal }), { message: 'again' })
})
