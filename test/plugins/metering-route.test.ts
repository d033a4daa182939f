import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { AppError } from '../../plugins/errors.js'
import type { Store } from '../../plugins/store/index.js'
import { build, createTestStore, mint, userWithKey } from '../helper.js'

const plansFile = join(mkdtempSync(join(tmpdir(), 'plans-')), 'plans.json')
writeFileSync(plansFile, JSON.stringify({
  plans: { tiny: { name: 'Tiny', features: { 'background-removal': { quota: { limit: 5, period: 'day' }, rateLimitPerMinute: 1000 } } } }
}))

/** A feature route as the feature issues will write them: meter, call the provider, settle or release. */
function featureRoute (providerCalls: { n: number }) {
  return async (app: FastifyInstance) => {
    app.post('/v1/ai/test-feature', { config: { feature: 'background-removal' } }, async (request, reply) => {
      const call = await app.meter(request, reply, 1)
      providerCalls.n++
      if ((request.query as { fail?: string }).fail !== undefined) {
        await call.release()
        throw new AppError('PROVIDER_ERROR', 'The provider failed.')
      }
      await call.settle({ provider: 'sandbox', units: 1 })
      return { ok: true }
    })
  }
}

t.test('quota headers, the 80 % warning, QUOTA_EXCEEDED, and failed calls left unmetered', async (t) => {
  const providerCalls = { n: 0 }
  const { app, store } = await build(t, { env: { PLANS_FILE: plansFile }, register: featureRoute(providerCalls) })
  const { userId, key } = await userWithKey(app, { plan: 'tiny', mode: 'test' })
  const { token } = await mint(app, key)
  const call = (query = '') => app.inject({ method: 'POST', url: `/v1/ai/test-feature${query}`, headers: { authorization: `Bearer ${token}` } })

  const failed = await call('?fail=1')
  t.equal(failed.statusCode, 502)
  const remaining = []
  const warnings = []
  for (let i = 0; i < 5; i++) {
    const res = await call()
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-quota-limit'], '5')
    remaining.push(res.headers['x-quota-remaining'])
    warnings.push(res.headers['x-quota-warning'])
    t.match(res.headers['x-quota-reset'], /T00:00:00\.000Z$/)
  }
  t.same(remaining, ['4', '3', '2', '1', '0'], 'the failed call used nothing')
  t.same(warnings, [undefined, undefined, undefined, '80%', '80%'])

  const over = await call()
  t.equal(over.statusCode, 402)
  t.match(over.json().error, { code: 'QUOTA_EXCEEDED', details: { limit: 5, used: 5, resetsAt: /T00:00:00\.000Z$/ } })
  t.match(over.headers['retry-after'], /^\d+$/)
  t.equal(providerCalls.n, 6, 'the provider was not called over quota')
  const ledger = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_ledger WHERE user_id = $1', [userId])
  t.equal(ledger.rows[0]?.n, 5)
})

t.test('with the database down, feature calls fail closed (503) and work again when it returns', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const state = { down: false }
  const flaky: Store = {
    ...store,
    query: async (sql, params) => state.down ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) : store.query(sql, params),
    transaction: async (fn) => state.down ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) : store.transaction(fn)
  }
  const providerCalls = { n: 0 }
  const { app, logs } = await build(t, { store: flaky, env: { PLANS_FILE: plansFile }, register: featureRoute(providerCalls) })
  const { key } = await userWithKey(app, { plan: 'tiny', mode: 'live' })
  const { token } = await mint(app, key)
  const call = () => app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${token}` } })

  state.down = true
  const refused = await call()
  t.equal(refused.statusCode, 503)
  t.match(refused.json().error, { code: 'PROVIDER_UNAVAILABLE', message: /metering is unavailable/ })
  t.equal(providerCalls.n, 0, 'never run unmetered')
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 503)
  t.equal(logs.find('quota reservation failed: refusing the call (fail closed)').length, 1)

  state.down = false
  t.equal((await call()).statusCode, 200)
  t.equal(providerCalls.n, 1)
})
