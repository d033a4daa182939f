import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { AppError } from '../../plugins/errors.js'
import type { Store } from '../../plugins/store/index.js'
import { createPostgresStore } from '../../plugins/store/index.js'
import { build, createTestStore, mint, userWithKey, type Backend } from '../helper.js'

const plansFile = join(mkdtempSync(join(tmpdir(), 'plans-')), 'plans.json')
writeFileSync(plansFile, JSON.stringify({
  plans: {
    tiny: { name: 'Tiny', features: { 'background-removal': { quota: { limit: 5, period: 'day' }, rateLimitPerMinute: 1000 } } },
    fifty: { name: 'Fifty', features: { 'background-removal': { quota: { limit: 50, period: 'day' }, rateLimitPerMinute: 1000 } } },
    billed: { name: 'Billed', features: { 'background-removal': { quota: { limit: 50, period: 'day' }, rateLimitPerMinute: 1000 } }, credits: { monthlyFreeCents: 100 } }
  },
  prices: { removebg: { perCall: 200000 } }
}))

/** A feature route as the feature issues will write them: meter, call the provider, settle or release. */
function featureRoute (providerCalls: { n: number }) {
  return async (app: FastifyInstance) => {
    app.post('/v1/ai/test-feature', { config: { feature: 'background-removal' } }, async (request, reply) => {
      const call = await app.meter(request, reply, 1, { provider: 'sandbox', unitsIn: 1, unitsOut: 1 })
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

t.test('a settlement the database refuses after the provider charged is kept, retried and recorded; never lost silently', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const state = { down: false }
  const refuse = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
  const flaky: Store = {
    ...store,
    query: async (sql, params) => state.down ? refuse() : store.query(sql, params),
    transaction: async (fn) => state.down ? refuse() : store.transaction(fn)
  }
  const route = async (app: FastifyInstance) => {
    app.post('/v1/ai/test-feature', { config: { feature: 'background-removal' } }, async (request, reply) => {
      const call = await app.meter(request, reply, 1, { costMicroUsd: 200_000 })
      state.down = true // the database goes away while the provider works
      if ((request.query as { fail?: string }).fail !== undefined) {
        await call.release()
        return { released: true }
      }
      await call.settle({ provider: 'removebg', units: 1, unitsIn: 1, unitsOut: 1 })
      return { ok: true }
    })
  }
  const first = await build(t, { store: flaky, env: { PLANS_FILE: plansFile }, register: route })
  const { userId, key } = await userWithKey(first.app, { plan: 'tiny', mode: 'live' })
  const { token } = await mint(first.app, key)
  const call = (app: FastifyInstance, query = '') => app.inject({ method: 'POST', url: `/v1/ai/test-feature${query}`, headers: { authorization: `Bearer ${token}` } })

  t.equal((await call(first.app)).statusCode, 200, 'the user gets the result the provider made')
  t.equal(first.app.pendingSettlements(), 1)
  t.equal(first.logs.find('could not record a settled call: kept and retried until the database takes it').length, 1)
  // The retry timer fires while the database is still down: kept for the next round.
  await new Promise((resolve) => setTimeout(resolve, 5300))
  t.equal(first.logs.find('settlements still wait for the database').length, 1)
  state.down = false
  t.equal((await call(first.app, '?fail=1')).statusCode, 200)
  t.equal(first.logs.find('could not release a reservation now: the sweep will').length, 1)
  state.down = false
  await first.app.close()
  t.equal(first.logs.find('delayed settlement recorded').length, 1)
  const rows = await store.query<{ provider: string, cost_micro_usd: string }>('SELECT provider, cost_micro_usd FROM usage_ledger WHERE user_id = $1', [userId])
  t.same(rows.rows.map((r) => [r.provider, Number(r.cost_micro_usd)]), [['removebg', 200000]], 'recorded with its cost from the price table')

  state.down = false
  const second = await build(t, { store: flaky, env: { PLANS_FILE: plansFile }, register: route })
  t.equal((await call(second.app)).statusCode, 200)
  await second.app.close()
  const lost = second.logs.find('settlement lost at shutdown: record it by hand')
  t.match(lost, [{ userId, feature: 'background-removal', provider: 'removebg', units: 1, costMicroUsd: 200000 }])
  state.down = false
})

t.test('billed: a settlement whose commit was not acknowledged is retried, and charged once', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const state = { loseAnswer: false }
  // The transaction commits, then the connection dies before its answer: the caller cannot know it committed.
  const lossy: Store = {
    ...store,
    transaction: async (fn) => {
      const result = await store.transaction(fn)
      if (!state.loseAnswer) return result
      state.loseAnswer = false
      throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    }
  }
  const route = async (app: FastifyInstance) => {
    app.post('/v1/ai/test-feature', { config: { feature: 'background-removal' } }, async (request, reply) => {
      const call = await app.meter(request, reply, 1, { costMicroUsd: 200_000 })
      state.loseAnswer = true
      return { charged: await call.settle({ provider: 'removebg', units: 1, unitsIn: 1, unitsOut: 1 }) }
    })
  }
  const { app, logs } = await build(t, { store: lossy, env: { PLANS_FILE: plansFile }, register: route })
  const { userId, key } = await userWithKey(app, { plan: 'billed', mode: 'live' })
  const { token } = await mint(app, key)
  const res = await app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${token}` } })
  t.same(res.json(), { charged: 280_000 }, 'the answer says what is charged: 200,000 µUSD and 40 %')
  t.equal(app.pendingSettlements(), 1, 'kept for a retry')
  await app.close()
  t.equal(logs.find('delayed settlement recorded').length, 1)
  const ledger = await store.query<{ charged_micro_usd: string, price_per_call_micro_usd: string | null }>('SELECT charged_micro_usd, price_per_call_micro_usd FROM usage_ledger WHERE user_id = $1', [userId])
  t.same(ledger.rows.map((r) => Number(r.charged_micro_usd)), [280_000], 'one ledger row')
  const account = await store.query<{ lifetime_micro_usd: string }>('SELECT lifetime_micro_usd FROM credit_accounts WHERE user_id = $1', [userId])
  t.same(account.rows.map((r) => Number(r.lifetime_micro_usd)), [280_000], 'charged once')
  const month = await store.query<{ free_used_micro_usd: string, free_reserved_micro_usd: string }>('SELECT free_used_micro_usd, free_reserved_micro_usd FROM credit_months WHERE user_id = $1', [userId])
  t.same(month.rows.map((r) => [Number(r.free_used_micro_usd), Number(r.free_reserved_micro_usd)]), [[280_000, 0]])
})

/** The acceptance of issue 4 over HTTP: every call goes through auth, entitlements, rate limit and app.meter. */
async function concurrentCalls (t: Test, backend: Backend, instances: number) {
  const { store, url, drop } = await createTestStore(backend)
  t.teardown(drop)
  const stores = [store, ...Array.from({ length: instances - 1 }, () => createPostgresStore(url as string))]
  for (const extra of stores.slice(1)) t.teardown(() => extra.close())
  const providerCalls = { n: 0 }
  const apps = await Promise.all(stores.map(async (s) => (await build(t, { store: s, env: { PLANS_FILE: plansFile }, register: featureRoute(providerCalls) })).app))
  const first = apps[0] as FastifyInstance
  const { userId, key } = await userWithKey(first, { plan: 'fifty', mode: 'live' })
  const { token } = await mint(first, key)
  const responses = await Promise.all(Array.from({ length: 200 }, async (_, i) =>
    (apps[i % apps.length] as FastifyInstance).inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${token}` } })))
  const statuses = responses.map((r) => r.statusCode)
  t.equal(statuses.filter((s) => s === 200).length, 50, 'exactly 50 succeed')
  t.equal(statuses.filter((s) => s === 402).length, 150, '150 get QUOTA_EXCEEDED')
  t.ok(responses.filter((r) => r.statusCode === 402).every((r) => r.json().error.code === 'QUOTA_EXCEEDED'))
  t.equal(providerCalls.n, 50, 'the provider ran only for reserved calls')
  const ledger = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_ledger WHERE user_id = $1', [userId])
  t.equal(ledger.rows[0]?.n, 50, 'the ledger has exactly 50 rows')
  const counter = await store.query<{ used: string, reserved: string }>('SELECT used, reserved FROM quota_usage WHERE user_id = $1', [userId])
  t.same(counter.rows.map((r) => [Number(r.used), Number(r.reserved)]), [[50, 0]], 'the counter reads 50')
}

t.test('over HTTP on PostgreSQL: two app instances, 200 concurrent calls against a quota of 50', async (t) => {
  await concurrentCalls(t, 'postgres', 2)
})

t.test('over HTTP on the embedded store: one instance, 200 concurrent calls against a quota of 50', async (t) => {
  await concurrentCalls(t, 'embedded', 1)
})
