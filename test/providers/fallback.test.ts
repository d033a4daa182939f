import pino from 'pino'
import t from 'tap'
import { firstThatServes } from '../../providers/fallback.js'
import { ProviderError } from '../../providers/provider-error.js'

const log = pino({ level: 'silent' })
const never = new AbortController().signal
const failing = (code: 'PROVIDER_ERROR' | 'CONTENT_REJECTED') => async () => { throw new ProviderError(code, 'failed') }

t.test('the first provider that serves; a failure worth a fallback hands over, any other ends the call', async (t) => {
  const tried: string[] = []
  const providers = [{ name: 'a', run: failing('PROVIDER_ERROR') }, { name: 'b', run: async () => 'b served' }, { name: 'c', run: async () => 'never' }]
  const attempt = async (p: (typeof providers)[number]) => { tried.push(p.name); return p.run() }
  t.same(await firstThatServes(providers, attempt, { signal: never, log, what: 'test' }), { result: 'b served', used: providers[1] })
  t.same(tried, ['a', 'b'])

  await t.rejects(firstThatServes([{ name: 'a' }, { name: 'b' }], failing('CONTENT_REJECTED'), { signal: never, log, what: 'test' }), { code: 'CONTENT_REJECTED' }, 'refused content is final')
  await t.rejects(firstThatServes([{ name: 'a' }, { name: 'b' }], failing('PROVIDER_ERROR'), { signal: never, log, what: 'test' }), { code: 'PROVIDER_ERROR' }, 'the last one\'s failure')
  const left = new AbortController()
  left.abort()
  let calls = 0
  await t.rejects(firstThatServes([{ name: 'a' }, { name: 'b' }], async () => { calls++; throw new ProviderError('PROVIDER_ERROR', 'x') }, { signal: left.signal, log, what: 'test' }))
  t.equal(calls, 1, 'a client that left gets no fallback')
  await t.rejects(firstThatServes([], async () => 'x', { signal: never, log, what: 'test' }), /no test provider to try/)
})

t.test('each attempt is told to the observer: the provider, ok or what ended it, and its seconds', async (t) => {
  const seen: Array<[string, string]> = []
  const observe = (provider: string, outcome: string, seconds: number) => { t.ok(seconds >= 0); seen.push([provider, outcome]) }
  const attempt = async (p: { name: string }) => {
    if (p.name === 'a') throw new ProviderError('PROVIDER_TIMEOUT', 'slow')
    if (p.name === 'b') throw new Error('no code')
    return 'served'
  }
  // A failure without a code is not one a fallback may take: it ends the call.
  await t.rejects(firstThatServes([{ name: 'a' }, { name: 'b' }, { name: 'c' }], attempt, { signal: never, log, what: 'test', observe }), /no code/)
  t.same(await firstThatServes([{ name: 'a' }, { name: 'c' }], attempt, { signal: never, log, what: 'test', observe }), { result: 'served', used: { name: 'c' } })
  const left = new AbortController()
  left.abort()
  await t.rejects(firstThatServes([{ name: 'a' }], attempt, { signal: left.signal, log, what: 'test', observe }))
  t.same(seen, [['a', 'PROVIDER_TIMEOUT'], ['b', 'failed'], ['a', 'PROVIDER_TIMEOUT'], ['c', 'ok'], ['a', 'client-aborted']])
})
